"""plainrl's defaults vs Stable-Baselines3's on small envs without a preset, at SB3's own test budgets.

Each row is one (algorithm, env, budget): plainrl trained with its Config defaults (only total_steps, seed and, where
SB3's test sets one, the same gamma), and SB3 trained as its test trains it, on the same env, budget and seeds; both
evaluated deterministically over 20 episodes. The rows:

- SB3's tests/test_identity.py: test_discrete (IdentityEnv(4), IdentityEnvMultiDiscrete(4), IdentityEnvMultiBinary(4);
  gamma 0.4; A2C 3500 steps, PPO 3000, DQN 4000 with learning_starts=0) and test_continuous (IdentityEnvBox(eps=0.5);
  gamma 0.95, net_arch [64, 64]; A2C 3500, PPO 3000, SAC 700, TD3 500 with NormalActionNoise(0.1), DDPG 500). The
  test's threshold: a mean return of 90 (of 100) over 20 episodes.
- Pendulum-v1 (5k steps: TD3, DDPG, SAC) and CartPole-v1 (30k steps: PPO, A2C, DQN), made through the factories
  below so that plainrl's presets for those ids do not apply; SB3 with its plain defaults.

plainrl evaluates on its own eval env (seed + 10000); SB3 on a fresh env seeded seed + 10000 (spaces too).

    PYTHONPATH=. .venv/bin/python benchmarks/small_env_defaults.py --out /tmp/base.json
    PYTHONPATH=. .venv/bin/python benchmarks/small_env_defaults.py --only td3 ddpg --no-sb3 \
        --set td3:learning_starts=100 ddpg:learning_starts=100
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import plainrl

DIM = 4
THRESHOLD = 90.0  # SB3's reward_threshold in test_identity.py


# ----- envs (module:factory ids: plainrl applies no preset to them) ---------------------------------------------
def identity_discrete() -> gym.Env:
    from stable_baselines3.common.envs import IdentityEnv

    return IdentityEnv(DIM)


def identity_multidiscrete() -> gym.Env:
    from stable_baselines3.common.envs import IdentityEnvMultiDiscrete

    return IdentityEnvMultiDiscrete(DIM)


def identity_multibinary() -> gym.Env:
    from stable_baselines3.common.envs import IdentityEnvMultiBinary

    return IdentityEnvMultiBinary(DIM)


def identity_box() -> gym.Env:
    from stable_baselines3.common.envs import IdentityEnvBox

    return IdentityEnvBox(eps=0.5)


def cartpole() -> gym.Env:
    return gym.make("CartPole-v1")


def pendulum() -> gym.Env:
    return gym.make("Pendulum-v1")


FACTORIES = {f.__name__: f for f in (identity_discrete, identity_multidiscrete, identity_multibinary, identity_box,
                                     cartpole, pendulum)}  # fmt: skip

# (algo, env, budget, gamma set on both sides or None, SB3's extra kwargs as its test passes them)
DISCRETE_ENVS = ("identity_discrete", "identity_multidiscrete", "identity_multibinary")
CASES: list[tuple[str, str, int, float | None, dict[str, Any]]] = [
    *[(algo, env, steps, 0.4, {}) for env in DISCRETE_ENVS for algo, steps in (("ppo", 3000), ("a2c", 3500))],
    ("dqn", "identity_discrete", 4000, 0.4, dict(learning_starts=0)),
    *[(algo, "identity_box", steps, 0.95, dict(policy_kwargs=dict(net_arch=[64, 64])))
      for algo, steps in (("ppo", 3000), ("a2c", 3500), ("sac", 700), ("td3", 500), ("ddpg", 500))],
    *[(algo, "pendulum", 5_000, None, {}) for algo in ("td3", "ddpg", "sac")],
    *[(algo, "cartpole", 30_000, None, {}) for algo in ("ppo", "a2c", "dqn")],
]  # fmt: skip


def case_key(algo: str, env: str, steps: int) -> str:
    return f"{algo}|{env}|{steps}"


# ----- the two libraries ---------------------------------------------------------------------------------------
def run_plainrl(algo: str, env: str, steps: int, gamma: float | None, seed: int, extra: list[str]) -> dict[str, Any]:
    items = ([f"gamma={gamma}"] if gamma is not None else []) + extra
    start = time.perf_counter()
    quiet = contextlib.redirect_stdout(io.StringIO())  # plainrl's "run folder: ..." and "eval: ..." lines
    with tempfile.TemporaryDirectory(prefix="small_env_defaults_") as folder, quiet:
        run = plainrl.train(algo, env=f"benchmarks.small_env_defaults:{env}", total_steps=steps, seed=seed,
                            run_dir=f"{folder}/run", progress=False, set_items=items)  # fmt: skip
        result = run.eval
        trained_steps = int(run.metrics[-1]["step"] or 0) if run.metrics else None
    assert result is not None
    return dict(mean=float(result["mean_return"]), seconds=time.perf_counter() - start, steps=trained_steps)


def run_sb3(
    algo: str, env: str, steps: int, gamma: float | None, seed: int, kwargs: dict[str, Any], plain: bool = False
) -> dict[str, Any]:
    import stable_baselines3 as sb3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise

    kwargs = dict(kwargs)
    if gamma is not None:
        kwargs["gamma"] = gamma
    if algo == "td3" and env == "identity_box" and not plain:  # test_continuous: TD3 (only) gets Gaussian noise 0.1
        kwargs["action_noise"] = NormalActionNoise(mean=np.zeros(1), sigma=0.1 * np.ones(1))
    start = time.perf_counter()
    model_class = getattr(sb3, algo.upper())
    model = model_class("MlpPolicy", FACTORIES[env](), seed=seed, device="cpu", **kwargs).learn(steps)
    eval_env = FACTORIES[env]()
    eval_env.reset(seed=seed + 10_000)
    eval_env.action_space.seed(seed + 10_000)  # the identity envs draw their states from it
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True, warn=False)
    assert isinstance(mean, float)
    return dict(mean=mean, seconds=time.perf_counter() - start, steps=int(model.num_timesteps))


# ----- the table -----------------------------------------------------------------------------------------------
def fmt(values: list[float]) -> str:
    return " ".join(f"{v:8.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=[], help="algo, env or algo@env names to keep")
    parser.add_argument("--set", nargs="*", default=[], help="algo:key=value for plainrl (candidate defaults)")
    parser.add_argument("--no-sb3", action="store_true", help="plainrl only (SB3 numbers from --sb3-from, if any)")
    parser.add_argument("--no-plainrl", action="store_true", help="SB3 only")
    parser.add_argument("--sb3-from", help="a JSON written by --out whose SB3 numbers to reuse")
    parser.add_argument("--sb3-plain", action="store_true", help="SB3 with only gamma set, not its test's kwargs")
    parser.add_argument("--out", help="write every row's numbers to this JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # SB3 as plainrl (torch_threads = 1): one core per run

    extra: dict[str, list[str]] = {}
    for item in args.set:
        algo, _, setting = item.partition(":")
        extra.setdefault(algo, []).append(setting)
    cached = json.loads(Path(args.sb3_from).read_text()) if args.sb3_from else {}

    def kept(algo: str, env: str) -> bool:
        return not args.only or any(o in (algo, env, f"{algo}@{env}") for o in args.only)

    rows: dict[str, Any] = {}
    started = time.perf_counter()
    header = f"{'algo':5} {'env':23} {'budget':>6} | {'plainrl mean return per seed':>28} {'s':>6} | " \
             f"{'SB3 mean return per seed':>26} {'s':>6}"  # fmt: skip
    print(header, flush=True)
    for algo, env, steps, gamma, sb3_kwargs in CASES:
        if not kept(algo, env):
            continue
        key = case_key(algo, env, steps)
        settings = extra.get(algo, [])
        ours = [] if args.no_plainrl else [run_plainrl(algo, env, steps, gamma, s, settings) for s in args.seeds]
        if args.no_sb3:
            theirs = cached.get(key, {}).get("sb3", [])
        else:
            plain = args.sb3_plain
            theirs = [run_sb3(algo, env, steps, gamma, s, {} if plain else sb3_kwargs, plain) for s in args.seeds]
        rows[key] = dict(plainrl=ours, sb3=theirs, set=extra.get(algo, []), gamma=gamma)
        line = f"{algo:5} {env:23} {steps:6d} | {fmt([r['mean'] for r in ours]):>28} " \
               f"{sum(r['seconds'] for r in ours):6.1f} | "  # fmt: skip
        if theirs:
            line += f"{fmt([r['mean'] for r in theirs]):>26} {sum(r['seconds'] for r in theirs):6.1f}"
        print(line, flush=True)
    print(f"total wall: {time.perf_counter() - started:.1f} s; plainrl --set: {args.set or 'none'}; "
          f"seconds are per row, all seeds (train + 20 eval episodes)")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
