"""plainrl vs Stable-Baselines3 (rl-baselines3-zoo hyperparameters): seconds and steps to solve.

One protocol for both libraries, run one after the other in this process: every `--eval-every` env steps,
`--eval-episodes` deterministic episodes on a separate env; "solved" = the first evaluation whose mean
reaches the env's threshold; time = training wall-clock up to then, evaluation time excluded. Timing starts
when training is set up (envs, networks, and for plainrl the run folder) after the libraries are imported.

    python benchmarks/classic_vs_sb3.py --algo ppo --env CartPole-v1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.utils.tensorboard  # noqa: F401  (import libraries before any clock starts, for both sides)

from plainrl.kit.config import build_config
from plainrl.kit.evaluate import agent_policy, evaluate
from plainrl.kit.registry import load_algorithm
from plainrl.kit.run import Run

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0, "Pendulum-v1": -200.0}

# rl-baselines3-zoo hyperparameters (hyperparams/<algo>.yml), "lin_X" = linear decay from X to 0.
SB3_ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "CartPole-v1"): dict(
        n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
        ent_coef=0.0, learning_rate="lin_0.001", clip_range="lin_0.2",
    ),
    ("a2c", "CartPole-v1"): dict(n_envs=8, n_timesteps=500_000, ent_coef=0.0),
    ("dqn", "CartPole-v1"): dict(
        n_envs=1, n_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
        gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
        exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
    ),
    ("sac", "Pendulum-v1"): dict(n_envs=1, n_timesteps=20_000, learning_rate=1e-3),
    ("td3", "Pendulum-v1"): dict(
        n_envs=1, n_timesteps=20_000, gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise_type="normal",
        noise_std=0.1, gradient_steps=1, train_freq=1, learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]),
    ),
    ("ddpg", "Pendulum-v1"): dict(
        n_envs=1, n_timesteps=20_000, gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise_type="normal",
        noise_std=0.1, gradient_steps=1, train_freq=1, learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]),
    ),
}  # fmt: skip


class SolveTracker:
    """Evaluates every `every` steps, keeps evaluation time out of the clock, and says when solved."""

    def __init__(self, env_id: str, seed: int, every: int, episodes: int, threshold: float, max_seconds: float):
        self.env_id, self.seed, self.every, self.episodes = env_id, seed, every, episodes
        self.threshold, self.max_seconds = threshold, max_seconds
        self.next_eval = every
        self.eval_seconds = 0.0
        self.start = time.perf_counter()
        self.solved_at: tuple[float, int] | None = None
        self.last_mean = float("nan")

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds

    def check(self, step: int, policy: Callable[[np.ndarray], np.ndarray]) -> bool:
        """Called after training steps; True = stop (solved or out of time)."""
        if step < self.next_eval:
            return False
        seconds = self.train_seconds()
        eval_start = time.perf_counter()
        self.next_eval = (step // self.every + 1) * self.every
        self.last_mean = evaluate(policy, self.env_id, self.episodes, self.seed)["mean_return"]
        self.eval_seconds += time.perf_counter() - eval_start
        if self.last_mean >= self.threshold:
            self.solved_at = (seconds, step)
            return True
        return seconds > self.max_seconds


def run_plainrl(algo: str, env_id: str, seed: int, tracker_args: dict[str, Any], overrides: list[str]) -> SolveTracker:
    module = load_algorithm(algo)
    config = build_config(module.Config, module.PRESETS, env_id, set_items=overrides, flags={"seed": seed})
    config.checkpoint_every = 10**9  # like SB3 here: no checkpoints mid-run (the final one is still written)
    tracker = SolveTracker(env_id, seed, **tracker_args)
    with tempfile.TemporaryDirectory() as tmp, Run.create(algo, config, tmp, show_progress=False) as run:
        run.step_hooks.append(lambda step, agent: tracker.check(step, agent_policy(agent)))
        module.train(config, run)
    return tracker


def _sb3_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        initial = float(value[4:])
        return lambda progress_remaining: progress_remaining * initial
    return value


def run_sb3(algo: str, env_id: str, seed: int, tracker_args: dict[str, Any]) -> SolveTracker:
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    hyper = dict(SB3_ZOO[(algo, env_id)])
    n_envs, n_timesteps = hyper.pop("n_envs"), hyper.pop("n_timesteps")
    if hyper.pop("noise_type", None) == "normal":  # the zoo's action noise for DDPG and TD3
        from stable_baselines3.common.noise import NormalActionNoise

        n_actions = gym.make(env_id).action_space.shape[0]
        hyper["action_noise"] = NormalActionNoise(np.zeros(n_actions), hyper.pop("noise_std") * np.ones(n_actions))
    tracker = SolveTracker(env_id, seed, **tracker_args)

    class Track(BaseCallback):
        def _on_step(self) -> bool:
            def policy(obs: np.ndarray) -> np.ndarray:
                return self.model.predict(obs, deterministic=True)[0]

            return not tracker.check(self.num_timesteps, policy)

    tracker.start = time.perf_counter()
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    model_cls = getattr(sb3, algo.upper())
    model = model_cls("MlpPolicy", env, seed=seed, device="cpu", **{k: _sb3_value(v) for k, v in hyper.items()})
    model.learn(total_timesteps=n_timesteps, callback=Track())
    return tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--libs", nargs="+", default=["plainrl", "sb3"], choices=["plainrl", "sb3"])
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="give up on a run after this long")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="plainrl config override")
    args = parser.parse_args()
    torch.set_num_threads(1)  # both libraries on the same footing: one torch thread
    threshold = THRESHOLDS[args.env]
    tracker_args = dict(every=args.eval_every, episodes=args.eval_episodes, threshold=threshold,
                        max_seconds=args.max_seconds)  # fmt: skip
    print(f"{args.algo} on {args.env}: solved = mean of {args.eval_episodes} deterministic episodes >= {threshold}, "
          f"evaluated every {args.eval_every} steps; seconds exclude evaluation")  # fmt: skip
    print(f"{'library':<8} {'seed':>4} {'seconds':>8} {'steps':>8}  last eval")
    medians: dict[str, float] = {}
    for lib in args.libs:  # untimed warm-up: torch's one-time initialisation is nobody's training time
        warm_up = dict(tracker_args, max_seconds=0.0)  # stops at the first evaluation
        if lib == "plainrl":
            run_plainrl(args.algo, args.env, 0, warm_up, args.overrides)
        else:
            run_sb3(args.algo, args.env, 0, warm_up)
    for lib in args.libs:
        seconds_list = []
        for seed in args.seeds:
            if lib == "plainrl":
                tracker = run_plainrl(args.algo, args.env, seed, tracker_args, args.overrides)
            else:
                tracker = run_sb3(args.algo, args.env, seed, tracker_args)
            seconds, steps = tracker.solved_at if tracker.solved_at else (float("inf"), -1)
            seconds_list.append(seconds)
            shown = f"{seconds:8.2f} {steps:8d}" if tracker.solved_at else f"{'unsolved':>8} {'-':>8}"
            print(f"{lib:<8} {seed:>4} {shown}  {tracker.last_mean:.1f}", flush=True)
        medians[lib] = statistics.median(seconds_list)
        print(f"{lib:<8} median seconds-to-solve = {medians[lib]:.2f}", flush=True)
    if len(medians) == 2:
        print(f"ratio plainrl/sb3 seconds-to-solve = {medians['plainrl'] / medians['sb3']:.2f}")


if __name__ == "__main__":
    main()
