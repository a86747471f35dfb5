"""plainrl SAC vs Stable-Baselines3 SAC on a MuJoCo env for a fixed number of env steps: return and wall-clock.

Each library trains one seed for exactly `--steps` env steps (no evaluation during training), then its final
policy plays `--eval-episodes` deterministic episodes through the same `plainrl.kit.evaluate.evaluate_episodes`.
Training wall-clock is timed from set-up (envs, networks, and for plainrl its config checks and its run folder,
whose closing draws curve.png) after the libraries are imported; every 5,000 steps a progress line shows the
elapsed seconds, the load average and the mean training return of the episodes finished since the last line
(plainrl: read from its run's metrics.csv). The process's CPU seconds are printed too: on a shared machine they
depend less on the other jobs than the wall-clock does. SB3 uses the rl-baselines3-zoo hyperparameters; plainrl
its preset.

    pip install -e '.[mujoco]'
    python benchmarks/mujoco_sac.py --env HalfCheetah-v5 --steps 100000 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.utils.tensorboard  # noqa: F401  (import libraries before any clock starts, for both sides)

import plainrl
import plainrl.kit.plots  # noqa: F401  (matplotlib, for the curve.png drawn when plainrl's run folder closes)
from plainrl.kit.evaluate import agent_policy, evaluate_episodes

# rl-baselines3-zoo hyperparams/sac.yml, "mujoco-defaults": SB3's SAC defaults (lr 3e-4, batch 256, buffer 1e6,
# tau 0.005, gamma 0.99, 256x256, auto entropy starting at 1.0) with 10k uniform-random steps first.
SB3_ZOO: dict[str, dict[str, Any]] = {
    "HalfCheetah-v5": dict(learning_starts=10_000),
    "Hopper-v5": dict(learning_starts=10_000),
    "Walker2d-v5": dict(learning_starts=10_000),
    "Ant-v5": dict(learning_starts=10_000),
}
PROGRESS_EVERY = 5_000


class Progress:
    """Prints elapsed seconds and the mean training return every PROGRESS_EVERY steps."""

    def __init__(self, lib: str) -> None:
        self.lib, self.next_print = lib, PROGRESS_EVERY
        self.restart()

    def restart(self) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        """(wall-clock, CPU) seconds since the start."""
        return time.perf_counter() - self.start, time.process_time() - self.cpu_start

    def check(self, step: int, recent_returns: Callable[[], list[float]]) -> bool:
        """Prints when due; returns False (never asks to stop)."""
        if step < self.next_print:
            return False
        self.next_print = (step // PROGRESS_EVERY + 1) * PROGRESS_EVERY
        returns = recent_returns()
        shown = f"{np.mean(returns):9.1f}" if returns else f"{'-':>9}"
        load = os.getloadavg()[0]
        print(f"{self.lib:<8} step {step:>7}  {self.seconds()[0]:8.1f} s  load {load:4.1f}  train return {shown}",
              flush=True)  # fmt: skip
        return False


def run_plainrl(env_id: str, seed: int, steps: int, overrides: list[str]) -> tuple[tuple[float, float], Any]:
    progress = Progress("plainrl")
    with tempfile.TemporaryDirectory() as tmp:
        read_up_to = [0]  # metrics.csv rows up to this step have been read
        trained: list[Any] = []  # the agent the callbacks see: the one training returns

        def recent() -> list[float]:  # training returns logged since the last call, from the run's metrics.csv
            with open(os.path.join(tmp, "metrics.csv"), newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) > read_up_to[0]]
            read_up_to[0] = max([read_up_to[0], *(int(row["step"]) for row in rows)])
            returns: list[float] = []
            for row in rows:
                if row.get("episode_return") and np.isfinite(float(row["episode_return"])):
                    returns.extend([float(row["episode_return"])] * int(float(row.get("episodes") or 1)))
            return returns

        def track(step: int, agent: Any) -> bool:
            trained[:] = [agent]
            return progress.check(step, recent)

        plainrl.train(
            "sac", env=env_id, seed=seed, total_steps=steps, run_dir=tmp, progress=False, set_items=overrides,
            callbacks=[track],
            checkpoint_every=10**9,  # like SB3 here: no checkpoints mid-run (the final one is still written)
            eval_episodes=0,  # no final evaluation inside the timing: main() evaluates both libraries alike
        )  # fmt: skip
        seconds = progress.seconds()
    return seconds, agent_policy(trained[0])


def run_sb3(env_id: str, seed: int, steps: int) -> tuple[tuple[float, float], Any]:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    progress = Progress("sb3")

    class Track(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[float] = []

        def recent(self) -> list[float]:
            kept, self.seen = self.seen, []
            return kept

        def _on_step(self) -> bool:
            self.seen.extend(float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info)
            return not progress.check(self.num_timesteps, self.recent)

    progress.restart()
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    model = SAC("MlpPolicy", env, seed=seed, device="cpu", **SB3_ZOO[env_id])
    model.learn(total_timesteps=steps, callback=Track())
    seconds = progress.seconds()

    def policy(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    return seconds, policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5", choices=sorted(SB3_ZOO))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--libs", nargs="+", default=["plainrl", "sb3"], choices=["plainrl", "sb3"])
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="plainrl config override")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both libraries on the same footing: one torch thread
    print(f"sac on {args.env}, seed {args.seed}, {args.steps} env steps each; then {args.eval_episodes} "
          f"deterministic episodes; seconds = training only", flush=True)  # fmt: skip
    results: dict[str, tuple[float, float, dict[str, Any]]] = {}
    for lib in args.libs:
        print(f"{lib:<8} start: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        if lib == "plainrl":
            (seconds, cpu), policy = run_plainrl(args.env, args.seed, args.steps, args.overrides)
        else:
            (seconds, cpu), policy = run_sb3(args.env, args.seed, args.steps)
        print(f"{lib:<8} end: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        result = evaluate_episodes(policy, args.env, args.eval_episodes, args.seed)
        results[lib] = (seconds, cpu, result)
        print(f"{lib:<8} done: {seconds:.1f} s, {cpu:.1f} CPU s ({args.steps / seconds:.1f} steps/s), eval "
              f"mean_return = {result['mean_return']:.1f} +/- {result['std_return']:.1f}", flush=True)  # fmt: skip
    print(f"{'library':<8} {'seconds':>9} {'CPU s':>9} {'steps/s':>8} {'eval mean':>10} {'eval std':>9}")
    for lib, (seconds, cpu, result) in results.items():
        print(f"{lib:<8} {seconds:9.1f} {cpu:9.1f} {args.steps / seconds:8.1f} {result['mean_return']:10.1f} "
              f"{result['std_return']:9.1f}")  # fmt: skip
    if len(results) == 2:
        print(f"ratio plainrl/sb3: seconds {results['plainrl'][0] / results['sb3'][0]:.2f}, "
              f"CPU seconds {results['plainrl'][1] / results['sb3'][1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
