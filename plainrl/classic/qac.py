"""Q actor-critic: the simplest actor-critic, straight from the policy gradient theorem (Sutton et al. 2000;
Sutton & Barto 13.5), with a learned Q critic in place of the true action values. A teaching baseline beside
A2C, which replaces Q(s, a) by the lower-variance advantage A(s, a) = Q(s, a) - V(s).

    policy gradient theorem:  grad J(theta) = E[grad log pi(a|s) Q^pi(s, a)]
    for iteration = 1, 2, ...
        run pi in N envs for T steps                                             -> rollout
        a' ~ pi(.|s') for each step's next state
        y = r + gamma (1 - terminated) Q(s', a')                                 (the SARSA target)
        loss = -mean(log pi(a|s) Q(s, a)) + c_q * mean((Q(s, a) - y)^2) - c_e * mean(entropy)
        one gradient step (Q(s, a) in the actor term and y are held fixed)

Q(s, a) is one network on [s, a]: a one-hot action for Discrete spaces, the action itself for Box ones, so
both action spaces take the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from plainrl.kit.buffers import RolloutBuffer
from plainrl.kit.config import EnvConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env
from plainrl.kit.nets import QEnsemble, flat_dim, mlp, policy_head
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Discrete", "Box")


@dataclass
class Config(EnvConfig):
    num_envs: int = 8
    num_steps: int = 16  # steps per env per update
    learning_rate: float = 1e-3
    gamma: float = 0.99
    q_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "num_steps"),
                       positive=("learning_rate", "max_grad_norm"), discount=("gamma",),
                       non_negative=("q_coef", "ent_coef"))  # fmt: skip
        require(len(self.hidden_sizes) >= 1, "hidden_sizes must name at least one layer, e.g. [64, 64]")


PRESETS: dict[str, dict[str, Any]] = {
    # Gradient clipping at 0.5 starves the actor (the critic's gradient dominates the norm): it stays effectively off.
    "CartPole-v1": dict(
        total_steps=200_000, num_envs=8, num_steps=16, learning_rate=3e-4, gamma=0.98, ent_coef=0.01, q_coef=1.0,
        max_grad_norm=100.0,
    ),
    "Pendulum-v1": dict(
        total_steps=500_000, num_envs=8, num_steps=16, learning_rate=3e-4, gamma=0.9, q_coef=1.0, max_grad_norm=100.0,
    ),
}  # fmt: skip


class QActorCritic(nn.Module):
    """A policy pi(a|s) (categorical or diagonal Gaussian) and a critic Q(s, a)."""

    def __init__(self, config: Config, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__()
        obs_dim, action_dim = flat_dim(observation_space), flat_dim(action_space)
        self.discrete, self.action_dim = isinstance(action_space, gym.spaces.Discrete), action_dim
        self.actor = mlp(obs_dim, config.hidden_sizes, action_dim, config.activation, out_gain=0.01)
        self.head = policy_head(action_space)
        self.critic = QEnsemble(obs_dim, action_dim, config.hidden_sizes, n=1, activation=config.activation)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a), (B,)."""
        features = F.one_hot(actions.long(), self.action_dim).float() if self.discrete else actions
        return self.critic(obs, features)[0]

    @torch.inference_mode()
    def sample(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rollout-time sampling (the RolloutBuffer's policy): actions and their log-probs, as numpy."""
        output = self.actor(torch.as_tensor(obs, device=self.device))
        actions = self.head.sample(output)
        return actions.cpu().numpy(), self.head.log_prob(output, actions).cpu().numpy()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        output = self.actor(obs)
        return self.head.mode(output) if deterministic else self.head.sample(output)


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> QActorCritic:
    return QActorCritic(config, observation_space, action_space)


def qac_loss(
    agent: QActorCritic, data: dict[str, torch.Tensor], config: Config
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Q actor-critic loss on a flattened rollout (see the module docstring); returns (loss, diagnostics)."""
    obs, actions, next_obs = data["obs"], data["actions"], data["next_obs"]
    with torch.no_grad():
        next_actions = agent.head.sample(agent.actor(next_obs))
        targets = data["rewards"] + config.gamma * (1.0 - data["terminated"]) * agent.q(next_obs, next_actions)
    q = agent.q(obs, actions)
    log_probs, entropy = agent.head.log_prob_entropy(agent.actor(obs), actions)
    policy_loss = -(log_probs * q.detach()).mean()
    q_loss = (q - targets).pow(2).mean()
    loss = policy_loss + config.q_coef * q_loss - config.ent_coef * entropy.mean()
    diagnostics = {"policy_loss": policy_loss.detach(), "q_loss": q_loss.detach(), "entropy": entropy.mean().detach()}
    return loss, diagnostics


def train(config: Config, run: Run) -> QActorCritic:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, fused=True)
    T, N = config.num_steps, config.num_envs
    batch_size = T * N
    num_iterations = math.ceil(config.total_steps / batch_size)
    stateful = {"agent": agent, "optimizer": optimizer}
    run.restore(stateful)
    global_step = run.start_step
    rollout = RolloutBuffer(T, N, envs.single_observation_space, envs.single_action_space)
    obs, _ = envs.reset(seed=config.seed + global_step)  # a resumed run reseeds from the step it resumes at
    episode_stats = EpisodeStats(N)
    steps_since_log = 0

    for _iteration in range(global_step // batch_size, num_iterations):
        # 1. Collect a short rollout with the current policy.
        obs = rollout.collect(envs, obs, agent.sample, episode_stats)
        global_step += batch_size
        steps_since_log += batch_size
        data = {k: v.reshape(batch_size, *v.shape[2:]) for k, v in rollout.tensors(device).items()}

        # 2. One gradient step on the policy-gradient and SARSA losses.
        loss, diagnostics = qac_loss(agent, data, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
        optimizer.step()

        # 3. Log about every 1000 env steps, checkpoint, and let benchmark hooks evaluate.
        if steps_since_log >= 1000 or global_step >= config.total_steps:
            metrics = {name: value.item() for name, value in diagnostics.items()}
            run.log(global_step, metrics | episode_stats.pop())
            steps_since_log = 0
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
