"""Monte Carlo: learn values as the mean of sampled returns, from complete episodes, with no model and no
bootstrapping (Sutton & Barto chapter 5; Zhao chapter 5). What MC basic, MC exploring starts and MC
epsilon-greedy share.

The first example is the idea itself, estimating a mean from samples (run `python -m plainrl.tabular.mc`):

    E[X] ~ mean_k = (x_1 + ... + x_k) / k,  computed incrementally: mean_k = mean_k-1 + (x_k - mean_k-1) / k

The law of large numbers makes mean_k converge to E[X]; its error shrinks like std(X) / sqrt(k). Monte Carlo
control does the same with q(s, a) = E[G | s, a]: average the returns G that followed (s, a).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plainrl.kit.config import require
from plainrl.tabular.tables import EpisodeLoop, ModelFreeConfig


def mc_mean(samples: np.ndarray) -> np.ndarray:
    """The running estimates mean_1, ..., mean_n of E[X] from samples x_1, ..., x_n, one sample at a time."""
    estimates = np.zeros(len(samples))
    mean = 0.0
    for k, x in enumerate(samples, start=1):
        mean += (x - mean) / k
        estimates[k - 1] = mean
    return estimates


@dataclass
class MCConfig(ModelFreeConfig):
    first_visit: bool = True  # average only the return after the first visit to (s, a) in an episode (else every)
    # 0: q(s, a) is the mean of all its returns (the textbooks' algorithms). Above 0: constant-step MC,
    # q(s, a) += step_size * (G - q(s, a)) (Sutton & Barto 6.1), which forgets the returns of earlier, worse
    # policies geometrically instead of keeping them in the mean forever.
    step_size: float = 0.0

    def validate(self) -> None:
        super().validate()
        require(0 <= self.step_size <= 1, f"step_size = {self.step_size} must be in [0, 1]")


RETURN_TABLES = ("returns_sum", "returns_count")


@dataclass
class Episode:
    steps: list[tuple[int, int, float]]  # (S_t, A_t, R_t+1) for t = 0, 1, ..., T-1
    # Where a time limit cut the episode, the agent could have gone on: the value it would still have collected,
    # Q(S_T, A_T) with A_T from the policy, completes every return (a cut continuing task would otherwise bias
    # every return low). Where the episode terminated, nothing follows: 0.
    tail: float = 0.0


def play_episode(loop: EpisodeLoop, state: int, action: int, policy: Callable[[int], int]) -> Episode:
    """Take `action` in `state` (where the episode has just begun), then follow `policy` to the episode's end."""
    episode = Episode(steps=[])
    done = False
    while not done:
        next_state, reward, terminated, truncated = loop.step(action)
        episode.steps.append((state, action, reward))
        state, done = next_state, terminated or truncated
        if truncated:
            episode.tail = float(loop.q[state, policy(state)])
        elif not done:
            action = policy(state)
    return episode


def returns(episode: Episode, gamma: float) -> np.ndarray:
    """G_t = R_t+1 + gamma * G_t+1 for every t, computed backward from G_T = the episode's tail."""
    G = np.zeros(len(episode.steps))
    later = episode.tail
    for t in reversed(range(len(episode.steps))):
        later = G[t] = episode.steps[t][2] + gamma * later
    return G


def returns_to_average(episode: Episode, gamma: float, first_visit: bool) -> list[tuple[int, int, float]]:
    """(S_t, A_t, G_t) for the visits whose return the estimate of q(S_t, A_t) averages: first-visit keeps only
    the earliest visit to each (s, a) in the episode, every-visit keeps them all."""
    seen: set[tuple[int, int]] = set()
    visits = []
    for (state, action, _), G in zip(episode.steps, returns(episode, gamma), strict=True):
        if first_visit and (state, action) in seen:
            continue
        seen.add((state, action))
        visits.append((state, action, float(G)))
    return visits


def average_returns(loop: EpisodeLoop, episode: Episode, config: MCConfig) -> None:
    """q(s, a) = the mean of the returns averaged for (s, a) so far, kept as a sum and a count: the loop's
    tables RETURN_TABLES."""
    returns_sum, returns_count = loop.tables["returns_sum"], loop.tables["returns_count"]
    for state, action, G in returns_to_average(episode, config.gamma, config.first_visit):
        returns_sum[state, action] += G
        returns_count[state, action] += 1
        if config.step_size > 0:
            loop.q[state, action] += config.step_size * (G - loop.q[state, action])
        else:
            loop.q[state, action] = returns_sum[state, action] / returns_count[state, action]


if __name__ == "__main__":
    # X is 1 with probability 0.3 and -1 otherwise: E[X] = 0.3 - 0.7 = -0.4, std(X) = 0.92.
    rng = np.random.default_rng(0)
    x = np.where(rng.random(100_000) < 0.3, 1.0, -1.0)
    estimates = mc_mean(x)
    for k in (10, 100, 1_000, 10_000, 100_000):
        print(f"after {k:>7} samples: mean = {estimates[k - 1]:+.4f}   (E[X] = -0.4, error ~ {0.92 / k**0.5:.4f})")
