"""Train every classic algorithm on one env over several seeds with its preset, then draw the learning curves
(mean with a min-max band over seeds) and print each run's final evaluation.

    python benchmarks/classic_curves.py --env CartPole-v1 --seeds 0 1 2 --out docs/cartpole_curves.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import plainrl
from plainrl.kit.plots import plot_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algos", nargs="+", default=["ppo", "a2c", "dqn", "dqn_double", "reinforce", "sarsa"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=Path("runs/curves"))
    parser.add_argument("--out", type=Path, default=Path("docs/cartpole_curves.png"))
    args = parser.parse_args()
    labels: dict[Path, str] = {}
    print(f"{'algorithm':<12} {'seed':>4} {'eval mean':>10} {'seconds':>8}")
    for name in args.algos:
        algo, extra = ("dqn", ["double=true"]) if name == "dqn_double" else (name, [])
        for seed in args.seeds:
            run_dir = args.runs / f"{name}_{args.env}_s{seed}"
            if not (run_dir / "eval.json").exists():
                start = time.perf_counter()
                plainrl.train(algo, env=args.env, seed=seed, run_dir=run_dir, set_items=extra, progress=False)
                seconds = f"{time.perf_counter() - start:8.1f}"
            else:
                seconds = "  cached"
            result = json.loads((run_dir / "eval.json").read_text())
            print(f"{name:<12} {seed:>4} {result['mean_return']:>10.1f} {seconds}", flush=True)
            labels[run_dir] = name
    plot_runs(list(labels), args.out, labels)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
