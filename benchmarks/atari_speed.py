"""PPO's throughput on Atari, plainrl vs Stable-Baselines3, with rl-baselines3-zoo's Atari setting on both sides
(8 envs x 128 steps, 4 epochs of minibatches of 256; SB3: CnnPolicy, AtariWrapper, 4 stacked frames), alternating
in one process: env steps per second after the first iteration, and the whole run's seconds with set-up.

    python benchmarks/atari_speed.py [--steps 8192] [--repeats 2] [--env ALE/Pong-v5] [--threads 1] [--envpool]

`--threads`: torch threads on both sides; `--envpool`: also plainrl with `envpool = true` (the `envpool` extra).

Speed only: seconds to a score is benchmarks/classic_vs_sb3.py --env ALE/Pong-v5 (hours on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import gymnasium as gym
import torch


def plainrl_run(env_id: str, steps: int, settings: list[str]) -> tuple[float, float]:
    import plainrl

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run = plainrl.train("ppo", env=env_id, total_steps=steps, run_dir=f"{folder}/run", progress=False,
                            set_items=["eval_episodes=0", *settings])  # fmt: skip
        seconds = time.perf_counter() - started
        first, last = run.metrics[0], run.metrics[-1]
        assert first["step"] is not None and last["step"] is not None and first["time"] is not None
        assert last["time"] is not None
        return (last["step"] - first["step"]) / (last["time"] - first["time"]), seconds


def sb3_run(env_id: str, steps: int) -> tuple[float, float]:
    import ale_py
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)

    class RolloutClock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.starts: list[tuple[int, float]] = []

        def _on_rollout_start(self) -> None:
            self.starts.append((self.num_timesteps, time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    started = time.perf_counter()
    env = VecFrameStack(make_atari_env(env_id, n_envs=8, seed=0, env_kwargs={"frameskip": 1}), 4)
    model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1,
                vf_coef=0.5, ent_coef=0.01, seed=0, device="cpu")  # fmt: skip
    clock = RolloutClock()
    model.learn(steps, callback=clock)
    ended = time.perf_counter()
    second_step, second_start = clock.starts[1]  # from the second rollout on, as plainrl's first logged iteration
    return (steps - second_step) / (ended - second_start), ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--envpool", action="store_true", help="also plainrl with envpool = true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # SB3's; plainrl sets its own from torch_threads, the same number
    threads = [f"torch_threads={args.threads}"]
    results: dict[str, list[tuple[float, float]]] = {"plainrl": [], "sb3": []}
    if args.envpool:
        results["envpool"] = []
    for _ in range(args.repeats):
        results["plainrl"].append(plainrl_run(args.env, args.steps, threads))
        if args.envpool:
            results["envpool"].append(plainrl_run(args.env, args.steps, [*threads, "envpool=true"]))
        results["sb3"].append(sb3_run(args.env, args.steps))
    for lib, rows in results.items():
        rates = ", ".join(f"{rate:.0f}" for rate, _ in rows)
        seconds = ", ".join(f"{s:.1f}" for _, s in rows)
        print(f"{lib:<8} env steps/s after the first iteration: {rates}; whole {args.steps}-step runs: {seconds} s")
    rate = {lib: statistics.median(r for r, _ in rows) for lib, rows in results.items()}
    print(f"ratio plainrl/sb3 seconds per env step = {rate['sb3'] / rate['plainrl']:.2f}")
    if args.envpool:
        print(f"ratio plainrl with envpool/sb3 seconds per env step = {rate['sb3'] / rate['envpool']:.2f}")


if __name__ == "__main__":
    main()
