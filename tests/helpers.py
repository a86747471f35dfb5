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
    """An action space the value-based methods (DQN) do not handle."""

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


class MaskedChoiceEnv(gym.Env):
    """Contextual bandit with a forbidden action. Each step shows one of 4 states (one-hot); action (s + 1) % 4 pays
    +1, action s is forbidden: taking it pays -10 and ends the episode; the rest pay 0. 8 steps an episode, so the
    best return is 8. The allowed actions come as info["action_mask"]; every forbidden action taken by any instance
    is counted in `MaskedChoiceEnv.forbidden_taken` (training and evaluation envs alike)."""

    forbidden_taken = 0
    observation_space = gym.spaces.Box(0, 1, shape=(4,), dtype=np.float32)
    action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.state = int(self.np_random.integers(4))
        return self.observe(), self.info()

    def observe(self) -> np.ndarray:
        return np.eye(4, dtype=np.float32)[self.state]

    def mask(self) -> np.ndarray:
        return np.arange(4) != self.state

    def info(self) -> dict[str, Any]:
        return {"action_mask": self.mask()}

    def step(self, action: Any):
        self.t += 1
        if int(action) == self.state:
            MaskedChoiceEnv.forbidden_taken += 1  # (not type(self): subclasses count here too)
            return self.observe(), -10.0, True, False, self.info()
        reward = 1.0 if int(action) == (self.state + 1) % 4 else 0.0
        self.state = int(self.np_random.integers(4))
        return self.observe(), reward, False, self.t >= 8, self.info()


class MaskedChoiceMethodEnv(MaskedChoiceEnv):
    """MaskedChoiceEnv with the mask from an action_masks() method (sb3-contrib's convention), not in info."""

    def info(self) -> dict[str, Any]:
        return {}

    def action_masks(self) -> np.ndarray:
        return self.mask()


class DictCueEnv(gym.Env):
    """Dict observations: {"cue": Discrete(2), "noise": Box(2,)}; reward 1 for the action equal to the cue, else 0;
    10 steps an episode (best return 10). Only the cue entry says what to do."""

    observation_space = gym.spaces.Dict(
        {"cue": gym.spaces.Discrete(2), "noise": gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32)}
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), {}

    def observe(self) -> dict[str, Any]:
        self.cue = int(self.np_random.integers(2))
        return {"cue": self.cue, "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def step(self, action: Any):
        self.t += 1
        reward = float(int(action) == self.cue)
        return self.observe(), reward, False, self.t >= 10, {}


class ImageCueEnv(gym.Env):
    """Image observations (uint8, 36 x 36 x 1, channels last: the Nature CNN's smallest input): the left or the right
    half is lit; reward 1 for the action naming the lit half; 10 steps an episode (best return 10)."""

    observation_space = gym.spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), {}

    def observe(self) -> np.ndarray:
        self.cue = int(self.np_random.integers(2))
        image = np.zeros((36, 36, 1), dtype=np.uint8)
        image[:, 18 * self.cue : 18 * (self.cue + 1)] = 255
        return image

    def step(self, action: Any):
        self.t += 1
        reward = float(int(action) == self.cue)
        return self.observe(), reward, False, self.t >= 10, {}


class MultiActionCueEnv(gym.Env):
    """MultiDiscrete([3, 2]) or MultiBinary(3) actions: the observation shows a target action (one-hot per entry),
    the reward is the fraction of entries matched; 10 steps an episode (best return 10)."""

    def __init__(self, binary: bool = False) -> None:
        self.action_space = gym.spaces.MultiBinary(3) if binary else gym.spaces.MultiDiscrete([3, 2])
        self.nvec = [2, 2, 2] if binary else [3, 2]
        self.observation_space = gym.spaces.Box(0, 1, shape=(sum(self.nvec),), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), {}

    def observe(self) -> np.ndarray:
        self.target = np.array([self.np_random.integers(n) for n in self.nvec])
        return np.concatenate([np.eye(n, dtype=np.float32)[v] for n, v in zip(self.nvec, self.target, strict=True)])

    def step(self, action: Any):
        self.t += 1
        reward = float(np.mean(np.asarray(action) == self.target))
        return self.observe(), reward, False, self.t >= 10, {}


def make_multi_binary_cue_env() -> gym.Env:
    return MultiActionCueEnv(binary=True)


class ImageCueBoxEnv(ImageCueEnv):
    """ImageCueEnv with a continuous action: a > 0 names the right half."""

    action_space = gym.spaces.Box(-1, 1, shape=(1,), dtype=np.float32)

    def step(self, action: Any):
        return super().step(int(np.asarray(action).reshape(-1)[0] > 0))
