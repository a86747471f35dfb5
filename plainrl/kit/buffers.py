"""Rollout storage with GAE for on-policy methods; a numpy ring replay buffer for off-policy ones."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from plainrl.kit.envs import EpisodeStats, env_rewards, true_next_obs
from plainrl.kit.spaces import is_image_space


class RolloutBuffer:
    """T steps x N envs of on-policy experience from a SAME_STEP vector env, stored as numpy (T, N, ...).

    next_obs[t] is the state step t actually reached: the final observation where an episode ended, so
    truncated steps can bootstrap from it. Per-step writes are numpy (cheap); `tensors` converts once.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        mask_reader: Callable[..., np.ndarray] | None = None,
    ):
        """mask_reader (kit.envs.vector_mask_reader): the envs say which actions they allow; the masks (T, N, n)
        are stored with the steps, for the loss to mask the same actions the rollout did."""
        T, N = num_steps, num_envs
        obs_shape, action_shape = observation_space.shape or (), action_space.shape or ()
        self.num_steps = num_steps
        obs_dtype = storage_dtype(observation_space)
        self.obs: np.ndarray = np.zeros((T, N, *obs_shape), dtype=obs_dtype)
        self.next_obs: np.ndarray = np.zeros((T, N, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((T, N, *action_shape), dtype=action_space.dtype)
        self.logprobs = np.zeros((T, N), dtype=np.float32)
        self.rewards = np.zeros((T, N), dtype=np.float32)
        self.terminated = np.zeros((T, N), dtype=np.float32)
        self.episode_ends = np.zeros((T, N), dtype=np.float32)
        self.mask_reader = mask_reader
        self.masks: np.ndarray | None = None  # (T, N, n) when masking, else None
        self.current_mask: np.ndarray | None = None  # the mask of the obs to go on from

    def start(self, reset_infos: dict[str, Any]) -> None:
        """Read the first observations' masks (call after resetting the envs)."""
        if self.mask_reader is not None:
            self.current_mask = self.mask_reader(reset_infos)
            self.masks = np.zeros((self.num_steps, *self.current_mask.shape), dtype=bool)

    def collect(
        self,
        envs: gym.vector.VectorEnv,
        obs: np.ndarray,
        policy: Callable[..., tuple[np.ndarray, np.ndarray]],
        episode_stats: EpisodeStats,
        reward_transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Run `policy` (obs -> actions, log-probs; (obs, action masks) -> ... when masking) for num_steps steps from
        `obs`; returns the obs to go on from.

        Episode statistics see the game's rewards; the buffer stores them after `reward_transform` (scaling).
        """
        for t in range(self.num_steps):
            if self.masks is None:
                actions, logprobs = policy(obs)
            else:
                actions, logprobs = policy(obs, self.current_mask)
                self.masks[t] = self.current_mask
            self.obs[t], self.actions[t], self.logprobs[t] = obs, actions, logprobs
            obs, rewards, terminated, truncated, infos = envs.step(actions)
            episode_ends = terminated | truncated
            episode_stats.update(env_rewards(rewards, infos), episode_ends)
            self.rewards[t] = reward_transform(rewards, episode_ends) if reward_transform else rewards
            self.terminated[t], self.episode_ends[t] = terminated, episode_ends
            self.next_obs[t] = true_next_obs(obs, infos)
            if self.mask_reader is not None:
                self.current_mask = self.mask_reader(infos)
        return obs

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The rollout as tensors on `device`: (T, N, ...) each; "masks" only when masking."""
        names = ("obs", "next_obs", "actions", "logprobs", "rewards", "terminated", "episode_ends")
        tensors = {name: torch.as_tensor(getattr(self, name), device=device) for name in names}
        if self.masks is not None:
            tensors["masks"] = torch.as_tensor(self.masks, device=device)
        return tensors


def storage_dtype(observation_space: gym.Space) -> type:
    """How buffers keep observations: images as uint8 (a quarter of float32's memory; the CNN scales them), the
    rest as float32."""
    return np.uint8 if is_image_space(observation_space) else np.float32


def next_state_values(
    value: Callable[[torch.Tensor], torch.Tensor],
    values: torch.Tensor,
    next_obs: torch.Tensor,
    episode_ends: torch.Tensor,
) -> torch.Tensor:
    """V of the state each step reached, (T, N), from V(s_t) `values` (T, N): within an episode the state reached at
    t is the one seen at t + 1, so its value is values[t + 1]; only the last step's and each episode's final
    observation go through `value` again. That is T*N forward passes fewer than V(next_obs) for all (a CNN's pass
    is the cost of an image rollout); the numbers are the same, up to float rounding between batch sizes."""
    next_values = torch.empty_like(values)
    next_values[:-1] = values[1:]
    needed = episode_ends != 0  # a new tensor: the caller's is not written to
    needed[-1] = True
    rows = needed.nonzero(as_tuple=True)
    next_values[rows] = value(next_obs[rows])
    return next_values


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_ends: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016). All inputs are (T, N).

    next_values[t] is V of the state actually reached at step t (the final observation when an episode
    ended), so a *truncated* step still bootstraps from it; a *terminated* step does not (terminated = 1).
    episode_ends = terminated or truncated: the advantage recursion never runs across an episode boundary.

        delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
        A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}
    Returns (advantages, returns = advantages + values).
    """
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values
    continues = gamma * gae_lambda * (1.0 - episode_ends)
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_advantage = deltas[t] + continues[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def discounted_returns(rewards: np.ndarray, gamma: float, final_value: float = 0.0) -> np.ndarray:
    """Reward-to-go of one episode: G_t = r_t + gamma * G_{t+1}, with G_T = final_value (0 when the episode
    terminated; an estimate of V(s_T) when it was truncated by a time limit)."""
    returns = np.zeros(len(rewards))
    running = final_value
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


class NStepTransitions:
    """Turns each env's stream of 1-step transitions into n-step ones (Sutton & Barto 7.1) for a replay buffer.

    Transition t becomes (s_t, a_t, sum_{k<m} gamma^k r_{t+k}, s_{t+m}, terminated_{t+m-1}, gamma^m) with m = n,
    or fewer steps when the episode ends first. The discount travels with the transition, so a TD target is
    always  reward + discount * (1 - terminated) * V(next_obs).
    """

    def __init__(self, n: int, gamma: float, num_envs: int) -> None:
        self.n, self.gamma = n, gamma
        self.pending: list[deque[tuple[Any, ...]]] = [deque() for _ in range(num_envs)]

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        episode_ends: np.ndarray,
        next_masks: np.ndarray | None = None,
    ) -> list[tuple[Any, ...]]:
        """Add one vector step (N envs, next_obs = the state actually reached); returns the finished transitions,
        with the action mask of their last state at the end when `next_masks` (N, n) are given."""
        ready = []
        for i, pending in enumerate(self.pending):
            mask = None if next_masks is None else next_masks[i]
            pending.append((obs[i], actions[i], float(rewards[i]), next_obs[i], bool(terminated[i]), mask))
            if episode_ends[i]:  # flush: every pending transition ends at this episode's last state
                while pending:
                    ready.append(self._n_step(pending))
                    pending.popleft()
            elif len(pending) == self.n:
                ready.append(self._n_step(pending))
                pending.popleft()
        return ready

    def _n_step(self, pending: deque) -> tuple[Any, ...]:
        n_step_return = sum(self.gamma**k * step[2] for k, step in enumerate(pending))
        first_obs, first_action = pending[0][0], pending[0][1]
        _, _, _, last_next_obs, last_terminated, last_mask = pending[-1]
        discount = self.gamma ** len(pending)
        transition = (first_obs, first_action, n_step_return, last_next_obs, last_terminated, discount)
        return transition if last_mask is None else (*transition, last_mask)


class ReplayBuffer:
    """A fixed-size ring of transitions (obs, action, reward, next_obs, terminated, discount) in numpy.

    next_obs is the observation actually reached (the final one at an episode end), and `terminated` is
    stored without `truncated`: a time-limit end still bootstraps from next_obs. `discount` is the factor on
    the bootstrap term: gamma for 1-step transitions, gamma^m for m-step ones. With `mask_size` n > 0 it also keeps
    next_masks, the actions allowed in next_obs (n booleans), for targets that maximise over allowed actions only.
    Images are kept as uint8 (storage_dtype).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: type = np.float32,
        seed: int = 0,
        obs_dtype: type = np.float32,
        mask_size: int = 0,
    ) -> None:
        self.capacity = capacity
        self.obs: np.ndarray = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs: np.ndarray = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions: np.ndarray = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.fields = ["obs", "actions", "rewards", "next_obs", "terminated", "discounts"]
        if mask_size:
            self.next_masks = np.zeros((capacity, mask_size), dtype=bool)
            self.fields.append("next_masks")
        self.position = 0  # where the next transition goes
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        discounts: np.ndarray | float,
        next_masks: np.ndarray | None = None,
    ) -> None:
        """Add a batch of B transitions, overwriting the oldest when full."""
        batch = len(rewards)
        index = (self.position + np.arange(batch)) % self.capacity
        self.obs[index], self.actions[index], self.rewards[index] = obs, actions, rewards
        self.next_obs[index], self.terminated[index], self.discounts[index] = next_obs, terminated, discounts
        if next_masks is not None:
            self.next_masks[index] = next_masks
        self.position = (self.position + batch) % self.capacity
        self.size = min(self.size + batch, self.capacity)

    def step_envs(
        self,
        envs: gym.vector.VectorEnv,
        obs: np.ndarray,
        env_actions: np.ndarray,
        actions: np.ndarray,
        gamma: float,
        episode_stats: EpisodeStats,
    ) -> np.ndarray:
        """Step `envs` with `env_actions`, store the 1-step transitions (with `actions`, the form the learner
        uses, e.g. rescaled to [-1, 1]) and return the observations to go on from."""
        next_obs, rewards, terminated, truncated, infos = envs.step(env_actions)
        episode_stats.update(rewards, terminated | truncated)
        self.add(obs, actions, rewards, true_next_obs(next_obs, infos), terminated, gamma)
        return next_obs

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        index = self.rng.integers(0, self.size, size=batch_size)
        return {name: torch.as_tensor(getattr(self, name)[index], device=device) for name in self.fields}

    def state_dict(self) -> dict:
        arrays = {name: getattr(self, name)[: self.size] for name in self.fields}
        return {**arrays, "position": self.position, "size": self.size, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        for name in self.fields:
            getattr(self, name)[:size] = state[name]
        self.position, self.size = state["position"], size
        self.rng.bit_generator.state = state["rng"]
