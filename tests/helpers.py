"""Tiny environments for tests, importable as `tests.helpers:ClassName` env ids."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CountingEnv(gym.Env):
    """obs = [steps taken this episode]; the episode ends after `length` steps, by termination or truncation.
    reward = 1 per step. Makes every transition checkable: next obs = obs + 1 unless it is a reset."""

    def __init__(self, length: int = 3, terminate: bool = True) -> None:
        self.length, self.terminate = length, terminate
        self.observation_space = gym.spaces.Box(0, 100, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action: Any):
        self.t += 1
        ended = self.t >= self.length
        obs = np.array([float(self.t)], dtype=np.float32)
        return obs, 1.0, ended and self.terminate, ended and not self.terminate, {}


class Float64Env(CountingEnv):
    """CountingEnv with float64 observations and a continuous action, as MuJoCo envs have."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 100, shape=(1,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1, 1, shape=(1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed)
        return obs.astype(np.float64), info

    def step(self, action: Any):
        obs, *rest = super().step(action)
        return obs.astype(np.float64), *rest


class MultiBinaryEnv(gym.Env):
    """An action space no classic algorithm here handles."""

    observation_space = gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: Any):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


def make_counting_env(length: int = 4) -> gym.Env:
    """A factory, for the `module:factory` form of env ids."""
    return CountingEnv(length=length, terminate=False)


def constant_critic(values: list[float]) -> Any:
    """A kit QEnsemble over 3-d observations and 1-d actions whose critic i outputs values[i] everywhere."""
    import torch

    from plainrl.kit.nets import QEnsemble

    critic = QEnsemble(3, 1, (4,), n=len(values))
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
        critic.biases[-1].copy_(torch.tensor(values).view(-1, 1, 1))
    return critic


def interrupt_at(step: int) -> Any:
    """A plainrl.train callback that presses Ctrl-C (SIGINT to this process) once training reaches `step`: the run
    stops at its next iteration boundary, checkpoints and raises RunInterrupted, as a user's Ctrl-C does."""
    import os
    import signal

    pressed: list[int] = []

    def callback(current: int, trained: Any) -> bool:
        if current >= step and not pressed:
            pressed.append(current)
            os.kill(os.getpid(), signal.SIGINT)
        return False

    return callback


class SelfSamplingEnv(gym.Env):
    """reward = a draw from its own action space (a random opponent's move): seeded only if the env's spaces are."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 1, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(10)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any):
        return self.observation_space.sample(), float(self.action_space.sample()), False, False, {}


class DiscreteChainEnv(gym.Env):
    """States 0..4 (a Discrete observation); action 1 steps right, 0 left; reaching 4 ends the episode with +1, each
    step costs 0.01, and the episode is cut after 20 steps. The best return is 1 - 0.04 = 0.96."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Discrete(5)
        self.action_space = gym.spaces.Discrete(2)
        self.state, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state, self.t = 0, 0
        return self.state, {}

    def step(self, action: Any):
        self.t += 1
        self.state = min(4, self.state + 1) if int(action) == 1 else max(0, self.state - 1)
        reached = self.state == 4
        return self.state, (1.0 if reached else 0.0) - 0.01, reached, self.t >= 20 and not reached, {}
