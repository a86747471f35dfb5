"""GRPO on the built-in tiny model: SFT from scratch on 2-digit addition until held-out accuracy reaches a weak
start (30-60%), then GRPO on the accuracy reward within a wall-clock budget; prints accuracy before and after.

    python benchmarks/grpo_tiny.py --start-accuracy 0.45 --minutes 10
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from plainrl.llm import runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--start-accuracy", type=float, default=0.45)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("runs/grpo_tiny"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="GRPO config override")
    args = parser.parse_args()

    sft_dir = args.out / "sft"
    if not (sft_dir / "eval.json").exists():
        start = time.perf_counter()
        runs.train_new("sft", set_items=[f"stop_at_accuracy={args.start_accuracy}", "eval_every=20", "eval_n=200"],
                       run_dir=sft_dir, flags={"env": args.task, "model": "tiny"}, show_progress=False)  # fmt: skip
        print(f"SFT: {time.perf_counter() - start:.0f} s")

    grpo_dir = args.out / f"grpo_{int(time.time())}"
    deadline = time.perf_counter() + args.minutes * 60
    settings = ["eval_every=10", "eval_n=200", "total_steps=100000", *args.overrides]
    from plainrl.kit.config import build_config
    from plainrl.kit.run import Run
    from plainrl.llm.grpo import Config, train

    config = build_config(Config, {}, args.task, None, settings, {"model": str(sft_dir)})
    start = time.perf_counter()
    with Run.create("grpo", config, grpo_dir, show_progress=False) as run:
        run.step_hooks.append(lambda step, model: time.perf_counter() > deadline)
        train(config, run)
    seconds = time.perf_counter() - start
    with (grpo_dir / "metrics.csv").open() as f:
        evals = [(int(r["step"]), float(r["accuracy"])) for r in csv.DictReader(f) if r.get("accuracy")]
    with (sft_dir / "metrics.csv").open() as f:
        before = [float(r["accuracy"]) for r in csv.DictReader(f) if r.get("accuracy")][-1]
    after = evals[-1][1]  # the last evaluation, not the best one
    print(f"held-out accuracy (200 problems, greedy): SFT start {before:.3f}; GRPO evaluations {evals}")
    print(
        f"GRPO: {seconds:.0f} s, final {after:.3f}, gain {100 * (after - before):+.1f} points -> {grpo_dir}/curve.png"
    )


if __name__ == "__main__":
    main()
