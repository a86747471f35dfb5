"""Atari games (the Arcade Learning Environment) preprocessed as in the DQN paper and Stable-Baselines3's AtariWrapper.

An agent sees a stack of the last 4 observations, each an 84x84 grayscale picture that is the pixel-wise max of the
last two of the 4 emulator frames one action is repeated for (sprites drawn on alternate frames flicker otherwise):
a uint8 Box of shape (4, 84, 84), channels first. Episodes start after 1-30 random no-ops, and with FIRE pressed in
games that wait for it. Rewards are clipped to their sign, so one learning rate suits every game; the game's own
reward goes along in `info["raw_reward"]`, so episode returns can report the score (kit.envs.env_rewards).

Kept from the id's own settings: sticky actions (v5 ids repeat the previous action with probability 0.25, the
protocol Machado et al. 2018 recommend; NoFrameskip-v4 ids have none) and the 108,000-frame limit (30 minutes
of play, 27,000 agent steps) after which the ALE truncates an episode. A lost life does not end the episode
(Machado et al. advise against it). The env is made with frameskip=1: AtariPreprocessing does the skipping.

ale-py (the `atari` extra) ships the game ROMs; AtariPreprocessing needs OpenCV to resize.
"""

from __future__ import annotations

import importlib
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from plainrl.kit.errors import PlainRLError, did_you_mean

ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"


def _register_atari_envs() -> bool:
    """Register the ALE ids with Gymnasium; False when ale_py is not installed."""
    try:
        ale_py = importlib.import_module("ale_py")
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def is_atari(env_id: str) -> bool:
    """An ALE game: any id in the ALE namespace ("ALE/Pong-v5"), installed or not, or an older one such as
    "BreakoutNoFrameskip-v4" that ale_py registers."""
    if env_id.startswith("ALE/"):
        return True
    return _register_atari_envs() and env_id in gym.registry and gym.registry[env_id].entry_point == ATARI_ENTRY_POINT


class FireReset(gym.Wrapper):
    """Press FIRE once after every reset, in games whose actions include it: Breakout, for one, shows no ball
    until FIRE is pressed, and an agent that has not learnt to press it would otherwise see a frozen game."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        self.fire_action = meanings.index("FIRE") if "FIRE" in meanings else None  # 1 in the ALE's games

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.fire_action is None:
            return obs, info
        obs, _, terminated, truncated, info = self.env.step(self.fire_action)
        if terminated or truncated:  # the game ended on that press: start over, without pressing again
            obs, info = self.env.reset(**kwargs)
        return obs, info


class ClipRewardToSign(gym.Wrapper):
    """Reward -1, 0 or +1, the sign of the game's reward, which goes along in `info["raw_reward"]`."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = raw_reward = float(reward)
        return obs, float(np.sign(raw_reward)), terminated, truncated, info


def wrap_atari(env: gym.Env) -> gym.Env:
    """The preprocessing of `make_atari` around an ALE env made with frameskip=1 (or anything with its interface)."""
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False
    )
    env = FireReset(env)  # after the frame skipping, so FIRE is held for one agent step (4 frames)
    env = ClipRewardToSign(env)
    return gym.wrappers.FrameStackObservation(env, 4)  # (4, 84, 84): the newest observation last


def make_atari(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One Atari game, preprocessed (see the module docstring): observations uint8 (4, 84, 84), rewards clipped."""
    if not _register_atari_envs():
        raise PlainRLError(f"env {env_id!r} needs the Atari extra: pip install 'plainrl[atari]'")
    if env_id not in gym.registry:
        atari_ids = [name for name, spec in gym.registry.items() if spec.entry_point == ATARI_ENTRY_POINT]
        raise PlainRLError(f"unknown Atari env id {env_id!r}{did_you_mean(env_id, atari_ids)}")
    # grayscale: AtariPreprocessing reads the screen from the emulator itself, so the env's own observation is
    # thrown away, and the grayscale one is the cheaper to make
    env = gym.make(env_id, frameskip=1, obs_type="grayscale", render_mode=render_mode)
    return wrap_atari(env)
