"""Twin Delayed DDPG (Fujimoto et al. 2018, arXiv 1802.09477): DDPG plus three fixes for Q overestimation.

    initialise actor mu, critics Q1, Q2, targets mu' <- mu, Q_i' <- Q_i, replay buffer D
    for step = 1, 2, ...
        a = clip(mu(s) + N(0, exploration_noise), -1, 1) (uniform random for the first learning_starts steps)
        step the env; store (s, a, r, s') in D
        every train_frequency steps, gradient_steps times, on a minibatch from D:
            a' = clip(mu'(s') + clip(N(0, target_policy_noise), -c, c), -1, 1)     (1. target policy smoothing)
            y  = r + gamma (1 - terminated) min_i Q_i'(s', a')                       (2. clipped double Q)
            one gradient step on L_Q = sum_i mean((Q_i(s, a) - y)^2)
            every policy_delay-th gradient step:                                    (3. delayed actor updates)
                one gradient step on L_mu = -mean(Q_1(s, mu(s)))
                mu' <- tau mu + (1 - tau) mu',  Q_i' <- tau Q_i + (1 - tau) Q_i'

DDPG (plainrl/classic/ddpg.py) is this loop with one critic, no smoothing noise and policy_delay = 1.
L_mu sees the critics' weights detached, so on an actor step one backward pass of L_Q + L_mu and one Adam step
over all parameters update both (parameters without a gradient, the actor's on other steps, are skipped).
Actions live in [-1, 1] inside the agent and are rescaled to the env's bounds when applied.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit.buffers import ReplayBuffer
from plainrl.kit.config import OffPolicyConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env
from plainrl.kit.nets import DeterministicActor, QEnsemble, flat_dim, polyak_update
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Box",)


@dataclass
class Config(OffPolicyConfig):
    env: str = "Pendulum-v1"
    total_steps: int = 100_000
    num_envs: int = 1
    buffer_size: int = 1_000_000
    # Env steps of uniform-random actions before the first update: 100, as Stable-Baselines3's. Measured on SB3's
    # identity task (benchmarks/small_env_defaults.py, 500 steps, seeds 0-2) 1000 scored 50.9/45.6/45.6 (TD3) and
    # 100 scored 100/100/100; on Pendulum-v1 at 5k steps TD3 -611 -> -263 mean, DDPG -249 -> -176.
    learning_starts: int = 100
    batch_size: int = 256
    train_frequency: int = 1  # env steps between training phases
    gradient_steps: int = 1  # gradient steps per training phase
    learning_rate: float = 1e-3  # actor and critics
    gamma: float = 0.99
    tau: float = 0.005  # Polyak averaging rate of the target networks
    exploration_noise: float = 0.1  # std of the Gaussian added to actions in [-1, 1]
    n_critics: int = 2  # clipped double Q takes the min over these
    policy_delay: int = 2  # critic gradient steps per actor (and target) update
    target_policy_noise: float = 0.2  # std of the smoothing noise on target actions (0: none)
    target_noise_clip: float = 0.5
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"

    def validate(self) -> None:
        super().validate()
        require_ranges(self,
                       non_negative=("exploration_noise", "target_policy_noise", "target_noise_clip"),
                       at_least_one=("n_critics", "policy_delay"))  # fmt: skip
        require(len(self.hidden_sizes) >= 1, "hidden_sizes must name at least one layer, e.g. [64, 64]")


PRESETS: dict[str, dict[str, Any]] = {
    # rl-baselines3-zoo's Pendulum setting (gamma 0.98, learning_rate 1e-3, noise 0.1) with 1000 warm-up steps
    # instead of 10000 and 64-unit layers instead of [400, 300].
    "Pendulum-v1": dict(total_steps=15_000, gamma=0.98, buffer_size=200_000, hidden_sizes=(64, 64),
                        learning_starts=1000),
    "MountainCarContinuous-v0": dict(total_steps=300_000, exploration_noise=0.5, hidden_sizes=(64, 64),
                                     learning_starts=1000),  # (measured with 1000, the default until then)
    "HalfCheetah-v5": dict(total_steps=1_000_000, learning_starts=10_000, hidden_sizes=(400, 300)),
    "Hopper-v5": dict(total_steps=1_000_000, learning_starts=10_000, hidden_sizes=(400, 300)),
}  # fmt: skip


class TD3Agent(nn.Module):
    """The actor, the critics and their targets: everything a checkpoint holds under "agent"."""

    def __init__(self, config: Config, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__()
        self.actor = DeterministicActor(observation_space, action_space, config.hidden_sizes, config.activation)
        obs_dim, action_dim = flat_dim(observation_space), flat_dim(action_space)
        self.critic = QEnsemble(obs_dim, action_dim, config.hidden_sizes, config.n_critics, config.activation)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.actor.act(obs, deterministic)


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> TD3Agent:
    return TD3Agent(config, observation_space, action_space)


def td3_losses(
    agent: TD3Agent, batch: dict[str, torch.Tensor], config: Config, update_actor: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_Q (+ L_mu when update_actor) on one minibatch (see the module docstring); returns (loss, diagnostics)."""
    with torch.no_grad():
        next_actions = agent.target_actor(batch["next_obs"])
        if config.target_policy_noise > 0:
            noise = torch.randn_like(next_actions) * config.target_policy_noise
            next_actions = (next_actions + noise.clamp(-config.target_noise_clip, config.target_noise_clip)).clamp(
                -1, 1
            )
        next_q = agent.target_critic(batch["next_obs"], next_actions).min(0).values
        targets = batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"]) * next_q
    q = agent.critic(batch["obs"], batch["actions"])  # (n_critics, B)
    loss = (q - targets).pow(2).mean(-1).sum()
    diagnostics = {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}
    if update_actor:
        actor_loss = -agent.critic(batch["obs"], agent.actor(batch["obs"]), detach_params=True)[0].mean()
        diagnostics["actor_loss"] = actor_loss.detach()
        loss = loss + actor_loss
    return loss, diagnostics


def train(config: Config, run: Run) -> TD3Agent:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam([p for p in agent.parameters() if p.requires_grad], lr=config.learning_rate,
                                 fused=True)  # fmt: skip
    obs_shape = envs.single_observation_space.shape or ()
    action_shape = envs.single_action_space.shape or ()
    replay = ReplayBuffer(config.buffer_size, obs_shape, action_shape, np.float32, seed=config.seed)
    stateful = {"agent": agent, "optimizer": optimizer, "replay": replay}
    run.restore(stateful)

    global_step = run.start_step
    rng = np.random.default_rng(config.seed + global_step)  # exploration; reseeded from the step on resume
    obs, _ = envs.reset(seed=config.seed + global_step)
    episode_stats = EpisodeStats(config.num_envs)
    since_train, gradient_step, steps_since_log = 0, 0, 0
    diagnostics: list[dict[str, torch.Tensor]] = []

    while global_step < config.total_steps:
        # 1. Act: uniform random actions until learning_starts, then the actor plus Gaussian noise.
        if global_step < config.learning_starts:
            actions = rng.uniform(-1.0, 1.0, size=(config.num_envs, *action_shape)).astype(np.float32)
        else:
            with torch.inference_mode():
                actions = agent.actor(torch.as_tensor(obs, device=device)).cpu().numpy()
            noise = rng.normal(0.0, config.exploration_noise, size=actions.shape)
            actions = np.clip(actions + noise, -1.0, 1.0).astype(np.float32)
        # [-1, 1] -> the env's bounds
        env_actions = agent.actor.to_env(torch.as_tensor(actions, device=device)).cpu().numpy()
        obs = replay.step_envs(envs, obs, env_actions, actions, config.gamma, episode_stats)
        global_step += config.num_envs
        since_train += config.num_envs
        steps_since_log += config.num_envs

        # 2. Learn: critic steps on replayed minibatches; every policy_delay-th also an actor and target step.
        if global_step >= config.learning_starts and since_train >= config.train_frequency:
            since_train = 0
            for _ in range(config.gradient_steps):
                gradient_step += 1
                update_actor = gradient_step % config.policy_delay == 0
                batch = replay.sample(config.batch_size, device)
                loss, step_diagnostics = td3_losses(agent, batch, config, update_actor)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if update_actor:
                    polyak_update(agent.target_actor, agent.actor, config.tau)
                    polyak_update(agent.target_critic, agent.critic, config.tau)
                diagnostics.append(step_diagnostics)

        # 3. Log about every 1000 env steps, checkpoint, and let benchmark hooks evaluate.
        if steps_since_log >= 1000 or global_step >= config.total_steps:
            metrics: dict[str, float] = {}
            for key in ("critic_loss", "q_mean", "actor_loss"):
                values = [d[key] for d in diagnostics if key in d]
                if values:
                    metrics[key] = torch.stack(values).mean().item()
            run.log(global_step, metrics | episode_stats.pop())
            steps_since_log, diagnostics = 0, []
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
