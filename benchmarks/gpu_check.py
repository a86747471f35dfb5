"""One check of plainrl on a bare GPU machine, in one go: the test suite on CUDA, then speed (issue #17).

    bash benchmarks/gpu_check.sh              # on the GPU machine: PYTHONPATH=. python3 benchmarks/gpu_check.py
    bash benchmarks/gpu_check.sh --dry-run    # here: every step on the CPU at tiny sizes (a few minutes)

Steps, each under its own time limit, each printed as it ends (a step that fails or runs out of time is reported
and the next one runs):
1. `pytest --device cuda` (the device-aware tests on the GPU, the LLM trainers' auto device on the GPU).
2. Decoding tokens/s at batch 1 and 64 on a SmolLM2-shaped Llama built from its config with random weights (speed
   does not depend on the weights), EOS ignored: plainrl's engine eager (decode="dynamic") and graph-captured
   (decode="graph"; "static", the same fixed-shape step uncaptured, in the dry run) on the built-in copy of the
   model, and transformers' `generate` on the model itself.
3. GRPO seconds per step, rollout and update apart, fp32 and bf16, on the built-in model at SmolLM2's shape.
4. Speculative sampling at batch 1: a target trained here (SFT) on a task with long answers ("count on from N:"
   -> the next ten numbers) and a draft distilled from it (`distill-draft`); tokens/s of the target alone and
   with the draft (K = 4), temperature 0 and 1, both graph-captured on a GPU.

The results go to stdout, as JSON to --out (default gpu_check.json) and, on a GPU, as tables to docs/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# SmolLM2-135M's shape (its config.json), for a random-weight Llama of the same speed
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152)  # fmt: skip
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)  # fmt: skip


def step_tests(device: str, limit: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "--device", device, "-p", "no:cacheprovider"]
    if device == "cpu":  # the dry run: the device-aware files only, to keep it short
        command += [
            "tests/llm/test_generate.py",
            "tests/llm/test_model.py",
            "tests/llm/test_precision.py",
            "tests/llm/test_speculative.py",
        ]
    else:  # the whole suite, on the machine's cores (pytest-xdist)
        command += ["-n", "8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": done.returncode, "summary": last, "tail": done.stdout[-3000:] + done.stderr[-1000:]}


def random_llama(shape: dict[str, int], device: Any) -> Any:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=True,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
    return transformers.LlamaForCausalLM(config).to(device).eval()


def step_decode(device: str, shape: dict[str, int], new_tokens: int, batches: list[int]) -> dict[str, Any]:
    import torch

    from plainrl.llm.generate import SamplingParams, generate
    from plainrl.llm.hf import from_hf_llama

    class Ids:  # the tokenizer interface generate() needs: ids only, EOS ignored
        pad_id, eos_ids = 0, (2,)

        def decode(self, ids: list[int]) -> str:
            return ""

    model = random_llama(shape, device)
    ours = from_hf_llama(model).to(device).eval()
    fixed = "graph" if device == "cuda" else "static"
    params = SamplingParams(max_new_tokens=new_tokens, greedy=True, ignore_eos=True)

    def tokens_per_second(run: Any, tokens: int) -> float:
        run()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        return tokens / (time.perf_counter() - started)

    def theirs(ids: torch.Tensor) -> None:
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)  # fmt: skip

    rows: dict[str, Any] = {}
    for batch in batches:
        prompts = [[5 + (i + j) % 100 for j in range(16)] for i in range(batch)]
        ids = torch.tensor(prompts, device=device)
        rows[str(batch)] = {
            f"plainrl_{mode}": tokens_per_second(
                lambda p=prompts, m=mode: generate(ours, Ids(), p, params, decode=m), batch * new_tokens
            )
            for mode in ("dynamic", fixed)
        }
        rows[str(batch)]["transformers"] = tokens_per_second(lambda i=ids: theirs(i), batch * new_tokens)
    return rows


def step_speculative(device: str, target_args: list[str], draft_args: list[str]) -> dict[str, Any]:
    """Tokens/s at batch 1 of a target alone and with its distilled draft, on held-out prompts of a counting task."""
    import torch

    from plainrl.llm.generate import SamplingParams, generate
    from plainrl.llm.policies import load_policy
    from plainrl.llm.speculative import speculative_generate

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        rows = [{"prompt": f"count on from {n}:", "answer": " " + " ".join(str(n + i) for i in range(1, 11))}
                for n in range(1000)]  # fmt: skip
        (base / "count.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = str(base / "count.jsonl")
        cli = [sys.executable, "-m", "plainrl", "train"]
        common = ["--device", device, "--no-progress", "--task", task]
        subprocess.run([*cli, "sft", "--model", "tiny", *target_args, *common, "--run-dir", str(base / "target")],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([*cli, "distill-draft", "--model", str(base / "target"), *draft_args, *common,
                        "--run-dir", str(base / "draft")], check=True, capture_output=True)  # fmt: skip
        target, tokenizer = load_policy(str(base / "target"), device)
        draft, _ = load_policy(str(base / "draft"), device)
        target.eval()
        draft.eval()
        prompts = [tokenizer.prompt_ids(f"count on from {n}:") for n in range(1000, 1016)]
        for temperature in (0.0, 1.0):
            params = SamplingParams(max_new_tokens=40, temperature=temperature, greedy=temperature == 0)
            seconds = {"alone": 0.0, "with_draft": 0.0}
            tokens = {"alone": 0, "with_draft": 0}
            accepted = proposed = 0
            for i, prompt in enumerate(prompts[:1] + prompts):  # the first run warms up (and captures the graphs)
                for engine in ("alone", "with_draft"):
                    generator = torch.Generator(device).manual_seed(i)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                    if engine == "alone":
                        rollout = generate(target, tokenizer, [prompt], params, generator)
                    else:
                        rollout, stats = speculative_generate(target, draft, tokenizer, [prompt], params, 4,
                                                              generator=generator)  # fmt: skip
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if i > 0:
                        seconds[engine] += time.perf_counter() - started
                        tokens[engine] += int(rollout.completion_mask.sum())
                        if engine == "with_draft":
                            accepted, proposed = accepted + stats.accepted, proposed + stats.proposed
            speed = {engine: tokens[engine] / seconds[engine] for engine in seconds}
            results[f"temperature {temperature:g}"] = {
                "alone_tokens_per_s": speed["alone"], "with_draft_tokens_per_s": speed["with_draft"],
                "speedup": speed["with_draft"] / speed["alone"], "acceptance": accepted / max(proposed, 1),
            }  # fmt: skip
    return results


def step_grpo(device: str, model_args: list[str], grpo_args: list[str], steps: int) -> dict[str, Any]:
    """GRPO on the built-in model of this shape (an SFT run of one step first), fp32 and bf16."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        cli = [sys.executable, "-m", "plainrl", "train"]
        common = ["--device", device, "--no-progress", "--set", "eval_every=0", "--set", "eval_n=4"]
        subprocess.run([*cli, "sft", "--total-steps", "1", "--set", "warmup_steps=0", *model_args, *common,
                        "--run-dir", str(base / "model")], check=True, capture_output=True)  # fmt: skip
        for dtype in ("float32", "bfloat16"):
            run_dir = base / dtype
            subprocess.run([*cli, "grpo", "--model", str(base / "model"), "--total-steps", str(steps), *grpo_args,
                            *common, "--set", f"dtype={dtype}", "--run-dir", str(run_dir)],
                           check=True, capture_output=True)  # fmt: skip
            import csv

            with (run_dir / "metrics.csv").open() as f:
                rows = list(csv.DictReader(f))[1:]  # the first step warms up
            results[dtype] = {
                k: sum(float(r[k]) for r in rows) / len(rows) for k in ("rollout_seconds", "update_seconds")
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args()
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report: dict[str, Any] = {"device": device, "dry_run": dry}
    built_in = ["--set", "tiny_dim=576", "--set", "tiny_n_layers=30", "--set", "tiny_n_heads=9",
                "--set", "tiny_n_kv_heads=3", "--set", "tiny_hidden_dim=1536"]  # fmt: skip
    # The speculative pair: a 12-layer 512-wide target (~40M parameters) and a 2-layer 96-wide draft (draft_dim is
    # at most the vocabulary, 99 characters: the draft's embedding starts as a PCA of the target's)
    target = ["--total-steps", "400", "--set", "tiny_dim=512", "--set", "tiny_n_layers=12", "--set", "tiny_n_heads=8",
              "--set", "tiny_n_kv_heads=4", "--set", "tiny_hidden_dim=1536", "--set", "eval_every=0",
              "--set", "eval_n=4", "--set", "learning_rate=5e-4"]  # fmt: skip
    tiny_target = ["--total-steps", "30", "--set", "eval_every=0", "--set", "eval_n=4", "--set", "warmup_steps=5"]
    draft = ["--total-steps", "30" if dry else "300", "--set", f"n_samples={32 if dry else 256}",
             "--set", "max_new_tokens=40", "--set", "draft_dim=96", "--set", "draft_n_layers=2",
             "--set", "draft_hidden_dim=256", "--set", "warmup_steps=5"]  # fmt: skip
    steps: list[tuple[str, Any]] = [
        ("tests", lambda: step_tests(device, 150 if dry else 240)),
        ("decode", lambda: step_decode(device, TINY if dry else SMOLLM2, 8 if dry else 64, [1, 4] if dry else [1, 64])),
        ("grpo", lambda: step_grpo(device, [] if dry else built_in,
                                   ["--set", f"prompts_per_step={2 if dry else 8}", "--set", "group_size=8",
                                    "--set", f"max_new_tokens={8 if dry else 64}"], 2 if dry else 4)),
        ("speculative", lambda: step_speculative(device, target if not dry else tiny_target, draft)),
    ]  # fmt: skip
    for name, step in steps:
        started = time.perf_counter()
        try:
            report[name] = step()
        except Exception as error:  # a step that fails is reported; the next one still runs
            report[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        report[name + "_seconds"] = round(time.perf_counter() - started, 1)
        print(f"== {name} ({report[name + '_seconds']} s)\n{json.dumps(report[name], indent=1)[:3000]}", flush=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"-> {args.out}")
    if not dry:
        Path("docs/gpu.md").write_text(gpu_page(report))
        print("-> docs/gpu.md")


def table(title: str, result: dict[str, Any], header: list[str], cells: Any) -> list[str]:
    """A section of docs/gpu.md: a table with one row per key of `result` (cells(key, value) -> its cells), or the
    error the step ended with."""
    lines = [f"## {title}", ""]
    if "error" in result:
        return [*lines, f"`{result['error']}`", ""]
    rows = [f"| {' | '.join(cells(key, value))} |" for key, value in result.items()]
    return [*lines, f"| {' | '.join(header)} |", "|" + " --- |" * len(header), *rows, ""]


def gpu_page(report: dict[str, Any]) -> str:
    """docs/gpu.md: what this script measured, as tables (a step that failed shows its error)."""
    tests = report.get("tests", {})
    lines = ["# plainrl on a GPU", "", f"`bash benchmarks/gpu_check.sh`, {time.strftime('%Y-%m-%d')}.", "",
             "## `pytest --device cuda`", "", f"`{tests.get('summary') or tests.get('error')}`", ""]  # fmt: skip
    lines += table("Decoding, tokens/s (SmolLM2-shaped Llama, random weights, 64 new tokens, greedy)",
                   report.get("decode", {}), ["batch", "plainrl eager", "plainrl CUDA graph", "transformers generate"],
                   lambda b, r: [b, f"{r['plainrl_dynamic']:.0f}", f"{r.get('plainrl_graph', 0):.0f}",
                                 f"{r['transformers']:.0f}"])  # fmt: skip
    lines += table("GRPO seconds per step (built-in model at SmolLM2's shape, 8 prompts x 8, 64 new tokens)",
                   report.get("grpo", {}), ["dtype", "rollout s", "update s"],
                   lambda d, r: [d, f"{r['rollout_seconds']:.2f}", f"{r['update_seconds']:.2f}"])  # fmt: skip
    lines += table("Speculative sampling, batch 1 (12x512 target, 2x96 draft distilled here, K = 4, counting task)",
                   report.get("speculative", {}), ["", "target alone tok/s", "with draft tok/s", "speed-up",
                                                   "acceptance"],
                   lambda t, r: [t, f"{r['alone_tokens_per_s']:.0f}", f"{r['with_draft_tokens_per_s']:.0f}",
                                 f"{r['speedup']:.2f}x", f"{r['acceptance']:.2f}"])  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
