"""Temporal-difference control: what SARSA, expected SARSA, n-step SARSA and Q-learning share.

Each moves Q(S, A) a step of size alpha toward a target built from one transition and the current table
(Sutton & Barto chapters 6 and 7; Zhao chapter 7):

    Q(S, A) <- Q(S, A) + alpha * (target - Q(S, A))

    SARSA           target = R + gamma * Q(S', A')                  A' the action the policy takes next
    expected SARSA  target = R + gamma * sum_a pi(a|S') Q(S', a)    the mean over the policy instead
    n-step SARSA    target = R_1 + gamma R_2 + ... + gamma^(n-1) R_n + gamma^n Q(S_n, A_n)
    Q-learning      target = R + gamma * max_a Q(S', a)             the greedy policy's value: off-policy

When the episode terminates at S' nothing follows and the target is just the rewards. When it is truncated
(a time limit) the agent could have gone on, so the target still bootstraps from S'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plainrl.kit.config import require
from plainrl.tabular.tables import EpsilonGreedyConfig


@dataclass
class TDConfig(EpsilonGreedyConfig):
    """The step size alpha follows the same schedule as epsilon (alpha_end None: a constant alpha). A constant
    step keeps Q noisy where targets vary; one that shrinks lets Q settle (Robbins-Monro conditions)."""

    alpha: float = 0.1
    alpha_end: float | None = None

    def validate(self) -> None:
        super().validate()
        for name in ("alpha", "alpha_end"):
            value = getattr(self, name)
            require(value is None or 0 < value <= 1, f"{name} = {value} must be in (0, 1]")

    def alpha_at(self, step: int) -> float:
        return self.schedule(self.alpha, self.alpha_end, step)


PRESETS: dict[str, dict[str, Any]] = {
    # Episodes start in a random free cell and are cut at 20 steps, so every cell is a start often. Q starts
    # at 10 = r_target / (1 - gamma), above every true value: greedy choices then try each action in turn
    # ("optimistic initial values", Sutton & Barto 2.6), which epsilon-greedy alone, with the target ringed by
    # forbidden cells, does too rarely. Epsilon decays to 0 so that on-policy methods learn the optimal policy.
    "plainrl/GridWorld-v0": dict(
        gamma=0.9, total_steps=30_000, max_episode_steps=20, alpha=0.1, epsilon=0.1, epsilon_end=0.0, initial_q=10.0
    ),
    # Sutton & Barto's example 6.6 (alpha 0.5, epsilon 0.1 throughout), discounted slightly so that DP can
    # compare; alpha then shrinks to 0.05 so that Q, and the greedy path drawn in values.png, settle.
    "CliffWalking-v1": dict(gamma=0.99, total_steps=20_000, alpha=0.5, alpha_end=0.05, epsilon=0.1),
    "FrozenLake-v1": dict(
        gamma=0.99, total_steps=300_000, alpha=0.05, epsilon=1.0, epsilon_end=0.05, decay_fraction=0.5
    ),
    "Taxi-v4": dict(gamma=0.99, total_steps=200_000, alpha=0.5, epsilon=0.1),
}
