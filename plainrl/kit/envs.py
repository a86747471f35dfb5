"""Environments: Gymnasium ids or a user's `module:ClassName` / `module:factory`, vectorised and seeded.

Vector envs use Gymnasium's SAME_STEP autoreset: when an episode ends, `step` returns the *reset*
observation and puts the true last observation in `infos["final_obs"]`. So every step an algorithm sees is a
real transition (Gymnasium's default NEXT_STEP mode inserts a fake one after each episode end), and
`true_next_obs` recovers the observation to bootstrap from when an episode was truncated.
float64 Box observations (MuJoCo's) are cast to float32, the dtype of every network and buffer here.
Every env checks that its rewards and float observations are finite (`FiniteCheck`): a NaN or inf from the env
is reported at the step it happens, not later as a NaN loss.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from plainrl.kit.errors import PlainRLError, did_you_mean
from plainrl.kit.spaces import DictObservations


def _env_maker(env_id: str, **kwargs: Any) -> Callable[[], gym.Env]:
    """A zero-argument callable that builds one env, after checking the id exists."""
    if ":" in env_id and env_id not in gym.registry:
        module_name, _, attr = env_id.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise PlainRLError(f"env {env_id!r}: cannot import module {module_name!r} ({err})") from None
        if not hasattr(module, attr):
            raise PlainRLError(f"env {env_id!r}: module {module_name!r} has no attribute {attr!r}")
        factory = getattr(module, attr)
        return lambda: _wrap_user_env(env_id, factory(**kwargs))
    if env_id.startswith("ALE/") or (env_id not in gym.registry and "NoFrameskip" in env_id):
        from plainrl.kit.atari import make_atari  # the DQN paper's preprocessing and a 4-frame stack

        return lambda: make_atari(env_id, **kwargs)
    if env_id not in gym.registry:
        if "/" in env_id:  # a namespaced id such as plainrl/GridWorld-v0: importing the package registers it
            with contextlib.suppress(ImportError):
                importlib.import_module(env_id.split("/")[0])
        if env_id not in gym.registry:
            raise PlainRLError(f"unknown env id {env_id!r}{did_you_mean(env_id, gym.registry.keys())}")
    return lambda: gym.make(env_id, **kwargs)


def _wrap_user_env(env_id: str, env: Any) -> gym.Env:
    if not isinstance(env, gym.Env):
        raise PlainRLError(f"env {env_id!r} did not return a gymnasium.Env (got {type(env).__name__})")
    if env.spec is None or env.spec.max_episode_steps is None:
        return env
    return gym.wrappers.TimeLimit(env, env.spec.max_episode_steps)


class ClipToBounds(gym.ActionWrapper):
    """Clip continuous actions to the action bounds. Unlike gymnasium's ClipAction, the wrapped env still
    advertises its real bounds, which actors that squash into them (DDPG, TD3, SAC) need to know."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        assert isinstance(env.action_space, gym.spaces.Box)
        self.low, self.high = env.action_space.low, env.action_space.high

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.low, self.high)


class Float32Observations(gym.ObservationWrapper):
    """float64 Box observations (MuJoCo's) as float32, the dtype of every network and buffer here."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, space.shape, np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)


ENCODED_SPACES = ("Discrete", "MultiDiscrete", "MultiBinary")  # observation spaces given to MLPs as vectors


def encode_observation(space: gym.Space, observation: Any) -> np.ndarray:
    """Discrete -> one-hot; MultiDiscrete -> one one-hot per entry, concatenated; MultiBinary -> its 0/1 floats:
    the vector an MLP reads, as Stable-Baselines3 preprocesses these spaces. A batch (B, ...) -> (B, size)."""
    if isinstance(space, gym.spaces.Discrete):
        index = np.asarray(observation, dtype=np.int64) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[index]
    if isinstance(space, gym.spaces.MultiDiscrete):
        values = np.asarray(observation, dtype=np.int64) - space.start
        nvec = space.nvec.reshape(-1)
        values = values.reshape(*values.shape[: values.ndim - space.nvec.ndim], -1)
        return np.concatenate([np.eye(int(n), dtype=np.float32)[values[..., i]] for i, n in enumerate(nvec)], -1)
    if isinstance(space, gym.spaces.MultiBinary):
        values = np.asarray(observation, dtype=np.float32)
        return values.reshape(*values.shape[: values.ndim - len(space.shape)], -1)
    if isinstance(space, gym.spaces.Dict):
        return DictObservations.flatten(space, observation)
    raise TypeError(f"{type(space).__name__} is not one of {', '.join(ENCODED_SPACES)}, Dict")


def encoded_size(space: gym.Space) -> int:
    return int(encode_observation(space, space.sample()).shape[-1])


class VectorObservations(gym.ObservationWrapper):
    """A Discrete, MultiDiscrete or MultiBinary observation as a float32 vector in [0, 1] (encode_observation)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.raw_space = env.observation_space
        self.observation_space = gym.spaces.Box(0.0, 1.0, (encoded_size(self.raw_space),), np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        return encode_observation(self.raw_space, observation)


def raw_observation_space(env: gym.Env) -> gym.Space | None:
    """The env's own observation space where plainrl's wrappers encode it as a vector (VectorObservations,
    DictObservations), else None: what a user's observations look like before the agent reads them."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, VectorObservations | DictObservations):
            return env.raw_space
        env = env.env
    return None


class FiniteCheck(gym.Wrapper):
    """Stop at the first NaN or infinite reward or (float) observation an env returns, and name it, instead of
    letting it surface later as a NaN loss. The usual case costs one test, a number that is finite exactly when every
    value is (reward + the observation's sum, or + obs . obs for large observations) unless large finite values
    overflow it; the exact check then decides. Per CartPole step: 0.2 us, where np.isfinite(obs).all() takes 1.5."""

    def __init__(self, env: gym.Env, env_id: str) -> None:
        super().__init__(env)
        space = env.observation_space
        self.check_obs = isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating)
        self.small = self.check_obs and len(space.shape) == 1 and space.shape[0] <= 64  # type: ignore[arg-type, index]
        self.env_id, self.steps, self.episode_start = env_id, 0, 0  # steps since the env was made; at the last reset

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if not self.finite(obs, reward):
            self.fail(obs, reward, f"at its step {self.steps} (episode step {self.steps - self.episode_start})")
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.episode_start = self.steps
        if not self.finite(obs, 0.0):
            self.fail(obs, 0.0, f"from reset (after its step {self.steps})")
        return obs, info

    def finite(self, obs: Any, reward: Any) -> bool:
        try:
            if not self.check_obs:
                return math.isfinite(reward)
            return math.isfinite(sum(obs.tolist(), reward) if self.small else reward + np.vdot(obs, obs))
        except TypeError:  # an array reward, a list observation: the exact check decides
            return False

    def fail(self, obs: Any, reward: Any, when: str) -> None:
        for what, value in (("reward", reward), ("observation", obs if self.check_obs else 0.0)):
            values = np.asarray(value, dtype=np.float64)
            if not np.isfinite(values).all():
                kind = "a NaN" if np.isnan(values).any() else "an inf"
                index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
                where = f" (obs[{', '.join(map(str, index))}] = {values[index]})" if values.size > 1 else ""
                raise PlainRLError(f"env {self.env_id!r} returned {kind} {what}{where} {when}; plainrl needs "
                                   "finite rewards and observations")  # fmt: skip


def _wrap(env: gym.Env, env_id: str, vectors: bool) -> gym.Env:
    """float64 Box observations as float32; with `vectors`, Discrete, MultiDiscrete and MultiBinary observations
    as vectors and Dict ones flattened into one (kit/spaces.py); continuous actions clipped to the action bounds;
    rewards and observations checked for NaN and inf."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and space.dtype == np.float64:
        env = Float32Observations(env)
    if vectors and type(space).__name__ in ENCODED_SPACES:
        env = VectorObservations(env)
    if vectors and isinstance(space, gym.spaces.Dict):
        env = DictObservations(env)
    if isinstance(env.action_space, gym.spaces.Box):
        env = ClipToBounds(env)
    return FiniteCheck(env, env_id)


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None, vectors: bool = False) -> gym.Env:
    """One environment (for evaluation and inspection), wrapped as the training envs are; `vectors`: as the
    classic algorithms' envs are (make_vec_env), tabular methods read Discrete states as they are."""
    kwargs = {"render_mode": render_mode} if render_mode else {}
    env = _wrap(_env_maker(env_id, **kwargs)(), env_id, vectors)
    if seed is not None:
        env.reset(seed=seed)
        seed_spaces(env, seed)
    return env


def seed_spaces(env: gym.Env, seed: int) -> None:
    """Seed an env's action and observation spaces, its own (unwrapped) and its wrappers', as Stable-Baselines3
    does: an env that draws from self.action_space.sample() (a random opponent, a random start) then repeats under
    the same seed too."""
    for holder in {id(e): e for e in (env, env.unwrapped)}.values():
        holder.action_space.seed(seed)
        holder.observation_space.seed(seed)


def make_vec_env(env_id: str, num_envs: int, seed: int, asynchronous: bool = False) -> gym.vector.VectorEnv:
    """`num_envs` copies seeded seed, seed+1, ... (their spaces too); SAME_STEP autoreset; float32 observations,
    Discrete, MultiDiscrete and MultiBinary ones as vectors; Box actions clipped to bounds; each copy checks its
    rewards and observations for NaN and inf. For the classic algorithms, which read vectors."""
    maker = _env_maker(env_id)

    def make_one(index: int) -> gym.Env:
        env = _wrap(maker(), env_id, vectors=True)
        seed_spaces(env, seed + index)
        return env

    vector_cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    makers = [functools.partial(make_one, i) for i in range(num_envs)]
    envs = vector_cls(makers, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs


def true_next_obs(next_obs: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """The observation each env actually reached: the final one where an episode just ended.

    `next_obs` (N, *obs_shape) from a SAME_STEP vector env holds reset observations for envs that finished.
    """
    if "_final_obs" not in infos:
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(infos["_final_obs"]):
        real[i] = infos["final_obs"][i]
    return real


def mask_reader(infos: dict[str, Any], masks_method: Callable[[], Any] | None) -> Callable[..., np.ndarray] | None:
    """How to read the actions an env allows now, or None if it says nothing: from info["action_mask"] (as
    PettingZoo's and Gymnasium's own envs give it) or else the env's action_masks() method (sb3-contrib's
    MaskablePPO convention), given here as `masks_method`. The reader maps a step's infos to booleans (..., n)."""
    if "action_mask" in infos:
        return lambda step_infos: np.asarray(step_infos["action_mask"], dtype=bool)
    if masks_method is None:
        return None
    return lambda step_infos: np.asarray(masks_method(), dtype=bool)


def vector_mask_reader(envs: gym.vector.VectorEnv, reset_infos: dict[str, Any]) -> Callable[..., np.ndarray] | None:
    """mask_reader for a vector env: masks (N, n) from the step's infos, or by calling every env's action_masks()
    (Sync and AsyncVectorEnv can; a vector env without `call`, EnvPool's, gives masks in its infos or none)."""
    call = getattr(envs, "call", None)
    if call is None:
        return mask_reader(reset_infos, None)
    # Asked, not tried: an AttributeError inside an AsyncVectorEnv worker would close its pipes.
    has_method = all(call("has_wrapper_attr", "action_masks"))
    masks_method = (lambda: np.stack(call("action_masks"))) if has_method else None
    return mask_reader(reset_infos, masks_method)


def final_masks(masks: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """The action masks (N, n) of the states a vector step reached, from the masks of the states to act on next
    (`masks`, read from this step's infos): where an episode ended, the final state's (from its final info when
    masks come in infos; all actions otherwise: a terminal state is never bootstrapped from, and an action_masks()
    method can no longer see a final state)."""
    if "_final_obs" not in infos:
        return masks
    masks = masks.copy()
    final_info = infos.get("final_info", {})
    for i in np.flatnonzero(infos["_final_obs"]):
        has_mask = "action_mask" in final_info and final_info.get("_action_mask", np.ones(len(masks), bool))[i]
        masks[i] = final_info["action_mask"][i] if has_mask else True
    return masks


def env_rewards(rewards: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """The game's own rewards of one SAME_STEP vector step, for episode statistics: infos["raw_reward"] where a
    wrapper changed them (Atari's clipping to their sign, kit/atari.py), else `rewards`. An env whose episode just
    ended was reset in the same step, so its infos entry is the reset's; the last step's raw reward (in Pong, the
    point that ends the game) is in infos["final_info"]."""
    if "raw_reward" not in infos and "raw_reward" not in infos.get("final_info", {}):
        return rewards
    raw = np.asarray(rewards, dtype=np.float64).copy()
    for where in (infos, infos.get("final_info", {})):
        if "raw_reward" in where:
            has = where["_raw_reward"]
            raw[has] = where["raw_reward"][has]
    return raw


class EpisodeStats:
    """Undiscounted return and length of every finished episode, from the raw env rewards."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.recent_returns: list[float] = []  # the last 20 finished episodes, for the progress bar

    def update(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        self.returns += rewards
        self.lengths += 1
        for i in np.flatnonzero(dones):
            self.finished_returns.append(float(self.returns[i]))
            self.finished_lengths.append(int(self.lengths[i]))
            self.recent_returns = (self.recent_returns + [float(self.returns[i])])[-20:]
            self.returns[i] = 0.0
            self.lengths[i] = 0

    def pop(self) -> dict[str, float]:
        """Mean return and length of the episodes finished since the last call ({} if none)."""
        if not self.finished_returns:
            return {}
        stats = {
            "episode_return": float(np.mean(self.finished_returns)),
            "episode_length": float(np.mean(self.finished_lengths)),
            "episodes": float(len(self.finished_returns)),
        }
        self.finished_returns, self.finished_lengths = [], []
        return stats

    @property
    def recent_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")
