"""What the NaN/inf check on every env step costs (plainrl.kit.envs.FiniteCheck): CartPole-v1 through make_env with
random actions, with the check and without it, interleaved; prints microseconds per step and the ratio.

    python benchmarks/finite_check.py --steps 100000 --repeats 7
"""

import argparse
import time

import numpy as np

import plainrl.kit.envs as envs


def microseconds_per_step(steps: int) -> float:
    env = envs.make_env("CartPole-v1")
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 2, steps).tolist()
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - started) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    checked, unchecked, real = [], [], envs.FiniteCheck
    for _ in range(args.repeats):
        envs.FiniteCheck = real  # type: ignore[misc]
        checked.append(microseconds_per_step(args.steps))
        envs.FiniteCheck = lambda env, env_id: env  # type: ignore[assignment, misc]
        unchecked.append(microseconds_per_step(args.steps))
    print(f"with the check: min {min(checked):.2f} us/step, median {np.median(checked):.2f}")
    print(f"without it:     min {min(unchecked):.2f} us/step, median {np.median(unchecked):.2f}")
    print(f"ratio checked/unchecked (min) = {min(checked) / min(unchecked):.3f}")


if __name__ == "__main__":
    main()
