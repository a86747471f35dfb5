"""RL post-training of the built-in tiny model, measured: SFT from scratch on 2-digit addition until held-out
accuracy reaches a weak start (30-60%), then one trainer within a wall-clock budget; prints accuracy before/after.

    python benchmarks/llm_tiny.py --trainer grpo --minutes 5 --set temperature=0.7
    python benchmarks/llm_tiny.py --trainer dpo --minutes 10
    python benchmarks/llm_tiny.py --trainer ppo-llm --minutes 15
    python benchmarks/llm_tiny.py --trainer reward-model --trunk-accuracy 0.95    held-out pairwise accuracy

The SFT start is trained once and reused (OUT/sft). The reward model's pairs are sampled from that weak start
(so they mix right and wrong answers) while its trunk starts from a stronger SFT run (OUT/sft_trunk), as
InstructGPT's reward model starts from its SFT model.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from plainrl.llm import runs


def sft_run(out: Path, task: str, accuracy: float) -> Path:
    if not (out / "eval.json").exists():
        start = time.perf_counter()
        settings = [f"stop_at_accuracy={accuracy}", "eval_every=20", "eval_n=200", "total_steps=3000"]
        runs.train_new("sft", set_items=settings, run_dir=out, flags={"env": task, "model": "tiny"},
                       show_progress=False)  # fmt: skip
        print(f"SFT to {accuracy}: {time.perf_counter() - start:.0f} s")
    return out


def evaluations(run_dir: Path) -> list[tuple[int, float]]:
    with (run_dir / "metrics.csv").open() as f:
        return [(int(r["step"]), float(r["accuracy"])) for r in csv.DictReader(f) if r.get("accuracy")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", choices=["grpo", "dpo", "ppo-llm", "reward-model"], default="grpo")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--start-accuracy", type=float, default=0.45)
    parser.add_argument("--trunk-accuracy", type=float, default=0.95, help="reward model: the trunk's SFT accuracy")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("runs/llm_tiny"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="trainer config override")
    args = parser.parse_args()

    start_dir = sft_run(args.out / "sft", args.task, args.start_accuracy)
    before = evaluations(start_dir)[-1][1]
    flags = {"model": str(start_dir)}
    settings = ["total_steps=100000", *args.overrides]
    if args.trainer == "reward-model":
        trunk = sft_run(args.out / "sft_trunk", args.task, args.trunk_accuracy)
        flags = {"model": str(trunk), "pair_model": str(start_dir)}
        settings = args.overrides

    from plainrl.kit.config import build_config
    from plainrl.kit.run import Run

    module = runs.trainer(args.trainer)
    run_dir = args.out / f"{args.trainer}_{int(time.time())}"
    config = build_config(module.Config, {}, args.task, None, settings, flags)
    deadline = time.perf_counter() + args.minutes * 60
    start = time.perf_counter()
    with Run.create(args.trainer, config, run_dir, show_progress=False) as run:
        run.step_hooks.append(lambda step, model: time.perf_counter() > deadline)
        module.train(config, run)
    seconds = time.perf_counter() - start
    final = json.loads((run_dir / "eval.json").read_text())
    if args.trainer == "reward-model":
        print(f"reward model: {seconds:.0f} s, held-out pairwise accuracy {final['pairwise_accuracy']:.3f} "
              f"on {final['n']} pairs -> {run_dir}/curve.png")  # fmt: skip
        return
    print(f"held-out accuracy (200 problems, greedy): SFT start {before:.3f}; evaluations {evaluations(run_dir)}")
    after = final["accuracy"]  # the final evaluation, not the best one
    print(f"{args.trainer}: {seconds:.0f} s, final {after:.3f}, gain {100 * (after - before):+.1f} points "
          f"-> {run_dir}/curve.png")  # fmt: skip


if __name__ == "__main__":
    main()
