"""The built-in tiny model, trained from scratch with `plainrl sft` on 2-digit addition: seconds to >= 95% greedy
accuracy on the 500 held-out problems, measured from launching the command (imports included).

    .venv/bin/python benchmarks/sft_tiny_addition.py [--seed 0] [--target 0.95]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="sft_tiny_")) / "run"
    command = [
        sys.executable, "-m", "plainrl", "sft", "--model", "tiny", "--task", "arithmetic", "--seed", str(args.seed),
        "--run-dir", str(run_dir), "--no-progress", "--set", f"stop_at_accuracy={args.target}",
        "--set", f"eval_every={args.eval_every}",
    ]  # fmt: skip
    print(" ".join(command[2:]))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    with (run_dir / "metrics.csv").open() as f:
        evaluations = [row for row in csv.DictReader(f) if row.get("accuracy")]
    print("\nstep  seconds  held-out accuracy")
    for row in evaluations:
        print(f"{int(row['step']):>4}  {float(row['time']):>7.1f}  {float(row['accuracy']):.3f}")
    reached = next((row for row in evaluations if float(row["accuracy"]) >= args.target), None)
    print(
        f"\nmachine load (1-min average) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} cores"
    )
    if reached is None:
        print(
            f"did NOT reach {args.target:.0%} (best {max(float(r['accuracy']) for r in evaluations):.3f});"
            f" wall {wall:.1f} s"
        )
        sys.exit(1)
    print(f"reached {float(reached['accuracy']):.1%} held-out greedy accuracy at step {reached['step']}: "
          f"{wall:.1f} s from launch ({float(reached['time']):.1f} s of training) -> {run_dir}")  # fmt: skip


if __name__ == "__main__":
    main()
