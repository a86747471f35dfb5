"""Deep SARSA: on-policy TD(0) control with a Q-network and an epsilon-greedy policy (Rummery & Niranjan 1994;
Sutton & Barto 6.4 with function approximation; Graesser & Keng ch. 3).

    for iteration = 1, 2, ...
        run the epsilon-greedy policy of Q in N envs for T steps: tuples (s, a, r, s', a')
        y = r + gamma (1 - terminated) Q(s', a')       a' is the action the same policy takes in s'
        update_epochs gradient steps on mean((Q(s, a) - y)^2) over this batch, then discard it (no replay:
        SARSA learns the value of the policy that collected the data, so old data would be off-policy)
        decay epsilon

Within a rollout a' is the action actually taken next. For a rollout's last step and at truncations, where
that action is not in the batch, a' is drawn from the same epsilon-greedy policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit.buffers import RolloutBuffer
from plainrl.kit.config import EnvConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env
from plainrl.kit.nets import QNetwork
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Discrete",)


@dataclass
class Config(EnvConfig):
    total_steps: int = 200_000
    num_envs: int = 8
    num_steps: int = 32  # steps per env per update
    update_epochs: int = 4
    learning_rate: float = 1e-3
    gamma: float = 0.99
    start_epsilon: float = 1.0
    end_epsilon: float = 0.01
    exploration_fraction: float = 0.3  # fraction of total_steps over which epsilon decays linearly
    max_grad_norm: float = 10.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "relu"

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "num_steps", "update_epochs"),
                       positive=("learning_rate", "max_grad_norm"), discount=("gamma",))  # fmt: skip
        for name in ("start_epsilon", "end_epsilon", "exploration_fraction"):
            require(0 <= getattr(self, name) <= 1, f"{name} = {getattr(self, name)} must be in [0, 1]")


PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(total_steps=200_000, num_envs=8, num_steps=32, update_epochs=4, learning_rate=1e-3),
}


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> QNetwork:
    return QNetwork(observation_space, action_space, config.hidden_sizes, config.activation, orthogonal_init=True)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each row of Q-values (B, n_actions): a uniform random action with probability epsilon, else the argmax."""
    explore = torch.rand(q_values.shape[0], generator=generator, device=q_values.device) < epsilon
    random_actions = torch.randint(q_values.shape[-1], (q_values.shape[0],), generator=generator,
                                   device=q_values.device)  # fmt: skip
    return torch.where(explore, random_actions, q_values.argmax(-1))


def sarsa_targets(
    rewards: torch.Tensor, terminated: torch.Tensor, next_q_taken: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) Q(s', a'), where next_q_taken = Q(s', a') of the policy's next action."""
    return rewards + gamma * (1.0 - terminated) * next_q_taken


def train(config: Config, run: Run) -> QNetwork:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    q_network = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate)
    stateful = {"agent": q_network, "optimizer": optimizer}
    run.restore(stateful)

    T, N = config.num_steps, config.num_envs
    batch_size = T * N
    num_iterations = math.ceil(config.total_steps / batch_size)
    decay_iterations = max(1.0, config.exploration_fraction * num_iterations)
    global_step = run.start_step
    rollout = RolloutBuffer(T, N, envs.single_observation_space, envs.single_action_space)
    obs, _ = envs.reset(seed=config.seed + global_step)
    episode_stats = EpisodeStats(N)
    epsilon = config.start_epsilon

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = epsilon_greedy(q_network(torch.as_tensor(obs, device=device)), epsilon)
        return actions.cpu().numpy(), np.zeros(len(obs), dtype=np.float32)  # (no log-probs for a Q-method)

    for iteration in range(global_step // batch_size, num_iterations):
        fraction = min(1.0, iteration / decay_iterations)
        epsilon = config.start_epsilon + fraction * (config.end_epsilon - config.start_epsilon)

        # 1. Collect (s, a, r, s') with the epsilon-greedy policy.
        obs = rollout.collect(envs, obs, policy, episode_stats)
        global_step += batch_size
        data = rollout.tensors(device)

        # 2. a' for each step: the next action taken in the rollout, unless the episode ended there or the
        #    rollout did; then a fresh draw from the same policy at s'.
        with torch.no_grad():
            next_q = q_network(data["next_obs"])  # (T, N, n_actions)
            next_actions = epsilon_greedy(next_q.reshape(batch_size, -1), epsilon).reshape(T, N)
            taken_next = torch.ones(T, N, dtype=torch.bool, device=device)
            taken_next[-1] = False
            taken_next[:-1] &= data["episode_ends"][:-1] == 0
            next_actions[:-1] = torch.where(taken_next[:-1], data["actions"][1:], next_actions[:-1])
            next_q_taken = next_q.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
            targets = sarsa_targets(data["rewards"], data["terminated"], next_q_taken, config.gamma).reshape(-1)

        # 3. A few gradient steps on this batch only.
        b_obs, b_actions = data["obs"].reshape(batch_size, -1), data["actions"].reshape(-1)
        for _ in range(config.update_epochs):
            q_taken = q_network(b_obs).gather(-1, b_actions.unsqueeze(-1)).squeeze(-1)
            loss = ((q_taken - targets) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm, foreach=True)
            optimizer.step()

        # 4. Log, checkpoint, and let benchmark hooks evaluate.
        run.log(
            global_step,
            {
                "td_loss": loss.item(),
                "q_mean": q_taken.mean().item(),
                "epsilon": epsilon,
                **episode_stats.pop(),
            },
        )
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, q_network):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return q_network
