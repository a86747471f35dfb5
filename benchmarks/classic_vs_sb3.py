"""plainrl vs Stable-Baselines3 (rl-baselines3-zoo hyperparameters): seconds and steps to solve.

One protocol for both libraries, run one after the other in this process: every `--eval-every` env steps,
`--eval-episodes` deterministic episodes on a separate env; "solved" = the first evaluation whose mean
reaches the env's threshold; time = training wall-clock up to then, evaluation time excluded. Timing starts
when training is set up (envs, networks, and for plainrl its config checks and run folder) after the libraries
are imported.

    python benchmarks/classic_vs_sb3.py --algo ppo --env CartPole-v1 --seeds 0 1 2
    python benchmarks/classic_vs_sb3.py --algo ppo --env ALE/Pong-v5 --libs sb3 --seeds 0 --eval-every 100000 \
        --eval-episodes 5 --max-seconds 36000 --save-dir /work/runs/sb3_pong  # Atari: hours (docs/environments.md)

`--save-dir` (Stable-Baselines3's side) is for runs longer than a session: at every evaluation the model and the
tracker (training seconds so far, evaluations) are saved there, and the same command run again continues from the
last evaluation, training seconds carried over (time after it that a stop lost is not counted). Continuing starts
fresh episodes and a fresh rollout, as plainrl's `plainrl resume` does. Every evaluation is also appended to
`evaluations.csv` there.

`--toyrl` (A2C and DQN on CartPole-v1) also runs ToyRL (`pip install --ignore-requires-python toyrl`), last,
with the hyperparameters of its own CartPole examples (the `__main__` blocks of toyrl/a2c.py and toyrl/dqn.py)
and a cap of `--toyrl-seconds`. Its trainers have no seed, callback or step budget to hook, so:
- seed: torch's and `random`'s global RNGs (network init, action sampling, replay sampling) and the first
  `reset(seed=...)` of its training env;
- its training env is wrapped: every real env step (not the reset step of its DQN's next-step Autoreset) goes
  through the same SolveTracker, and an exception ends `train()` when it is solved or out of time;
- evaluation is greedy on its own network (argmax of A2C's logits, as its `act(eval=True)`, and of DQN's Q-values),
  computed here so that it draws nothing from torch's RNG; its built-in evaluation (10 episodes on the training
  env every 100 A2C episodes) is switched off, as this protocol evaluates instead; its prints go to /dev/null.

    python benchmarks/classic_vs_sb3.py --algo dqn --seeds 0 1 2 --toyrl
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.utils.tensorboard  # noqa: F401  (import libraries before any clock starts, for both sides)

import plainrl
from plainrl.kit.evaluate import agent_policy, evaluate_episodes

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0, "Pendulum-v1": -200.0,
              "ALE/Pong-v5": 0.0, "ALE/Breakout-v5": 30.0}  # fmt: skip

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
    # hyperparams/ppo.yml "atari" (CnnPolicy, AtariWrapper, 4 stacked frames) for the budget of 2M steps.
    **{("ppo", game): dict(
        n_envs=8, n_timesteps=2_000_000, n_steps=128, n_epochs=4, batch_size=256, learning_rate="lin_2.5e-4",
        clip_range="lin_0.1", vf_coef=0.5, ent_coef=0.01,
    ) for game in ("ALE/Pong-v5", "ALE/Breakout-v5")},
}  # fmt: skip

# ToyRL's own CartPole examples (the `__main__` blocks of toyrl/a2c.py and toyrl/dqn.py), minus wandb logging.
TOYRL_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("a2c", "CartPole-v1"): dict(solved_threshold=475.0, num_episodes=100_000, learning_rate=0.002),
    ("dqn", "CartPole-v1"): dict(
        solved_threshold=475.0, max_training_steps=500_000, learning_rate=2.5e-4, use_target_network=True,
        target_soft_update_beta=0.0, target_update_frequency=5,
    ),
}  # fmt: skip


class SolveTracker:
    """Evaluates every `every` steps, keeps evaluation time out of the clock, and says when solved. With a
    `save_dir`, its state survives the process: `on_evaluation` saves what else must (a model) beside it."""

    def __init__(self, env_id: str, seed: int, every: int, episodes: int, threshold: float, max_seconds: float,
                 save_dir: Path | None = None):  # fmt: skip
        self.env_id, self.seed, self.every, self.episodes = env_id, seed, every, episodes
        self.threshold, self.max_seconds = threshold, max_seconds
        self.next_eval = every
        self.eval_seconds = 0.0
        self.seconds_before = 0.0  # training seconds of earlier processes (a continued run)
        self.start = time.perf_counter()
        self.solved_at: tuple[float, int] | None = None
        self.last_mean = float("nan")
        self.best_mean = float("-inf")
        self.save_dir = save_dir
        self.on_evaluation: Callable[[Path], None] | None = None

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start - self.eval_seconds

    def check(self, step: int, policy: Callable[[np.ndarray], np.ndarray]) -> bool:
        """Called after training steps; True = stop (solved or out of time)."""
        if step < self.next_eval:
            return False
        seconds = self.train_seconds()
        eval_start = time.perf_counter()
        self.next_eval = (step // self.every + 1) * self.every
        self.last_mean = evaluate_episodes(policy, self.env_id, self.episodes, self.seed)["mean_return"]
        self.best_mean = max(self.best_mean, self.last_mean)
        if self.last_mean >= self.threshold:
            self.solved_at = (seconds, step)
        if self.save_dir is not None:
            self.save(step, seconds)
        self.eval_seconds += time.perf_counter() - eval_start
        return self.solved_at is not None or seconds > self.max_seconds

    def save(self, step: int, seconds: float) -> None:
        assert self.save_dir is not None
        self.save_dir.mkdir(parents=True, exist_ok=True)
        log = self.save_dir / "evaluations.csv"
        new_log = not log.exists()
        with log.open("a", newline="") as f:
            writer = csv.writer(f)
            if new_log:
                writer.writerow(["step", "train_seconds", "mean_return"])
            writer.writerow([step, f"{seconds:.1f}", self.last_mean])
        if self.on_evaluation is not None:
            self.on_evaluation(self.save_dir)
        state = dict(step=step, seconds=seconds, next_eval=self.next_eval, best_mean=self.best_mean,
                     last_mean=self.last_mean, solved_at=self.solved_at)  # fmt: skip
        (self.save_dir / "tracker.next.json").write_text(json.dumps(state))  # after the model, and whole
        os.replace(self.save_dir / "tracker.next.json", self.save_dir / "tracker.json")

    def restore(self) -> int:
        """Take up a saved run's clock and evaluations; the step it was saved at (0: nothing saved)."""
        path = None if self.save_dir is None else self.save_dir / "tracker.json"
        if path is None or not path.exists():
            return 0
        state = json.loads(path.read_text())
        self.seconds_before, self.next_eval = state["seconds"], state["next_eval"]
        self.best_mean, self.last_mean = state["best_mean"], state["last_mean"]
        self.solved_at = tuple(state["solved_at"]) if state["solved_at"] else None
        self.start, self.eval_seconds = time.perf_counter(), 0.0
        return int(state["step"])


def run_plainrl(algo: str, env_id: str, seed: int, tracker_args: dict[str, Any], overrides: list[str]) -> SolveTracker:
    tracker = SolveTracker(env_id, seed, **tracker_args)
    with tempfile.TemporaryDirectory() as tmp:
        plainrl.train(
            algo, env=env_id, seed=seed, run_dir=tmp, progress=False, set_items=overrides,
            callbacks=[lambda step, agent: tracker.check(step, agent_policy(agent))],
            checkpoint_every=10**9,  # like SB3 here: no checkpoints mid-run (the final one is still written)
            eval_episodes=0,  # no final evaluation: this protocol evaluates during training
        )  # fmt: skip
    return tracker


def _sb3_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        initial = float(value[4:])
        return lambda progress_remaining: progress_remaining * initial
    return value


def run_sb3(
    algo: str, env_id: str, seed: int, tracker_args: dict[str, Any], save_dir: Path | None = None
) -> SolveTracker:
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    hyper = dict(SB3_ZOO[(algo, env_id)])
    n_envs, n_timesteps = hyper.pop("n_envs"), hyper.pop("n_timesteps")
    if hyper.pop("noise_type", None) == "normal":  # the zoo's action noise for DDPG and TD3
        from stable_baselines3.common.noise import NormalActionNoise

        n_actions = gym.make(env_id).action_space.shape[0]
        hyper["action_noise"] = NormalActionNoise(np.zeros(n_actions), hyper.pop("noise_std") * np.ones(n_actions))
    tracker = SolveTracker(env_id, seed, **tracker_args, save_dir=save_dir)
    saved_step = tracker.restore()
    if tracker.solved_at is not None:
        return tracker  # solved before: nothing left to run

    class Track(BaseCallback):
        def _on_step(self) -> bool:
            def policy(obs: np.ndarray) -> np.ndarray:
                return self.model.predict(obs, deterministic=True)[0]

            return not tracker.check(self.num_timesteps, policy)

    tracker.start = time.perf_counter()
    policy_name = "MlpPolicy"
    if env_id.startswith("ALE/"):  # the zoo's Atari set-up: AtariWrapper, then 4 frames stacked, CnnPolicy
        import ale_py
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)  # the ALE/ ids

        # frameskip=1: AtariWrapper skips 4 frames itself (v5 ids would skip 4 more); sticky actions stay 0.25, as
        # plainrl's. Evaluation runs on plainrl's Atari env for both (the same preprocessing, channels first).
        env = VecFrameStack(
            make_atari_env(env_id, n_envs=n_envs, seed=seed + saved_step, env_kwargs={"frameskip": 1}), 4
        )
        policy_name = "CnnPolicy"
    else:
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed + saved_step)
    model_cls = getattr(sb3, algo.upper())
    device = "auto" if env_id.startswith("ALE/") else "cpu"  # a CNN: the GPU when there is one, for both sides
    hyper = {k: _sb3_value(v) for k, v in hyper.items()}
    if saved_step and save_dir is not None:  # the schedules are given again, not unpickled
        model = model_cls.load(save_dir / "model.zip", env=env, device=device, custom_objects=hyper)
        print(f"sb3 {seed}: continuing at step {model.num_timesteps} after {tracker.seconds_before:.0f} s", flush=True)
    else:
        model = model_cls(policy_name, env, seed=seed, device=device, **hyper)

    def save_model(folder: Path) -> None:  # whole or not at all: a stop mid-write leaves the last model as it was
        model.save(folder / "model.next.zip")
        os.replace(folder / "model.next.zip", folder / "model.zip")

    tracker.on_evaluation = save_model
    # reset_num_timesteps=False: the step count and the schedules' progress go on from the saved step
    model.learn(total_timesteps=n_timesteps - model.num_timesteps, callback=Track(), reset_num_timesteps=False)
    return tracker


class StopTraining(Exception):
    """Raised from inside ToyRL's training loop when the tracker says stop."""


class ToyRLTrack(gym.Wrapper):
    """ToyRL's training env: counts real env steps, asks the tracker after each, ends train() by StopTraining."""

    def __init__(self, env: gym.Env, tracker: SolveTracker, policy: Callable[[np.ndarray], np.ndarray]):
        super().__init__(env)
        self.tracker, self.policy = tracker, policy
        self.steps, self.episode_over = 0, False

    def reset(self, **kwargs: Any) -> Any:
        self.episode_over = False
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        real_step = not self.episode_over  # ToyRL's DQN steps an Autoreset env: the step after an end only resets
        result = self.env.step(action)
        self.episode_over = result[2] or result[3]
        if real_step:
            self.steps += 1
            if self.tracker.check(self.steps, self.policy):
                raise StopTraining
        return result


def run_toyrl(algo: str, env_id: str, seed: int, tracker_args: dict[str, Any]) -> SolveTracker:
    import toyrl

    tracker = SolveTracker(env_id, seed, **tracker_args)
    tracker.start = time.perf_counter()
    torch.manual_seed(seed)
    random.seed(seed)
    if algo == "a2c":
        trainer = toyrl.A2CTrainer(toyrl.A2CConfig(env_name=env_id, **TOYRL_EXAMPLES[(algo, env_id)]))
        trainer.evaluate = lambda num_episodes: float("nan")  # its own evaluation is off: this protocol evaluates
    else:
        trainer = toyrl.DqnTrainer(toyrl.DqnConfig(env_name=env_id, **TOYRL_EXAMPLES[(algo, env_id)]))

    def policy(obs: np.ndarray) -> np.ndarray:  # greedy, and draws nothing from torch's RNG (its act() samples)
        with torch.inference_mode():
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32)
            scores = trainer.agent._net(obs_tensor)[0] if algo == "a2c" else trainer.agent._policy_net(obs_tensor)
            return scores.argmax(-1).numpy()  # A2C: action logits; DQN: Q-values

    trainer.env = ToyRLTrack(trainer.env, tracker, policy)
    trainer.env.reset(seed=seed)  # seeds the env's RNG; train()'s own unseeded resets carry on from it
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.suppress(StopTraining):
        trainer.train()  # prints a line per episode: not shown
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
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both libraries")
    parser.add_argument("--save-dir", type=Path, help="sb3: save at every evaluation here, continue from it if there")
    parser.add_argument("--toyrl", action="store_true", help="also run ToyRL (a2c, dqn on CartPole-v1), last")
    parser.add_argument("--toyrl-seconds", type=float, default=300.0, help="give up on a ToyRL run after this long")
    args = parser.parse_args()
    if args.toyrl and (args.algo, args.env) not in TOYRL_EXAMPLES:
        parser.error(f"--toyrl: only for {sorted(TOYRL_EXAMPLES)}")
    torch.set_num_threads(args.threads)  # both libraries on the same footing: one torch thread unless told
    args.overrides = [f"torch_threads={args.threads}", *args.overrides]  # plainrl sets its own from its config
    threshold = THRESHOLDS[args.env]
    tracker_args = dict(every=args.eval_every, episodes=args.eval_episodes, threshold=threshold,
                        max_seconds=args.max_seconds)  # fmt: skip
    toyrl_args = dict(tracker_args, max_seconds=args.toyrl_seconds)
    libs = args.libs + (["toyrl"] if args.toyrl else [])
    print(f"{args.algo} on {args.env}: solved = mean of {args.eval_episodes} deterministic episodes >= {threshold}, "
          f"evaluated every {args.eval_every} steps; seconds exclude evaluation")  # fmt: skip
    print(f"{'library':<8} {'seed':>4} {'seconds':>8} {'steps':>8}  last eval")
    medians: dict[str, float] = {}
    for lib in libs:  # untimed warm-up: torch's one-time initialisation is nobody's training time
        # stops at its first evaluation, within 2048 steps (an Atari run evaluates every 100k)
        warm_up = dict(tracker_args, every=min(args.eval_every, 2048), episodes=1, max_seconds=0.0)
        if lib == "plainrl":
            run_plainrl(args.algo, args.env, 0, warm_up, args.overrides)
        elif lib == "toyrl":
            run_toyrl(args.algo, args.env, 0, warm_up)
        else:
            run_sb3(args.algo, args.env, 0, warm_up)
    for lib in libs:
        seconds_list = []
        for seed in args.seeds:
            if lib == "plainrl":
                tracker = run_plainrl(args.algo, args.env, seed, tracker_args, args.overrides)
            elif lib == "toyrl":
                tracker = run_toyrl(args.algo, args.env, seed, toyrl_args)
            else:
                save_dir = None if args.save_dir is None else args.save_dir / f"{args.algo}_{seed}"
                tracker = run_sb3(args.algo, args.env, seed, tracker_args, save_dir)
            seconds, steps = tracker.solved_at if tracker.solved_at else (float("inf"), -1)
            seconds_list.append(seconds)
            shown = f"{seconds:8.2f} {steps:8d}" if tracker.solved_at else f"{'unsolved':>8} {'-':>8}"
            note = ""
            if lib == "toyrl" and not tracker.solved_at:
                note = f"  (not solved in {tracker.train_seconds():.0f} s, best eval {tracker.best_mean:.1f})"
            print(f"{lib:<8} {seed:>4} {shown}  {tracker.last_mean:.1f}{note}", flush=True)
        medians[lib] = statistics.median(seconds_list)
        print(f"{lib:<8} median seconds-to-solve = {medians[lib]:.2f}", flush=True)
    if "plainrl" in medians and "sb3" in medians:
        print(f"ratio plainrl/sb3 seconds-to-solve = {medians['plainrl'] / medians['sb3']:.2f}")


if __name__ == "__main__":
    main()
