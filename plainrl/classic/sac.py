"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv 1801.01290 and 1812.05905): twin Q critics, a tanh-squashed
Gaussian policy, and automatic tuning of the entropy temperature alpha.

    initialise policy pi, critics Q1, Q2, targets Q1' <- Q1, Q2' <- Q2, log alpha, replay buffer D
    for step = 1, 2, ...
        a ~ pi(.|s) (uniform random for the first learning_starts steps); step the env; store (s, a, r, s') in D
        every train_frequency steps, gradient_steps times, on a minibatch from D:
            a' ~ pi(.|s'),  y = r + gamma (1 - terminated) (min_i Q_i'(s', a') - alpha log pi(a'|s'))
            L_Q     = sum_i mean((Q_i(s, a) - y)^2) / 2
            L_pi    = mean(alpha log pi(a~|s) - min_i Q_i(s, a~)),   a~ ~ pi(.|s) reparameterised
            L_alpha = -mean(log alpha (log pi(a~|s) + target_entropy))
            one gradient step on each;  Q_i' <- tau Q_i + (1 - tau) Q_i'

The three losses touch disjoint parameters (L_pi sees the critics' weights detached, L_alpha sees log pi
detached), so one backward pass of their sum and one Adam step over all parameters do the three updates at
the cost of one. Actions live in [-1, 1] inside the agent and are rescaled to the env's bounds when applied.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit.buffers import ReplayBuffer
from plainrl.kit.config import OffPolicyConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env
from plainrl.kit.nets import QEnsemble, TanhGaussianActor, flat_dim, polyak_update
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Box",)


@dataclass
class Config(OffPolicyConfig):
    env: str = "Pendulum-v1"
    total_steps: int = 100_000
    num_envs: int = 1
    buffer_size: int = 1_000_000
    learning_starts: int = 100  # env steps of uniform-random actions before the first update
    batch_size: int = 256
    train_frequency: int = 1  # env steps between training phases
    gradient_steps: int = 1  # gradient steps per training phase
    learning_rate: float = 3e-4  # actor, critics and alpha
    gamma: float = 0.99
    tau: float = 0.005  # Polyak averaging rate of the target critics
    initial_alpha: float = 1.0
    autotune_alpha: bool = True  # learn alpha so the policy's entropy tracks target_entropy
    target_entropy: float | None = None  # None: -action_dim
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"

    def validate(self) -> None:
        super().validate()
        require_ranges(self, positive=("initial_alpha",))
        require(len(self.hidden_sizes) >= 1, "hidden_sizes must name at least one layer, e.g. [64, 64]")


PRESETS: dict[str, dict[str, Any]] = {
    # rl-baselines3-zoo's Pendulum setting (learning_rate 1e-3) with 64-unit layers: as few steps, less compute.
    "Pendulum-v1": dict(total_steps=15_000, learning_rate=1e-3, hidden_sizes=(64, 64)),
    "MountainCarContinuous-v0": dict(
        total_steps=50_000, learning_rate=3e-4, buffer_size=50_000, batch_size=512, gamma=0.9999, tau=0.01,
        train_frequency=32, gradient_steps=32, learning_starts=0, initial_alpha=0.1, hidden_sizes=(64, 64),
    ),
    "HalfCheetah-v5": dict(total_steps=1_000_000, learning_starts=10_000),
    "Hopper-v5": dict(total_steps=1_000_000, learning_starts=10_000),
}  # fmt: skip


class SACAgent(nn.Module):
    """The policy, twin critics, their targets and log alpha: everything a checkpoint holds under "agent"."""

    def __init__(self, config: Config, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__()
        self.actor = TanhGaussianActor(observation_space, action_space, config.hidden_sizes, config.activation)
        obs_dim, action_dim = flat_dim(observation_space), flat_dim(action_space)
        self.critic = QEnsemble(obs_dim, action_dim, config.hidden_sizes, 2, config.activation)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.initial_alpha)), config.autotune_alpha)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.act(obs, deterministic)


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> SACAgent:
    return SACAgent(config, observation_space, action_space)


def sac_losses(
    agent: SACAgent, batch: dict[str, torch.Tensor], target_entropy: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_Q + L_pi + L_alpha on one minibatch (see the module docstring); returns (loss, diagnostics)."""
    obs, batch_size = batch["obs"], len(batch["obs"])
    # One policy pass over s and s' together: a~ for L_pi and L_alpha, a' (detached) for the target.
    actions, log_probs = agent.actor(torch.cat([obs, batch["next_obs"]]))
    new_actions, new_log_probs = actions[:batch_size], log_probs[:batch_size]
    alpha = agent.log_alpha.exp().detach()
    with torch.no_grad():
        next_actions, next_log_probs = actions[batch_size:], log_probs[batch_size:]
        next_q = agent.target_critic(batch["next_obs"], next_actions).min(0).values - alpha * next_log_probs
        targets = batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"]) * next_q
    q = agent.critic(obs, batch["actions"])  # (2, B)
    critic_loss = 0.5 * (q - targets).pow(2).mean(-1).sum()
    new_q = agent.critic(obs, new_actions, detach_params=True).min(0).values
    actor_loss = (alpha * new_log_probs - new_q).mean()
    alpha_loss = -(agent.log_alpha * (new_log_probs.detach() + target_entropy)).mean()
    diagnostics = {
        "critic_loss": critic_loss.detach(),
        "actor_loss": actor_loss.detach(),
        "alpha": alpha,
        "entropy": -new_log_probs.detach().mean(),
        "q_mean": q.detach().mean(),
    }
    return critic_loss + actor_loss + alpha_loss, diagnostics


def train(config: Config, run: Run) -> SACAgent:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    action_shape = envs.single_action_space.shape or ()
    target_entropy = -float(math.prod(action_shape)) if config.target_entropy is None else config.target_entropy
    optimizer = torch.optim.Adam([p for p in agent.parameters() if p.requires_grad], lr=config.learning_rate,
                                 fused=True)  # fmt: skip
    obs_shape = envs.single_observation_space.shape or ()
    replay = ReplayBuffer(config.buffer_size, obs_shape, action_shape, np.float32, seed=config.seed)
    stateful = {"agent": agent, "optimizer": optimizer, "replay": replay}
    run.restore(stateful)

    global_step = run.start_step
    rng = np.random.default_rng(config.seed + global_step)  # warm-up actions; reseeded from the step on resume
    obs, _ = envs.reset(seed=config.seed + global_step)
    episode_stats = EpisodeStats(config.num_envs)
    since_train, steps_since_log = 0, 0
    diagnostics: list[dict[str, torch.Tensor]] = []

    while global_step < config.total_steps:
        # 1. Act: uniform random actions until learning_starts, then samples of the policy.
        if global_step < config.learning_starts:
            actions = rng.uniform(-1.0, 1.0, size=(config.num_envs, *action_shape)).astype(np.float32)
        else:
            with torch.inference_mode():
                actions = agent.actor(torch.as_tensor(obs, device=device))[0].cpu().numpy()
        # [-1, 1] -> the env's bounds
        env_actions = agent.actor.to_env(torch.as_tensor(actions, device=device)).cpu().numpy()
        obs = replay.step_envs(envs, obs, env_actions, actions, config.gamma, episode_stats)
        global_step += config.num_envs
        since_train += config.num_envs
        steps_since_log += config.num_envs

        # 2. Learn: gradient steps on replayed minibatches, then move the target critics.
        if global_step >= config.learning_starts and since_train >= config.train_frequency:
            since_train = 0
            for _ in range(config.gradient_steps):
                loss, step_diagnostics = sac_losses(agent, replay.sample(config.batch_size, device), target_entropy)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                polyak_update(agent.target_critic, agent.critic, config.tau)
                diagnostics.append(step_diagnostics)

        # 3. Log about every 1000 env steps, checkpoint, and let benchmark hooks evaluate.
        if steps_since_log >= 1000 or global_step >= config.total_steps:
            metrics: dict[str, float] = {}
            if diagnostics:
                metrics |= {k: torch.stack([d[k] for d in diagnostics]).mean().item() for k in diagnostics[0]}
            run.log(global_step, metrics | episode_stats.pop())
            steps_since_log, diagnostics = 0, []
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
