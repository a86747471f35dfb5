"""Rollout storage with GAE for on-policy methods; a numpy ring replay buffer for off-policy ones."""

from __future__ import annotations

import numpy as np
import torch


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


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go of one episode: G_t = r_t + gamma * G_{t+1}."""
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


class ReplayBuffer:
    """A fixed-size ring of transitions (obs, action, reward, next_obs, terminated) in numpy.

    next_obs is the observation actually reached (the final one at an episode end), and `terminated` is
    stored without `truncated`: a time-limit end still bootstraps from next_obs.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: type = np.float32,
        seed: int = 0,
    ) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.actions: np.ndarray = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
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
    ) -> None:
        """Add a batch of B transitions (one per env), overwriting the oldest when full."""
        batch = len(rewards)
        index = (self.position + np.arange(batch)) % self.capacity
        self.obs[index], self.actions[index], self.rewards[index] = obs, actions, rewards
        self.next_obs[index], self.terminated[index] = next_obs, terminated
        self.position = (self.position + batch) % self.capacity
        self.size = min(self.size + batch, self.capacity)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        index = self.rng.integers(0, self.size, size=batch_size)
        return {
            name: torch.as_tensor(array[index], device=device)
            for name, array in (
                ("obs", self.obs),
                ("actions", self.actions),
                ("rewards", self.rewards),
                ("next_obs", self.next_obs),
                ("terminated", self.terminated),
            )
        }

    def state_dict(self) -> dict:
        arrays = {k: getattr(self, k)[: self.size] for k in ("obs", "next_obs", "actions", "rewards", "terminated")}
        return {**arrays, "position": self.position, "size": self.size, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, name)[:size] = state[name]
        self.position, self.size = state["position"], size
        self.rng.bit_generator.state = state["rng"]
