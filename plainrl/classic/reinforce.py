"""REINFORCE (Williams 1992): Monte Carlo policy gradient with reward-to-go, an optional learned baseline and
an entropy bonus.

    for iteration = 1, 2, ...
        sample complete episodes with pi                      (N envs, until episodes_per_update have ended)
        G_t = sum_{k >= t} gamma^(k-t) r_k                    (reward-to-go: an action affects only what follows)
        A_t = G_t - b(s_t)                                    (b = a learned V(s), or 0 without a baseline)
        loss = -mean(log pi(a_t|s_t) A_t) - c_e mean(entropy)  [+ c_v mean((V(s_t) - G_t)^2) with a baseline]
        one gradient step

An episode cut by a time limit (truncated) did not end: with a baseline its tail is bootstrapped from
V(final observation); without one the tail counts as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit.buffers import discounted_returns
from plainrl.kit.config import EnvConfig, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env, true_next_obs
from plainrl.kit.nets import ActorCritic
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Discrete", "Box")


@dataclass
class Config(EnvConfig):
    total_steps: int = 200_000
    num_envs: int = 8
    episodes_per_update: int = 8
    learning_rate: float = 3e-3
    gamma: float = 0.99
    baseline: bool = True  # learn V(s) and subtract it: same expected gradient, lower variance
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "episodes_per_update"),
                       positive=("learning_rate", "max_grad_norm"), discount=("gamma",),
                       non_negative=("ent_coef", "vf_coef"))  # fmt: skip


PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(total_steps=200_000, num_envs=8, episodes_per_update=8, learning_rate=3e-3, gamma=0.99),
}


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    return ActorCritic(observation_space, action_space, config.hidden_sizes, config.activation)


def reinforce_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    ent_coef: float,
    values: torch.Tensor | None = None,
    returns: torch.Tensor | None = None,
    vf_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-mean(log pi(a|s) A) - c_e H [+ c_v (V - G)^2]; all inputs (B,), advantages and returns constant."""
    policy_loss = -(logprobs * advantages).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean
    diagnostics = {"policy_loss": policy_loss.detach(), "entropy": entropy_mean.detach()}
    if values is not None and returns is not None:
        value_loss = ((values - returns) ** 2).mean()
        loss = loss + vf_coef * value_loss
        diagnostics["value_loss"] = value_loss.detach()
    return loss, diagnostics


def train(config: Config, run: Run) -> ActorCritic:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate)
    stateful = {"agent": agent, "optimizer": optimizer}
    run.restore(stateful)

    global_step = run.start_step
    obs, _ = envs.reset(seed=config.seed + global_step)
    episode_stats = EpisodeStats(config.num_envs)
    # Each env's episode in progress: observations, actions, rewards.
    ongoing: list[dict[str, list]] = [{"obs": [], "actions": [], "rewards": []} for _ in range(config.num_envs)]
    finished: list[dict[str, np.ndarray]] = []  # complete episodes waiting for the next update

    while global_step < config.total_steps:
        # 1. Step all envs; move each episode that ends into `finished` with its reward-to-go.
        actions, _ = agent.sample(obs)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        episode_stats.update(rewards, terminated | truncated)
        final_obs = true_next_obs(next_obs, infos)
        for i, episode in enumerate(ongoing):
            episode["obs"].append(obs[i])
            episode["actions"].append(actions[i])
            episode["rewards"].append(rewards[i])
            if terminated[i] or truncated[i]:
                tail = 0.0
                if truncated[i] and not terminated[i] and config.baseline:
                    with torch.no_grad():
                        tail = agent.value(torch.as_tensor(final_obs[i : i + 1], device=device)).item()
                returns = discounted_returns(np.array(episode["rewards"]), config.gamma, final_value=tail)
                finished.append({"obs": np.array(episode["obs"]), "actions": np.array(episode["actions"]),
                                 "returns": returns})  # fmt: skip
                ongoing[i] = {"obs": [], "actions": [], "rewards": []}
        obs = next_obs
        global_step += config.num_envs
        if len(finished) < config.episodes_per_update:
            continue

        # 2. One policy-gradient step on every finished episode's steps.
        batch_obs = torch.as_tensor(np.concatenate([e["obs"] for e in finished]), device=device)
        batch_actions = torch.as_tensor(np.concatenate([e["actions"] for e in finished]), device=device)
        batch_returns = torch.as_tensor(np.concatenate([e["returns"] for e in finished]), dtype=torch.float32,
                                        device=device)  # fmt: skip
        values = agent.value(batch_obs) if config.baseline else None
        advantages = batch_returns - values.detach() if values is not None else batch_returns
        if config.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        logprobs, entropy = agent.head.log_prob_entropy(agent.policy_output(batch_obs), batch_actions)
        loss, diagnostics = reinforce_loss(logprobs, advantages, entropy, config.ent_coef, values, batch_returns,
                                           config.vf_coef)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
        optimizer.step()
        finished = []

        # 3. Log, checkpoint, and let benchmark hooks evaluate.
        run.log(
            global_step,
            {
                **{name: value.item() for name, value in diagnostics.items()},
                "loss": loss.item(),
                **episode_stats.pop(),
            },
        )
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
