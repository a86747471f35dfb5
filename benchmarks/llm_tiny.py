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

import plainrl


def sft_run(out: Path, task: str, accuracy: float) -> Path:
    if not (out / "eval.json").exists():
        start = time.perf_counter()
        settings = [f"stop_at_accuracy={accuracy}", "eval_every=20", "eval_n=200", "total_steps=3000"]
        plainrl.train("sft", task=task, model="tiny", set_items=settings, run_dir=out, progress=False)
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
    fields = {"model": str(start_dir)}
    settings = ["total_steps=100000", *args.overrides]
    if args.trainer == "reward-model":
        trunk = sft_run(args.out / "sft_trunk", args.task, args.trunk_accuracy)
        fields = {"model": str(trunk), "pair_model": str(start_dir)}
        settings = args.overrides

    run_dir = args.out / f"{args.trainer}_{int(time.time())}"
    deadline = time.perf_counter() + args.minutes * 60
    start = time.perf_counter()
    plainrl.train(
        args.trainer, task=args.task, set_items=settings, run_dir=run_dir, progress=False,
        callbacks=[lambda step, model: time.perf_counter() > deadline], **fields,
    )  # fmt: skip
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
