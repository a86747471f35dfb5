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


# EnvPool's own Atari preprocessing, set to make_atari's: the same frame skip, max-pool, no-ops, FIRE at reset,
# 84 x 84 grayscale (OpenCV's INTER_AREA, as AtariPreprocessing) and 4-frame stack; rewards clipped here instead,
# so that the game's score goes along in infos["raw_reward"].
ENVPOOL_ATARI = dict(
    stack_num=4, frame_skip=4, noop_max=30, img_height=84, img_width=84, gray_scale=True, use_inter_area_resize=True,
    use_fire_reset=True, episodic_life=False, reward_clip=False, max_episode_steps=27_000,
)  # fmt: skip


def envpool_task(env_id: str) -> tuple[str, float]:
    """EnvPool's name for an Atari id and the sticky-action probability the id implies: "ALE/Pong-v5" ->
    ("Pong-v5", 0.25); "PongNoFrameskip-v4" -> ("Pong-v5", 0.0)."""
    if env_id.startswith("ALE/") and env_id.endswith("-v5"):
        return env_id[len("ALE/") :], 0.25
    if env_id.endswith("NoFrameskip-v4"):
        return env_id[: -len("NoFrameskip-v4")] + "-v5", 0.0
    raise PlainRLError(
        f"envpool = true: {env_id!r} is not an Atari id EnvPool has (ALE/<Game>-v5, <Game>NoFrameskip-v4)"
    )


class EnvPoolAtari(gym.vector.VectorEnv):
    """`num_envs` Atari games stepped by EnvPool's C++ thread pool (the `envpool` extra), preprocessed as
    make_atari's and behaving as kit.envs.make_vec_env's vector envs: SAME_STEP autoreset (an env whose episode
    ended is reset in the same step, its last observation in infos["final_obs"]), rewards clipped to their sign
    with the game's in infos["raw_reward"]. Env i is seeded seed + i, as make_vec_env's copies are."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, seed: int) -> None:
        self.task, self.sticky = envpool_task(env_id)
        self.num_envs = num_envs
        self.pool = self._make_pool(seed)
        self.single_observation_space = gym.spaces.Box(0, 255, self.pool.observation_space.shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(self.pool.action_space.n)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def _make_pool(self, seed: int) -> Any:
        try:
            envpool = importlib.import_module("envpool")
        except ImportError:
            raise PlainRLError("envpool = true needs EnvPool: pip install 'plainrl[envpool]'") from None
        self.seed = seed
        return envpool.make(self.task, env_type="gymnasium", num_envs=self.num_envs, seed=seed,
                            repeat_action_probability=self.sticky, **ENVPOOL_ATARI)  # fmt: skip

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and seed != self.seed:  # EnvPool seeds its envs once, when made
            self.pool.close()
            self.pool = self._make_pool(seed)
        obs, _ = self.pool.reset()
        return obs, {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminated, truncated, _ = self.pool.step(np.asarray(actions))
        raw_rewards = np.asarray(rewards, dtype=np.float64)
        infos: dict[str, Any] = {"raw_reward": raw_rewards, "_raw_reward": np.ones(self.num_envs, dtype=bool)}
        done = np.logical_or(terminated, truncated)
        if done.any():  # reset the finished games now: EnvPool alone would on the next step, ignoring its action
            infos["final_obs"], infos["_final_obs"] = obs.copy(), done
            obs = obs.copy()
            obs[done], _ = self.pool.reset(np.flatnonzero(done))
        return obs, np.sign(raw_rewards), terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        self.pool.close()
