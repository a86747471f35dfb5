"""Observation spaces as the classic algorithms read them; their encoders are in kit/nets.py:

    vectors (Box, and Discrete / MultiDiscrete / MultiBinary one-hot)   flattened, as they are
    images  (uint8 Box, H x W x C or C x H x W)                         the Nature CNN (Mnih et al. 2015)
    Dict    (one entry per key)                                          one encoder per key, features concatenated

A Dict observation reaches the algorithms flattened into one float32 vector (`DictObservations`, so buffers,
normalisers and checkpoints see one array as for any env); nets.DictEncoder cuts it back into its keys. As in
Stable-Baselines3, an image is told by its dtype (uint8) and rank (3); channels come first when the first dimension
is the smallest (frame stacks: 4 x 84 x 84), else last (renders: 84 x 84 x 3).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def has_images(space: gym.Space) -> bool:
    """An image space, or a Dict with an image among its entries: observations that need a CNN."""
    if isinstance(space, DictObservationSpace):
        space = space.dict_space
    if isinstance(space, gym.spaces.Dict):
        return any(has_images(entry) for entry in space.spaces.values())
    return is_image_space(space)


def observation_kind(space: gym.Space) -> str:
    """What an algorithm must be able to read, as registry modules name it in OBSERVATION_SPACES: "Image" for
    images and Dicts holding one, "Box" for other Boxes (Dicts of vectors arrive as one, flattened), else the
    space's class name (Discrete for the tabular methods)."""
    if has_images(space):
        return "Image"
    return "Box" if isinstance(space, gym.spaces.Box) else type(space).__name__


class DictObservationSpace(gym.spaces.Box):
    """The flat float32 Box a Dict observation travels as, remembering the Dict it came from (for the encoder)."""

    def __init__(self, dict_space: gym.spaces.Dict) -> None:
        size = gym.spaces.flatdim(dict_space)
        super().__init__(-np.inf, np.inf, (size,), np.float32)
        self.dict_space = dict_space


class DictObservations(gym.ObservationWrapper):
    """A Dict observation as one float32 vector: its entries flattened in the Dict's key order (gymnasium's
    `flatten`: Discrete entries one-hot, images as their raw 0-255 values, which the CNN scales)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        assert isinstance(env.observation_space, gym.spaces.Dict)
        self.raw_space = env.observation_space
        self.observation_space = DictObservationSpace(env.observation_space)

    def observation(self, observation: Any) -> np.ndarray:
        return self.flatten(self.raw_space, observation)

    @staticmethod
    def flatten(space: gym.spaces.Dict, observation: dict[str, Any]) -> np.ndarray:
        """One Dict observation -> (flatdim,); a batch (a dict of arrays with a leading dimension B) -> (B, flatdim)."""
        first = next(iter(space.spaces))
        if np.ndim(observation[first]) > len(space.spaces[first].shape or ()):
            rows = len(observation[first])
            return np.stack([DictObservations.flatten(space, {k: v[i] for k, v in observation.items()})
                             for i in range(rows)])  # fmt: skip
        return np.asarray(gym.spaces.flatten(space, observation), dtype=np.float32)


def auto_device(observation_space: gym.Space, default: str) -> str:
    """What device = auto means for an env run: a GPU for observations a CNN reads (when there is one), `default`
    (the CPU: kit.config.EnvConfig.AUTO_DEVICE) for vectors, whose small MLPs a GPU only slows down."""
    return "cuda" if has_images(observation_space) else default
