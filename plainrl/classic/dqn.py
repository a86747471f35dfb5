"""Deep Q-Network (Mnih et al. 2015), with Double DQN (van Hasselt et al. 2016, arXiv 1509.06461), dueling
heads (Wang et al. 2016) and n-step returns as options.

    initialise Q, target network Q' <- Q, replay buffer D
    for step = 1, 2, ...
        a = a random action with probability epsilon, else argmax_a Q(s, a)      (epsilon decays linearly)
        step the env; store (s, a, r, s', terminated, gamma) in D   (n-step: r = sum_k gamma^k r_k, s' = s_{t+n})
        every train_frequency steps, gradient_steps times:
            sample a minibatch from D
            y = r + gamma^n (1 - terminated) max_a' Q'(s', a')                      (DQN)
            y = r + gamma^n (1 - terminated) Q'(s', argmax_a' Q(s', a'))            (Double DQN)
            one gradient step on Huber(Q(s, a) - y)
        every target_update_interval steps: Q' <- tau Q + (1 - tau) Q'             (tau = 1: a hard copy)

Images go through the paper's Nature CNN and stay uint8 in the replay. An env that says which actions it allows
(info["action_mask"], env.action_masks()) is explored, acted in and bootstrapped from over those only: the replay
keeps each next state's mask, and max_a' / argmax_a' run over its allowed actions (docs/environments.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from plainrl.kit.buffers import NStepTransitions, ReplayBuffer, storage_dtype
from plainrl.kit.config import OffPolicyConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, env_rewards, final_masks, make_vec_env, true_next_obs, vector_mask_reader
from plainrl.kit.nets import QNetwork, mask_logits, polyak_update
from plainrl.kit.run import Run, set_up_torch
from plainrl.kit.spaces import auto_device

# Vectors (Discrete, MultiDiscrete and MultiBinary come one-hot: kit/envs.py), images (a Nature CNN) and Dicts.
OBSERVATION_SPACES = ("Box", "Image", "Dict")
ACTION_SPACES = ("Discrete",)
MASKS_ACTIONS = True  # info["action_mask"] / env.action_masks(): acting, exploring and targets use allowed actions


@dataclass
class Config(OffPolicyConfig):
    total_steps: int = 50_000
    num_envs: int = 1
    buffer_size: int = 100_000
    learning_starts: int = 1000  # env steps of random-policy data before the first update
    batch_size: int = 64
    train_frequency: int = 4  # env steps between training phases
    gradient_steps: int = 1  # gradient steps per training phase
    target_update_interval: int = 500  # env steps between target-network updates
    tau: float = 1.0  # 1: hard copy; < 1: Polyak averaging
    learning_rate: float = 1e-3
    anneal_lr: bool = False  # decay the learning rate linearly to 0 over total_steps: the final policy settles
    gamma: float = 0.99
    start_epsilon: float = 1.0
    end_epsilon: float = 0.05
    exploration_fraction: float = 0.1  # fraction of total_steps over which epsilon decays
    double: bool = False
    dueling: bool = False
    n_step: int = 1
    max_grad_norm: float = 10.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "relu"

    def validate(self) -> None:
        super().validate()
        require(self.target_update_interval >= 1, "target_update_interval must be >= 1")
        for name in ("start_epsilon", "end_epsilon", "exploration_fraction"):
            require(0 <= getattr(self, name) <= 1, f"{name} = {getattr(self, name)} must be in [0, 1]")
        require_ranges(self, at_least_one=("n_step",), positive=("max_grad_norm",))


PRESETS: dict[str, dict[str, Any]] = {
    # rl-baselines3-zoo's, with 3-step returns, and the learning rate lowered from 2.3e-3 to 1e-3 and annealed to 0
    # (a final policy that does not degrade after it solves). Seeds 0/1/2 first evaluate at 475+ after 28k/18k/16k
    # env steps (Double DQN 28k/18k/22k; 1-step returns: 38k/24k/32k) and end at eval.json 500/500/500 (Double
    # DQN 500/500/500). docs/benchmarks.md has the other settings tried.
    "CartPole-v1": dict(
        total_steps=50_000, learning_rate=1e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
        gamma=0.99, target_update_interval=10, train_frequency=256, gradient_steps=128,
        exploration_fraction=0.16, end_epsilon=0.04, hidden_sizes=(256, 256), anneal_lr=True, n_step=3,
    ),
    "Acrobot-v1": dict(
        total_steps=100_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
        target_update_interval=250, train_frequency=4, gradient_steps=4, exploration_fraction=0.12,
        end_epsilon=0.1, hidden_sizes=(256, 256),
    ),
    # The zoo's, for 250k steps instead of 100k, with epsilon down to 0.05 (not 0.1) and the learning rate annealed:
    # eval.json (seed 0) DQN 266.3, Double DQN 231.3; the zoo's schedule for 200k steps gave 156.0 and 106.7.
    "LunarLander-v3": dict(
        total_steps=250_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
        target_update_interval=250, train_frequency=4, gradient_steps=4, exploration_fraction=0.12,
        end_epsilon=0.05, hidden_sizes=(256, 256), anneal_lr=True,
    ),
    # Atari (kit/atari.py): rl-baselines3-zoo's (the DQN paper's Nature CNN, a 100k-frame replay kept as uint8,
    # 100k random steps first, epsilon 1 -> 0.01 over the first 10%); double = true for Double DQN.
    **{game: dict(
        total_steps=10_000_000, buffer_size=100_000, learning_rate=1e-4, batch_size=32, learning_starts=100_000,
        target_update_interval=1000, train_frequency=4, gradient_steps=1, exploration_fraction=0.1,
        end_epsilon=0.01, hidden_sizes=(), checkpoint_every=100_000,
    ) for game in ("ALE/Pong-v5", "ALE/Breakout-v5")},
    "MountainCar-v0": dict(
        total_steps=120_000, learning_rate=4e-3, batch_size=128, buffer_size=10_000, learning_starts=1000,
        gamma=0.98, target_update_interval=600, train_frequency=16, gradient_steps=8,
        exploration_fraction=0.2, end_epsilon=0.07, hidden_sizes=(256, 256),
    ),
}  # fmt: skip


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> QNetwork:
    return QNetwork(observation_space, action_space, config.hidden_sizes, config.activation, config.dueling)


def linear_epsilon(step: int, config: Config) -> float:
    decay_steps = max(1.0, config.exploration_fraction * config.total_steps)
    fraction = min(1.0, step / decay_steps)
    return config.start_epsilon + fraction * (config.end_epsilon - config.start_epsilon)


def td_targets(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = r + discount * (1 - terminated) * Q'(s', a*), (B,). next_q_* are (B, n_actions).

    DQN (next_q_online None): a* = argmax Q'(s', .), so the target network both picks and evaluates, which
    overestimates. Double DQN: a* = argmax Q(s', .) picked by the online network, evaluated by the target.
    """
    if next_q_online is None:
        next_values = next_q_target.max(-1).values
    else:
        best_actions = next_q_online.argmax(-1, keepdim=True)
        next_values = next_q_target.gather(-1, best_actions).squeeze(-1)
    return rewards + discounts * (1.0 - terminated) * next_values


def random_allowed_actions(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """One action per row of masks (N, n), uniform over the allowed (True) ones: the argmax of uniform keys."""
    return np.where(masks, rng.random(masks.shape), -1.0).argmax(-1)


def train(config: Config, run: Run) -> QNetwork:
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    # Seeds Python, numpy and torch; CPU threads; the device (auto: a GPU for images, else the CPU).
    device = set_up_torch(config, auto_device(envs.single_observation_space, config.AUTO_DEVICE))
    q_network = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    target_network = copy.deepcopy(q_network)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate, fused=True)
    obs_shape = envs.single_observation_space.shape or ()
    assert isinstance(envs.single_action_space, gym.spaces.Discrete)
    n_actions = int(envs.single_action_space.n)
    obs, infos = envs.reset(seed=config.seed + run.start_step)  # a resumed run reseeds from the step it resumes at
    read_masks = vector_mask_reader(envs, infos)  # the actions the envs allow, if they say (else None)
    masks = None if read_masks is None else read_masks(infos)  # (N, n_actions) booleans
    replay = ReplayBuffer(config.buffer_size, obs_shape, (), np.int64, seed=config.seed,
                          obs_dtype=storage_dtype(envs.single_observation_space),
                          mask_size=0 if masks is None else n_actions)  # fmt: skip
    n_step = NStepTransitions(config.n_step, config.gamma, config.num_envs)
    stateful = {"agent": q_network, "target": target_network, "optimizer": optimizer, "replay": replay}
    run.restore(stateful)
    global_step = run.start_step
    rng = np.random.default_rng(config.seed + global_step)  # exploration; reseeded from the step on resume
    episode_stats = EpisodeStats(config.num_envs)
    since_train, since_target = 0, 0
    steps_since_log = 0
    losses: list[torch.Tensor] = []
    q_means: list[torch.Tensor] = []

    while global_step < config.total_steps:
        # 1. Act epsilon-greedily and store what happened.
        epsilon = linear_epsilon(global_step, config)
        if rng.random() < epsilon:  # all envs explore together this step: one random draw, no forward pass
            if masks is None:
                actions = rng.integers(0, n_actions, size=config.num_envs)
            else:
                actions = random_allowed_actions(rng, masks)
        else:
            with torch.inference_mode():
                mask_tensor = None if masks is None else torch.as_tensor(masks, device=device)
                actions = q_network.act(torch.as_tensor(obs, device=device), mask=mask_tensor).cpu().numpy()
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        episode_ends = terminated | truncated
        episode_stats.update(env_rewards(rewards, infos), episode_ends)
        # The mask of the state each step reached: where an episode ended, the final state's, from its final info
        # (the reset state's mask is the one to act on next).
        masks = None if read_masks is None else read_masks(infos)  # the states to act on next (reset ones at ends)
        next_masks = None if masks is None else final_masks(masks, infos)
        reached = true_next_obs(next_obs, infos)
        for transition in n_step.add(obs, actions, rewards, reached, terminated, episode_ends, next_masks):
            replay.add(*(np.asarray([field]) for field in transition))
        obs = next_obs
        global_step += config.num_envs
        since_train += config.num_envs
        since_target += config.num_envs
        steps_since_log += config.num_envs

        # 2. Learn from replayed minibatches.
        if global_step >= config.learning_starts and since_train >= config.train_frequency:
            since_train = 0
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = config.learning_rate * (1 - global_step / config.total_steps)
            # No new data arrives and the target network is frozen during a phase, so all of its minibatches are
            # drawn at once and the target network scores all of their next states in one forward pass.
            G, B = config.gradient_steps, config.batch_size
            phase = {name: x.view(G, B, *x.shape[1:]) for name, x in replay.sample(G * B, device).items()}
            allowed = phase.get("next_masks")  # max and argmax over the actions allowed in s' (masking envs)
            with torch.no_grad():
                next_q_target = mask_logits(target_network(phase["next_obs"]), allowed)  # (G, B, n_actions)
            for g in range(G):
                batch = {name: x[g] for name, x in phase.items()}
                with torch.no_grad():
                    online = mask_logits(q_network(batch["next_obs"]), batch.get("next_masks"))
                    next_q_online = online if config.double else None
                    targets = td_targets(
                        batch["rewards"], batch["discounts"], batch["terminated"], next_q_target[g], next_q_online
                    )
                q_taken = q_network(batch["obs"]).gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
                loss = F.smooth_l1_loss(q_taken, targets)  # Huber: robust to large TD errors
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm, foreach=True)
                optimizer.step()
                losses.append(loss.detach())
                q_means.append(q_taken.detach().mean())
        if since_target >= config.target_update_interval:
            since_target = 0
            polyak_update(target_network, q_network, config.tau)

        # 3. Log about every 1000 env steps, checkpoint, and let benchmark hooks evaluate.
        if steps_since_log >= 1000 or global_step >= config.total_steps:
            metrics = {"epsilon": epsilon}
            if losses:
                metrics |= {"td_loss": torch.stack(losses).mean().item(), "q_mean": torch.stack(q_means).mean().item()}
            run.log(global_step, metrics | episode_stats.pop())
            steps_since_log, losses, q_means = 0, [], []
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, q_network):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return q_network
