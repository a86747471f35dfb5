"""Advantage Actor-Critic, synchronous (A2C: Mnih et al. 2016's A3C, arXiv 1602.01783, with the asynchronous
workers replaced by N vector envs stepped in lockstep, as in OpenAI Baselines and Stable-Baselines3).

    for iteration = 1, 2, ...
        run pi in N envs for T steps (T is small: 5)                          -> rollout
        A_t = GAE(gamma, lambda) over the rollout; R_t = A_t + V(s_t)
              (lambda = 1 gives the n-step return r_t + ... + gamma^(T-t) V(s_T) minus V(s_t))
        loss = -mean(log pi(a_t|s_t) * A_t) + c_v * mean((V(s_t) - R_t)^2) - c_e * mean(entropy)
        one gradient step (RMSprop by default, as in the paper)

Unlike PPO there is no old policy and no ratio: each rollout is used for exactly one gradient step.
The policies, the shared CNN for images and action masks are PPO's (kit/nets.py, docs/environments.md).
Under torchrun each rank steps num_envs / N of the envs and gradients are summed, as in ppo.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit import distributed
from plainrl.kit.buffers import RolloutBuffer, compute_gae, next_state_values
from plainrl.kit.config import EnvConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env, vector_mask_reader
from plainrl.kit.nets import ActorCritic
from plainrl.kit.normalize import RewardScaler, standardize
from plainrl.kit.optim import RMSpropTF
from plainrl.kit.run import Run, set_up_torch
from plainrl.kit.spaces import auto_device

# Vectors (Discrete, MultiDiscrete and MultiBinary come one-hot: kit/envs.py), images (a Nature CNN) and Dicts.
OBSERVATION_SPACES = ("Box", "Image", "Dict")
ACTION_SPACES = ("Discrete", "Box", "MultiDiscrete", "MultiBinary")
MASKS_ACTIONS = True  # info["action_mask"] / env.action_masks(): masked actions get probability 0


@dataclass
class Config(EnvConfig):
    total_steps: int = 500_000
    num_envs: int = 8
    num_steps: int = 5  # steps per env per update
    learning_rate: float = 7e-4
    anneal_lr: bool = False
    optimizer: str = "rmsprop"  # rmsprop | rmsprop_tf (TensorFlow's, as the paper's Atari runs: kit/optim.py) | adam
    gamma: float = 0.99
    gae_lambda: float = 1.0  # 1.0: n-step returns; < 1: GAE
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = False
    normalize_obs: bool = False
    normalize_reward: bool = False
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "num_steps"),
                       positive=("learning_rate", "max_grad_norm"), discount=("gamma",),
                       fraction=("gae_lambda",), non_negative=("ent_coef", "vf_coef"))  # fmt: skip
        require(
            self.optimizer in ("rmsprop", "rmsprop_tf", "adam"),
            f"optimizer = {self.optimizer!r} is not rmsprop, rmsprop_tf or adam",
        )
        require(not self.norm_adv or self.num_envs * self.num_steps > 1, "norm_adv needs more than one sample")


PRESETS: dict[str, dict[str, Any]] = {
    # SB3's A2C CartPole setting (the zoo's: RMSprop, 5 steps, lr 7e-4) on 16 envs instead of 8, at lr 1.5e-3:
    # seeds 0-9 first evaluate at 475+ after a median 9k env steps (8 envs, lr 7e-4: 10k-24k); final eval.json
    # on seeds 0/1/2 is 500/500/500. docs/benchmarks.md has the settings tried.
    "CartPole-v1": dict(total_steps=100_000, num_envs=16, num_steps=5, learning_rate=1.5e-3),
    "Acrobot-v1": dict(total_steps=500_000, num_envs=16, normalize_obs=True, normalize_reward=True),
    "LunarLander-v3": dict(
        total_steps=1_000_000, num_envs=8, gamma=0.995, learning_rate=8.3e-4, anneal_lr=True, ent_coef=1e-5
    ),
    # Atari (kit/atari.py): rl-baselines3-zoo's (16 envs x 5 steps, TensorFlow-style RMSprop eps 1e-5 as its
    # RMSpropTFLike, ent 0.01, vf 0.25), CnnPolicy.
    **{game: dict(
        total_steps=10_000_000, num_envs=16, num_steps=5, ent_coef=0.01, vf_coef=0.25, hidden_sizes=(),
        optimizer="rmsprop_tf", checkpoint_every=100_000,
    ) for game in ("ALE/Pong-v5", "ALE/Breakout-v5")},
    "Pendulum-v1": dict(
        total_steps=1_000_000, num_envs=8, num_steps=8, gae_lambda=0.9, vf_coef=0.4, normalize_obs=True,
        normalize_reward=True, anneal_lr=True,
    ),
}  # fmt: skip


SHARDED_BATCH = "num_envs"  # under torchrun each rank steps num_envs / N of the envs (kit/distributed.py)


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    return ActorCritic(observation_space, action_space, config.hidden_sizes, config.activation, config.normalize_obs)


def a2c_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Policy-gradient loss with a learned baseline on one batch (all inputs (B,)); returns (loss, diagnostics).

    `advantages` and `returns` are constants: gradients flow only through log pi, V and the entropy.
    """
    policy_loss = -(logprobs * advantages).mean()
    value_loss = ((values - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    diagnostics = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy_mean}
    return loss, {name: value.detach() for name, value in diagnostics.items()}


def train(config: Config, run: Run) -> ActorCritic:
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    env_shard = world.shard(config.num_envs, "num_envs")  # this rank's envs: seeds seed + their global index
    T, N = config.num_steps, env_shard.stop - env_shard.start
    envs = make_vec_env(config.env, N, config.seed + env_shard.start)
    # Seeds Python, numpy and torch; CPU threads; the device (auto: a GPU for images, else the CPU).
    device = set_up_torch(config, auto_device(envs.single_observation_space, config.AUTO_DEVICE))
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    if config.optimizer == "rmsprop":  # alpha and eps as in the paper's and SB3's A2C
        optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
            agent.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5, foreach=True
        )
    elif config.optimizer == "rmsprop_tf":
        optimizer = RMSpropTF(agent.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5)
    else:
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
    reward_scaler = RewardScaler(N, config.gamma) if config.normalize_reward else None
    stateful = {"agent": agent, "optimizer": optimizer, "reward_scaler": reward_scaler}
    run.restore(stateful)

    batch_size = T * N  # this rank's part of the T * num_envs transitions of a rollout
    num_iterations = math.ceil(config.total_steps / (T * config.num_envs))
    log_every = max(1, 1000 // (T * config.num_envs))  # iterations are tiny: log about every 1000 env steps
    global_step = run.start_step
    # A resumed run reseeds its envs from the step it resumes at (env internals are not checkpointed).
    obs, reset_infos = envs.reset(seed=config.seed + env_shard.start + global_step)
    read_masks = vector_mask_reader(envs, reset_infos)  # the actions the envs allow, if they say (else None)
    rollout = RolloutBuffer(T, N, envs.single_observation_space, envs.single_action_space, read_masks)
    rollout.start(reset_infos)
    episode_stats = EpisodeStats(N)

    def policy(obs: np.ndarray, masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return agent.sample(obs, masks, env_shard)  # this rank's envs' actions and their log-probs

    for iteration in range(global_step // (T * config.num_envs), num_iterations):
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - iteration / num_iterations) * config.learning_rate

        # 1. A short rollout with the current policy.
        obs = rollout.collect(envs, obs, policy, episode_stats, reward_scaler)
        global_step += T * config.num_envs

        # 2. n-step returns (or GAE) bootstrapped from V of the state each step reached.
        data = rollout.tensors(device)
        # With gradients: the actor and the critic learn from this same batch (masked actions: probability 0).
        output, values = agent.policy_output_and_value(data["obs"], data.get("masks"))
        with torch.no_grad():
            next_values = next_state_values(agent.value, values.detach(), data["next_obs"], data["episode_ends"])
            advantages, returns = compute_gae(
                data["rewards"], values.detach(), next_values, data["terminated"], data["episode_ends"],
                config.gamma, config.gae_lambda,
            )  # fmt: skip
            if config.norm_adv:
                advantages = standardize(advantages)  # over all ranks' rollouts

        # 3. One gradient step on the whole rollout.
        logprobs, entropy = agent.head.log_prob_entropy(output, data["actions"])
        loss, diagnostics = a2c_loss(
            logprobs, advantages, values, returns, entropy, vf_coef=config.vf_coef, ent_coef=config.ent_coef
        )
        optimizer.zero_grad(set_to_none=True)
        (loss / world.size).backward()  # a rank's share: ranks hold equal parts of the rollout
        world.sync_gradients(agent.parameters())  # summed over ranks: the whole rollout's gradient
        nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
        optimizer.step()
        agent.update_obs_statistics(data["obs"].reshape(batch_size, -1))

        # 4. Log, checkpoint, and let benchmark hooks evaluate.
        if iteration % log_every == 0 or iteration == num_iterations - 1:
            run.log(
                global_step,
                {
                    **{name: value.item() for name, value in diagnostics.items()},
                    "loss": loss.item(),
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    **episode_stats.pop(),
                },
            )
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
