"""Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347) with GAE (arXiv 1506.02438).

    for iteration = 1, 2, ...
        run the policy pi_old in N envs for T steps                          -> rollout (N*T transitions)
        A_t = GAE(gamma, lambda) over the rollout; R_t = A_t + V(s_t)        -> kit.buffers.compute_gae
        for epoch = 1..K, for each minibatch:
            ratio   = pi(a|s) / pi_old(a|s)
            L_clip  = mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))
            L_value = mean((V(s) - R)^2)            (optionally clipped around the old values)
            loss    = -L_clip + c_v * L_value - c_e * entropy
            one gradient step on loss (gradient norm clipped)

Discrete actions use a categorical policy, continuous ones a diagonal Gaussian with a learned log-std, MultiDiscrete
and MultiBinary ones independent categoricals and coins (kit/nets.py). Images go through a Nature CNN that actor and
critic share; an env that says which actions it allows (info["action_mask"], env.action_masks()) has the masked
ones at probability 0 in the rollout and in the loss (docs/environments.md). Atari games can be stepped by
EnvPool instead of Gymnasium's Python wrappers (`envpool = true`, kit/atari.py).
Observation normalisation lives inside the agent (its statistics are saved with the weights); reward scaling
divides rewards by the running std of the discounted return and is saved in the checkpoint.

Under torchrun each rank steps num_envs / N of the envs (seeded by their global index) and holds their share of
every minibatch; advantages and normalisation statistics are taken over all ranks and gradients summed
(kit/distributed.py), so N processes take the steps one process would.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit import distributed
from plainrl.kit.atari import EnvPoolAtari, envpool_task
from plainrl.kit.buffers import RolloutBuffer, compute_gae, next_state_values
from plainrl.kit.config import EnvConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env, vector_mask_reader
from plainrl.kit.nets import ActorCritic
from plainrl.kit.normalize import RewardScaler, standardize
from plainrl.kit.run import Run, set_up_torch
from plainrl.kit.spaces import auto_device

# Vectors (Discrete, MultiDiscrete and MultiBinary come one-hot: kit/envs.py), images (a Nature CNN) and Dicts.
OBSERVATION_SPACES = ("Box", "Image", "Dict")
ACTION_SPACES = ("Discrete", "Box", "MultiDiscrete", "MultiBinary")
MASKS_ACTIONS = True  # info["action_mask"] / env.action_masks(): masked actions get probability 0


@dataclass
class Config(EnvConfig):
    num_envs: int = 8
    num_steps: int = 128  # steps per env per rollout: a batch is num_envs * num_steps transitions
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True  # decay the learning rate linearly to 0 over total_steps
    gamma: float = 0.99
    gae_lambda: float = 0.95
    # 10 epochs of 16 minibatches (64 transitions at the defaults, SB3's batch_size) rather than 4 x 4: on SB3's own
    # identity tasks at its test budget (benchmarks/small_env_defaults.py, 3000 steps, seeds 0-2) a Box action went
    # 55.7/57.0/54.9 -> 100/100/100, MultiBinary 26.4/18.5/25.5 -> 100/94.3/100; CartPole without its preset at
    # 30k steps 212/172/248 -> 500/417/500 (224/462/492 on a re-run with today's float rounding), in 40 s instead
    # of 11 (SB3: 500/500/500 in 102). Presets set both.
    num_minibatches: int = 16
    update_epochs: int = 10
    norm_adv: bool = True  # normalise advantages within each minibatch
    clip_coef: float = 0.2
    anneal_clip: bool = False  # decay clip_coef linearly to 0 as well (rl-baselines3-zoo's lin_0.2)
    clip_vloss: bool = False  # clip the value update around the old values
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float = 0.0  # > 0: stop the epochs of an update early once approx-KL exceeds it
    normalize_obs: bool = False
    normalize_reward: bool = False
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    async_envs: bool = False  # step the envs in subprocesses (worth it only for slow envs)
    envpool: bool = False  # Atari: step the games in EnvPool's C++ threads (pip install 'plainrl[envpool]')

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "num_steps", "update_epochs"),
                       positive=("learning_rate", "clip_coef", "max_grad_norm"), discount=("gamma",),
                       fraction=("gae_lambda",), non_negative=("ent_coef", "vf_coef"))  # fmt: skip
        batch = self.num_envs * self.num_steps
        require(
            1 <= self.num_minibatches <= batch,
            f"num_minibatches = {self.num_minibatches} must be in [1, num_envs * num_steps = {batch}]",
        )
        require(self.target_kl >= 0, f"target_kl = {self.target_kl} must be >= 0 (0 turns it off)")
        if self.envpool:
            envpool_task(self.env)  # an Atari id EnvPool has, or one line saying which are
            require(not self.async_envs, "envpool = true steps the games in threads: set async_envs = false")
            require(importlib.util.find_spec("envpool") is not None, "envpool = true: pip install 'plainrl[envpool]'")


PRESETS: dict[str, dict[str, Any]] = {
    # Few envs and short rollouts with many epochs: learns CartPole in few steps and little wall-clock.
    "CartPole-v1": dict(
        total_steps=100_000, num_envs=8, num_steps=32, num_minibatches=2, update_epochs=10,
        learning_rate=1.5e-3, gamma=0.99, gae_lambda=0.9, anneal_clip=True, vf_coef=1.0,
    ),
    "Acrobot-v1": dict(
        total_steps=500_000, num_envs=16, num_steps=256, num_minibatches=8, update_epochs=4,
        gamma=0.99, gae_lambda=0.94, normalize_obs=True, learning_rate=3e-4,
    ),
    "LunarLander-v3": dict(
        total_steps=1_000_000, num_envs=16, num_steps=512, num_minibatches=16, update_epochs=4,
        gamma=0.999, gae_lambda=0.98, ent_coef=0.01, learning_rate=3e-4,
    ),
    # The zoo's Pendulum setting minus gSDE; the entropy bonus keeps the Gaussian's std from collapsing
    # (without it seed 1 ended at -653.8, its std shrinking while the return fell back from -430 to -680).
    # Atari (kit/atari.py: the DQN paper's preprocessing, 4 stacked 84 x 84 frames): rl-baselines3-zoo's setting
    # with its CnnPolicy's shape (the Nature CNN shared by actor and critic, one linear layer each on top), the
    # learning rate and clip range annealed linearly to 0 over 2M env steps (8M frames) instead of its 10M.
    **{game: dict(
        total_steps=2_000_000, num_envs=8, num_steps=128, num_minibatches=4, update_epochs=4, learning_rate=2.5e-4,
        clip_coef=0.1, anneal_clip=True, ent_coef=0.01, vf_coef=0.5, hidden_sizes=(), checkpoint_every=100_000,
    ) for game in ("ALE/Pong-v5", "ALE/Breakout-v5")},
    "Pendulum-v1": dict(
        total_steps=300_000, num_envs=4, num_steps=1024, num_minibatches=16, update_epochs=10,
        gamma=0.9, gae_lambda=0.95, learning_rate=1e-3, normalize_obs=True, normalize_reward=True, ent_coef=0.01,
    ),
}  # fmt: skip


SHARDED_BATCH = "num_envs"  # under torchrun each rank steps num_envs / N of the envs (kit/distributed.py)


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    return ActorCritic(observation_space, action_space, config.hidden_sizes, config.activation, config.normalize_obs)


def ppo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float,
    clip_vloss: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped-surrogate PPO loss on one minibatch (all inputs are (B,)); returns (loss, diagnostics)."""
    logratio = new_logprobs - old_logprobs
    ratio = logratio.exp()
    # Pessimistic bound: the max of the two negated surrogates = -min(ratio * A, clip(ratio) * A).
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    if clip_vloss:
        clipped_values = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
        value_loss = torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2).mean()
    else:
        value_loss = ((new_values - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    with torch.no_grad():
        diagnostics = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_mean.detach(),
            "approx_kl": ((ratio - 1) - logratio).mean(),  # Schulman's low-variance KL(old || new) estimator
            "clip_fraction": ((ratio - 1).abs() > clip_coef).float().mean(),
        }
    return loss, diagnostics


def train(config: Config, run: Run) -> ActorCritic:
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    env_shard = world.shard(config.num_envs, "num_envs")  # this rank's envs: seeds seed + their global index
    T, N = config.num_steps, env_shard.stop - env_shard.start
    if config.envpool:
        envs: gym.vector.VectorEnv = EnvPoolAtari(config.env, N, config.seed + env_shard.start)
    else:
        envs = make_vec_env(config.env, N, config.seed + env_shard.start, asynchronous=config.async_envs)
    # Seeds Python, numpy and torch; CPU threads; the device (auto: a GPU for images, else the CPU).
    device = set_up_torch(config, auto_device(envs.single_observation_space, config.AUTO_DEVICE))
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)
    reward_scaler = RewardScaler(N, config.gamma) if config.normalize_reward else None

    batch_size = T * N  # this rank's part of the T * num_envs transitions of a rollout
    minibatch_size = batch_size // config.num_minibatches
    num_iterations = math.ceil(config.total_steps / (T * config.num_envs))
    stateful = {"agent": agent, "optimizer": optimizer, "reward_scaler": reward_scaler}  # what a checkpoint holds
    run.restore(stateful)
    global_step = run.start_step

    obs_shape: tuple[int, ...] = envs.single_observation_space.shape or ()
    action_shape: tuple[int, ...] = envs.single_action_space.shape or ()
    # A resumed run reseeds its envs from the step it resumes at (env internals are not checkpointed).
    obs, reset_infos = envs.reset(seed=config.seed + env_shard.start + global_step)
    read_masks = vector_mask_reader(envs, reset_infos)  # the actions the envs allow, if they say (else None)
    rollout = RolloutBuffer(T, N, envs.single_observation_space, envs.single_action_space, read_masks)
    rollout.start(reset_infos)
    episode_stats = EpisodeStats(N)

    def policy(obs: np.ndarray, masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return agent.sample(obs, masks, env_shard)  # this rank's envs' actions and their log-probs

    for iteration in range(global_step // (T * config.num_envs), num_iterations):
        progress_left = 1.0 - iteration / num_iterations
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = progress_left * config.learning_rate
        clip_coef = config.clip_coef * progress_left if config.anneal_clip else config.clip_coef

        # 1. Collect a rollout with the current policy.
        obs = rollout.collect(envs, obs, policy, episode_stats, reward_scaler)
        global_step += T * config.num_envs

        # 2. Advantages. The policy has not changed during the rollout, so values are computed in one batch.
        data = rollout.tensors(device)
        with torch.no_grad():
            values = agent.value(data["obs"])
            next_values = next_state_values(agent.value, values, data["next_obs"], data["episode_ends"])
            advantages, returns = compute_gae(
                data["rewards"], values, next_values, data["terminated"], data["episode_ends"],
                config.gamma, config.gae_lambda,
            )  # fmt: skip

        # 3. Several epochs of minibatch updates on the flattened rollout.
        b_obs = data["obs"].reshape(batch_size, *obs_shape)
        b_actions = data["actions"].reshape(batch_size, *action_shape)
        b_masks = data["masks"].reshape(batch_size, -1) if "masks" in data else None  # the actions allowed
        b_logprobs, b_values = data["logprobs"].reshape(-1), values.reshape(-1)
        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
        for _epoch in range(config.update_epochs):
            order = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = order[start : start + minibatch_size]
                mb_masks = None if b_masks is None else b_masks[mb]  # masked actions: probability 0, as in the rollout
                output, new_values = agent.policy_output_and_value(b_obs[mb], mb_masks)
                new_logprobs, entropy = agent.head.log_prob_entropy(output, b_actions[mb])
                mb_advantages = b_advantages[mb]
                if config.norm_adv and len(mb) * world.size > 1:
                    mb_advantages = standardize(mb_advantages)  # over the minibatch's rows on all ranks
                loss, diagnostics = ppo_loss(
                    new_logprobs=new_logprobs,
                    old_logprobs=b_logprobs[mb],
                    advantages=mb_advantages,
                    new_values=new_values,
                    old_values=b_values[mb],
                    returns=b_returns[mb],
                    entropy=entropy,
                    clip_coef=clip_coef,
                    clip_vloss=config.clip_vloss,
                    vf_coef=config.vf_coef,
                    ent_coef=config.ent_coef,
                )
                optimizer.zero_grad(set_to_none=True)
                (loss / world.size).backward()  # a rank's share: ranks hold equal parts of the minibatch
                world.sync_gradients(agent.parameters())  # summed over ranks: the whole minibatch's gradient
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm, foreach=True)
                optimizer.step()
            approx_kl = world.sum(diagnostics["approx_kl"]) / world.size  # every rank stops together
            if config.target_kl and approx_kl > config.target_kl:
                break
        agent.update_obs_statistics(b_obs)  # statistics move only between updates

        # 4. Log, checkpoint, and let benchmark hooks evaluate.
        explained_var = 1 - (b_returns - b_values).var() / b_returns.var().clamp_min(1e-8)
        run.log(
            global_step,
            {
                **{name: value.item() for name, value in diagnostics.items()},
                "loss": loss.item(),
                "explained_variance": float(explained_var),
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
