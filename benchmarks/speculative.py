"""Speculative sampling: tokens/s of the target alone vs with a draft, and the draft's acceptance rate.

(a) a built-in tiny pair: an SFT arithmetic model (target) and a draft distilled from it
(b) SmolLM2-135M-Instruct (target) and a draft distilled from it with `plainrl distill-draft`
(c) the same pair through transformers: generate() alone vs assisted generation (assistant_model=draft)

Batch 1, one thread, natural lengths (a completion ends at EOS or --new-tokens). For each prompt every engine runs
once, one after the other, so a busy machine slows all of them alike; tokens/s = tokens / seconds over all prompts.
Prompts: held-out questions of the task the drafts were distilled on (chat version for SmolLM2) and, for SmolLM2,
general chat prompts the draft never saw.

    plainrl sft --model tiny --task arithmetic --run-dir runs/tiny_sft                 # the tiny target
    plainrl distill-draft --target runs/tiny_sft --task arithmetic --run-dir runs/tiny_draft --set draft_dim=64 ...
    plainrl distill-draft --target smollm2-135m --task arithmetic --run-dir runs/distill_smollm2 --minutes 22
    python benchmarks/speculative.py --tiny-target runs/tiny_sft --tiny-draft runs/tiny_draft \
        --smol-draft runs/distill_smollm2
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from plainrl.llm.generate import SamplingParams, generate
from plainrl.llm.policies import load_policy, model_prompt
from plainrl.llm.speculative import SpeculativeStats, speculative_generate
from plainrl.llm.tasks import make_task

CHAT_PROMPTS = [
    "Write a short poem about the sea.",
    "Explain in two sentences what a neural network is.",
    "Give me three tips for sleeping better.",
    "What is the capital of France, and what is it known for?",
    "Describe how to make a cup of tea.",
    "Why is the sky blue?",
]


def to_hf_llama(model: Any, target_hf_config: Any) -> Any:
    """The built-in Transformer as a transformers LlamaForCausalLM (same layer names), for assisted generation."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings,
        rope_parameters={"rope_theta": c.rope_theta, "rope_type": "default"},
        bos_token_id=target_hf_config.bos_token_id, eos_token_id=target_hf_config.eos_token_id,
        pad_token_id=target_hf_config.pad_token_id,
    )  # fmt: skip
    hf_model = LlamaForCausalLM(config)
    state = {(name if name == "lm_head.weight" else "model." + name): t for name, t in model.state_dict().items()}
    hf_model.load_state_dict(state, strict=False)
    hf_model.tie_weights()
    return hf_model.eval()


class Meter:
    def __init__(self) -> None:
        self.tokens, self.seconds, self.stats = 0, 0.0, SpeculativeStats()

    def add(self, tokens: int, seconds: float, stats: SpeculativeStats | None = None) -> None:
        self.tokens += tokens
        self.seconds += seconds
        if stats is not None:
            for name in ("rounds", "row_rounds", "proposed", "accepted", "emitted", "k_sum"):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(stats, name))

    @property
    def speed(self) -> float:
        return self.tokens / self.seconds


def run_ours(target, draft, tokenizer, ids, params, k, adaptive) -> tuple[list[int], float, SpeculativeStats | None]:
    started = time.perf_counter()
    if draft is None:
        rollout, stats = generate(target, tokenizer, [ids], params), None
    else:
        rollout, stats = speculative_generate(target, draft, tokenizer, [ids], params, k, adaptive)
    seconds = time.perf_counter() - started
    return rollout.completion_ids[0][rollout.completion_mask[0]].tolist(), seconds, stats


def run_hf(model, assistant, tokenizer, ids, params, k) -> tuple[list[int], float]:
    sampling: dict[str, Any] = {"do_sample": False}
    if not params.greedy:
        sampling = {"do_sample": True, "temperature": params.temperature, "top_k": 0, "top_p": 1.0}
    extra: dict[str, Any] = {}
    if assistant is not None:
        extra = {"assistant_model": assistant}
        assistant.generation_config.num_assistant_tokens = k
        assistant.generation_config.num_assistant_tokens_schedule = "constant"
    input_ids = torch.tensor([ids])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=params.max_new_tokens, pad_token_id=tokenizer.pad_id,
                             eos_token_id=list(tokenizer.eos_ids), **sampling, **extra)  # fmt: skip
    return out[0, input_ids.shape[1] :].tolist(), time.perf_counter() - started


def trim(tokens: list[int], eos_ids: tuple[int, ...]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def forward_costs(target: Any, draft: Any, k: int, context: int = 64, repeats: int = 5) -> None:
    """Milliseconds of one forward at batch 1 with `context` tokens cached: the target on 1 token (a decode step)
    and on k+1 tokens (a verify pass), the draft on 1 token. Best of `repeats`, taken in turns."""

    def one(model: Any, tokens: int) -> float:
        cache = model.new_cache(1, context + tokens)
        model(torch.randint(0, model.vocab_size, (1, context)), cache=cache, last_only=True)
        model(torch.randint(0, model.vocab_size, (1, tokens)), cache=cache, last_only=tokens == 1)  # warm-up
        cache.length = context
        started = time.perf_counter()
        model(torch.randint(0, model.vocab_size, (1, tokens)), cache=cache, last_only=tokens == 1)
        return 1000 * (time.perf_counter() - started)

    best = {"decode": 1e9, "verify": 1e9, "draft": 1e9}
    with torch.inference_mode():
        for _ in range(repeats):
            best["decode"] = min(best["decode"], one(target, 1))
            best["verify"] = min(best["verify"], one(target, k + 1))
            best["draft"] = min(best["draft"], one(draft, 1))
    v, c = best["verify"] / best["decode"], best["draft"] / best["decode"]
    print(
        f"\nforward costs, batch 1, {context} tokens cached: target decode step {best['decode']:.1f} ms, "
        f"verify of {k + 1} tokens {best['verify']:.1f} ms ({v:.2f}x), draft step {best['draft']:.1f} ms ({c:.3f}x)"
    )
    print(
        f"  so a round costs {k} x {c:.3f} + {v:.2f} = {k * c + v:.2f} decode steps and yields at most {k + 1} "
        f"tokens: speed-up <= (tokens per round) / {k * c + v:.2f}"
    )


def bench(name, target, draft, tokenizer, prompts, params, args, hf_pair=None) -> None:
    engines = ["ours alone", "ours + draft"] + (["transformers alone", "transformers assisted"] if hf_pair else [])
    meters = {engine: Meter() for engine in engines}
    identical = 0
    for i, prompt in enumerate(prompts):
        ids = tokenizer.prompt_ids(prompt)
        torch.manual_seed(args.seed + i)
        alone, seconds, _ = run_ours(target, None, tokenizer, ids, params, args.k, args.adaptive)
        meters["ours alone"].add(len(alone), seconds)
        torch.manual_seed(args.seed + i)
        spec, seconds, stats = run_ours(target, draft, tokenizer, ids, params, args.k, args.adaptive)
        meters["ours + draft"].add(len(spec), seconds, stats)
        identical += alone == spec
        if hf_pair:
            for engine, assistant in (("transformers alone", None), ("transformers assisted", hf_pair[1])):
                torch.manual_seed(args.seed + i)
                tokens, seconds = run_hf(hf_pair[0], assistant, tokenizer, ids, params, args.k)
                meters[engine].add(len(trim(tokens, tokenizer.eos_ids)), seconds)
    mode = "greedy" if params.greedy else f"temperature {params.temperature}"
    check = f", greedy outputs identical {identical}/{len(prompts)}" if params.greedy else ""
    print(f"\n{name}: {len(prompts)} prompts, {mode}, K = {args.k}{' (adaptive)' if args.adaptive else ''}{check}")
    print(f"{'engine':<22} | {'tokens':>6} | {'tok/s':>7} | {'speed-up':>8} | acceptance | tokens/target fwd")
    for engine in engines:
        m = meters[engine]
        base = meters["transformers alone" if engine.startswith("transformers") else "ours alone"].speed
        spec_cols = f"{m.stats.acceptance_rate:>10.3f} | {m.stats.tokens_per_round:>6.2f}" if m.stats.proposed else ""
        print(f"{engine:<22} | {m.tokens:>6} | {m.speed:>7.1f} | {m.speed / base:>7.2f}x | {spec_cols}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-target", help="an SFT run folder of the tiny model")
    parser.add_argument("--tiny-draft", help="a distill run folder drafting for it")
    parser.add_argument("--smol-draft", help="a distill run folder drafting for smollm2-135m")
    parser.add_argument("--task", default="arithmetic", help="the domain the drafts were distilled on")
    parser.add_argument("--n", type=int, default=8, help="held-out task prompts (SmolLM2)")
    parser.add_argument("--tiny-n", type=int, default=64, help="held-out task prompts (tiny pair)")
    parser.add_argument("--chat", type=int, default=len(CHAT_PROMPTS), help="general chat prompts (SmolLM2)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--adaptive", action="store_true")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--no-hf", action="store_true", help="skip (c)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = make_task(args.task)

    def params_for(temperature: float) -> SamplingParams:
        return SamplingParams(max_new_tokens=args.new_tokens, temperature=temperature or 1.0, greedy=temperature == 0)

    if args.tiny_target and args.tiny_draft:
        target, tokenizer = load_policy(args.tiny_target)
        draft, _ = load_policy(args.tiny_draft)
        prompts = [model_prompt(task, ex, tokenizer) for ex in task.test[: args.tiny_n]]
        forward_costs(target, draft, args.k)
        for temperature in args.temperatures:
            bench(f"(a) tiny pair, {args.task}", target, draft, tokenizer, prompts, params_for(temperature), args)
    if args.smol_draft:
        from plainrl.llm import hf

        target, tokenizer = load_policy("smollm2-135m")
        draft, _ = load_policy(args.smol_draft)
        forward_costs(target, draft, args.k)
        hf_pair = None
        if not args.no_hf:
            from transformers import AutoModelForCausalLM

            hf_target = AutoModelForCausalLM.from_pretrained(hf.smollm2_folder(), dtype=torch.float32).eval()
            hf_pair = (hf_target, to_hf_llama(draft, hf_target.config))
        domains = {
            f"{args.task} (the draft's domain)": [model_prompt(task, ex, tokenizer) for ex in task.test[: args.n]],
            "general chat": CHAT_PROMPTS[: args.chat],
        }
        for label, prompts in domains.items():
            for temperature in args.temperatures if prompts else []:
                bench(f"(b, c) SmolLM2-135M, {label}", target, draft, tokenizer, prompts, params_for(temperature), args,
                      hf_pair)  # fmt: skip


if __name__ == "__main__":
    main()
