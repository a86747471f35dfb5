"""Trust Region Policy Optimization (Schulman et al. 2015, arXiv 1502.05477) with GAE (arXiv 1506.02438).

    for iteration = 1, 2, ...
        run the policy pi_old in N envs for T steps                           -> rollout
        A_t = GAE(gamma, lambda) over the rollout; R_t = A_t + V(s_t)         -> kit.buffers.compute_gae
        L(theta) = mean(pi_theta(a|s) / pi_old(a|s) * A)                      (the surrogate advantage)
        g = grad L;  x = F^-1 g by conjugate gradient, with Fisher-vector products F v = grad((grad KL) . v)
        full step = sqrt(2 delta / (x . F x)) x                               (the step with KL ~= delta)
        backtracking line search: try theta + 0.5^k * full step, k = 0, 1, ...; accept the first whose
            mean KL(pi_old || pi_new) <= delta and whose surrogate improves; none: keep theta
        fit V separately: value_epochs of minibatch Adam steps on mean((V(s) - R)^2)

The actor and the critic are kit.nets.ActorCritic, the rollout kit.buffers.RolloutBuffer, as in PPO.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch.distributions import Categorical, Distribution, Normal, kl_divergence
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from plainrl.kit.buffers import RolloutBuffer, compute_gae, next_state_values
from plainrl.kit.config import EnvConfig, require, require_ranges
from plainrl.kit.envs import EpisodeStats, make_vec_env
from plainrl.kit.nets import ActorCritic, CategoricalHead, DiagGaussianHead
from plainrl.kit.normalize import RewardScaler
from plainrl.kit.run import Run, set_up_torch

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Discrete", "Box")


@dataclass
class Config(EnvConfig):
    num_envs: int = 8
    num_steps: int = 256  # steps per env per rollout
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_kl: float = 0.01  # delta, the trust region's radius in mean KL
    cg_iterations: int = 10
    cg_damping: float = 0.1  # F + damping * I keeps the conjugate-gradient solve well conditioned
    max_backtracks: int = 10
    value_learning_rate: float = 1e-3
    value_epochs: int = 10
    value_minibatches: int = 8
    normalize_obs: bool = False
    normalize_reward: bool = False
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def validate(self) -> None:
        super().validate()
        require_ranges(self,
                       at_least_one=("num_envs", "num_steps", "cg_iterations", "max_backtracks", "value_epochs"),
                       discount=("gamma",), fraction=("gae_lambda",),
                       positive=("max_kl", "value_learning_rate"), non_negative=("cg_damping",))  # fmt: skip
        batch = self.num_envs * self.num_steps
        require(
            1 <= self.value_minibatches <= batch,
            f"value_minibatches = {self.value_minibatches} must be in [1, num_envs * num_steps = {batch}]",
        )
        require(len(self.hidden_sizes) >= 1, "hidden_sizes must name at least one layer, e.g. [64, 64]")


PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(total_steps=100_000, num_envs=8, num_steps=64, gamma=0.98, gae_lambda=0.8),
    # rl-baselines3-zoo's Pendulum setting: short horizon (gamma 0.9), 20 critic epochs, lr 1e-3.
    "Pendulum-v1": dict(
        total_steps=200_000, num_envs=2, num_steps=1024, gamma=0.9, gae_lambda=0.95, max_kl=0.01, cg_iterations=15,
        value_epochs=20, value_minibatches=16, normalize_obs=True, normalize_reward=True,
    ),
    "MountainCarContinuous-v0": dict(total_steps=200_000, num_envs=4, num_steps=512, normalize_obs=True),
    "HalfCheetah-v5": dict(total_steps=1_000_000, num_envs=1, num_steps=1024, normalize_obs=True),
    "Hopper-v5": dict(total_steps=1_000_000, num_envs=1, num_steps=1024, normalize_obs=True),
}  # fmt: skip


def build_agent(config: Config, observation_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    return ActorCritic(observation_space, action_space, config.hidden_sizes, config.activation, config.normalize_obs)


def conjugate_gradient(
    matrix_vector: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iterations: int, tolerance: float = 1e-10
) -> torch.Tensor:
    """Solve A x = b for a symmetric positive-definite A known only through v -> A v (Nocedal & Wright alg. 5.2)."""
    x = torch.zeros_like(b)
    residual = b.clone()  # r = b - A x with x = 0
    direction = b.clone()
    residual_norm = residual @ residual
    for _ in range(iterations):
        a_direction = matrix_vector(direction)
        alpha = residual_norm / (direction @ a_direction)
        x += alpha * direction
        residual -= alpha * a_direction
        new_residual_norm = residual @ residual
        if new_residual_norm < tolerance:
            break
        direction = residual + (new_residual_norm / residual_norm) * direction
        residual_norm = new_residual_norm
    return x


def line_search(
    evaluate: Callable[[torch.Tensor], tuple[float, float]], full_step: torch.Tensor, max_kl: float, max_backtracks: int
) -> torch.Tensor | None:
    """The first of full_step * 0.5^k (k = 0, 1, ...) whose (surrogate improvement, mean KL) = evaluate(step)
    has KL <= max_kl and a positive improvement; None when no fraction qualifies (then take no step)."""
    for k in range(max_backtracks):
        step = full_step * 0.5**k
        improvement, kl = evaluate(step)
        if kl <= max_kl and improvement > 0:
            return step
    return None


def policy_distribution(agent: ActorCritic, obs: torch.Tensor) -> Distribution:
    output = agent.policy_output(obs)
    if isinstance(agent.head, CategoricalHead):
        return Categorical(logits=output)
    assert isinstance(agent.head, DiagGaussianHead)  # ACTION_SPACES: Discrete or Box
    return Normal(output, agent.head.log_std.exp())


def mean_kl(old: Distribution, new: Distribution) -> torch.Tensor:
    """Mean over states of KL(pi_old(.|s) || pi_new(.|s)), summed over independent action dimensions."""
    kl = kl_divergence(old, new)
    return (kl.sum(-1) if isinstance(old, Normal) else kl).mean()


def trpo_policy_step(
    agent: ActorCritic,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    config: Config,
) -> dict[str, float]:
    """One trust-region update of the policy's parameters in place; returns diagnostics."""
    policy_params = [*agent.actor.parameters(), *agent.head.parameters()]
    with torch.no_grad():
        old_distribution = policy_distribution(agent, obs)

    def surrogate() -> torch.Tensor:
        new_logprobs = agent.head.log_prob(agent.policy_output(obs), actions)
        return ((new_logprobs - old_logprobs).exp() * advantages).mean()

    # g = grad L, then x = F^-1 g by conjugate gradient with Fisher-vector products.
    surrogate_before = surrogate()
    gradient = parameters_to_vector(torch.autograd.grad(surrogate_before, policy_params))
    kl = mean_kl(old_distribution, policy_distribution(agent, obs))
    kl_gradient = parameters_to_vector(torch.autograd.grad(kl, policy_params, create_graph=True))

    def fisher_vector_product(v: torch.Tensor) -> torch.Tensor:
        hessian_v = torch.autograd.grad(kl_gradient @ v, policy_params, retain_graph=True)
        return parameters_to_vector(hessian_v) + config.cg_damping * v

    direction = conjugate_gradient(fisher_vector_product, gradient.detach(), config.cg_iterations)
    x_f_x = float(direction @ fisher_vector_product(direction))
    full_step = math.sqrt(2 * config.max_kl / max(x_f_x, 1e-12)) * direction

    # Backtracking line search: the KL bound and an improvement check.
    old_params = parameters_to_vector(policy_params).detach()

    @torch.no_grad()
    def evaluate_step(step: torch.Tensor) -> tuple[float, float]:
        vector_to_parameters(old_params + step, policy_params)
        improvement = float(surrogate() - surrogate_before)
        return improvement, float(mean_kl(old_distribution, policy_distribution(agent, obs)))

    accepted = line_search(evaluate_step, full_step, config.max_kl, config.max_backtracks)
    with torch.no_grad():
        vector_to_parameters(old_params + (accepted if accepted is not None else 0.0), policy_params)
        final_kl = float(mean_kl(old_distribution, policy_distribution(agent, obs)))
    step_fraction = 0.0 if accepted is None else float(accepted.norm() / full_step.norm())
    return {"surrogate": surrogate_before.item(), "kl": final_kl, "step_fraction": step_fraction}


def train(config: Config, run: Run) -> ActorCritic:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    envs = make_vec_env(config.env, config.num_envs, config.seed)
    agent = build_agent(config, envs.single_observation_space, envs.single_action_space).to(device)
    value_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=config.value_learning_rate, fused=True)
    reward_scaler = RewardScaler(config.num_envs, config.gamma) if config.normalize_reward else None

    T, N = config.num_steps, config.num_envs
    batch_size = T * N
    minibatch_size = batch_size // config.value_minibatches
    num_iterations = math.ceil(config.total_steps / batch_size)
    stateful = {"agent": agent, "value_optimizer": value_optimizer, "reward_scaler": reward_scaler}
    run.restore(stateful)
    global_step = run.start_step

    rollout = RolloutBuffer(T, N, envs.single_observation_space, envs.single_action_space)
    obs_shape: tuple[int, ...] = envs.single_observation_space.shape or ()
    action_shape: tuple[int, ...] = envs.single_action_space.shape or ()
    obs, _ = envs.reset(seed=config.seed + global_step)  # a resumed run reseeds from the step it resumes at
    episode_stats = EpisodeStats(N)

    for _iteration in range(global_step // batch_size, num_iterations):
        # 1. Collect a rollout with the current policy; advantages by GAE.
        obs = rollout.collect(envs, obs, agent.sample, episode_stats, reward_scaler)
        global_step += batch_size
        data = rollout.tensors(device)
        with torch.no_grad():
            values = agent.value(data["obs"])
            next_values = next_state_values(agent.value, values, data["next_obs"], data["episode_ends"])
            advantages, returns = compute_gae(
                data["rewards"], values, next_values, data["terminated"], data["episode_ends"],
                config.gamma, config.gae_lambda,
            )  # fmt: skip
        b_obs = data["obs"].reshape(batch_size, *obs_shape)
        b_actions = data["actions"].reshape(batch_size, *action_shape)
        b_old_logprobs, b_returns = data["logprobs"].reshape(-1), returns.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        # 2-3. The natural-gradient step, shortened by the line search until it satisfies the trust region.
        policy_metrics = trpo_policy_step(agent, b_obs, b_actions, b_old_logprobs, b_advantages, config)

        # 4. Fit the value function separately, by minibatch regression on the returns.
        for _epoch in range(config.value_epochs):
            order = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = order[start : start + minibatch_size]
                value_loss = ((agent.value(b_obs[mb]) - b_returns[mb]) ** 2).mean()
                value_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                value_optimizer.step()
        agent.update_obs_statistics(b_obs)  # statistics move only between updates

        # 5. Log, checkpoint, and let benchmark hooks evaluate.
        run.log(
            global_step,
            {
                **policy_metrics,
                "value_loss": value_loss.item(),
                **episode_stats.pop(),
            },
        )
        run.maybe_checkpoint(global_step, stateful)
        if run.call_step_hooks(global_step, agent):
            break
    run.maybe_checkpoint(global_step, stateful, final=True)
    envs.close()
    return agent
