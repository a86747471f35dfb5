"""Monte Carlo epsilon-greedy (Sutton & Barto 5.4; Zhao 5.4): on-policy Monte Carlo control.

No exploring starts: the policy itself explores. It is epsilon-greedy in Q, so every action keeps being tried.

    Q = 0;  returns_sum = returns_count = 0
    for each episode:
        play S_0, A_0, R_1, ..., R_T from the env's start, with A_t = epsilon-greedy(Q, S_t)
        G = 0
        for t = T-1, ..., 0:
            G = R_t+1 + gamma * G
            unless first-visit and (S_t, A_t) occurs earlier in the episode:
                returns_sum(S_t, A_t) += G;  returns_count(S_t, A_t) += 1
                Q(S_t, A_t) = returns_sum(S_t, A_t) / returns_count(S_t, A_t)

It finds the best epsilon-greedy policy; let epsilon decay toward 0 (epsilon_end, decay_fraction)
for the greedy policy to become the optimal one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plainrl.kit.run import Run
from plainrl.tabular import mc
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import (
    ACTION_SPACES,
    OBSERVATION_SPACES,
    EpisodeLoop,
    EpsilonGreedyConfig,
    QTableAgent,
    build_agent,
    epsilon_greedy,
)

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]


@dataclass
class Config(mc.MCConfig, EpsilonGreedyConfig):
    pass


PRESETS: dict[str, dict[str, Any]] = {
    "plainrl/GridWorld-v0": dict(
        gamma=0.9, total_steps=150_000, max_episode_steps=20, epsilon=0.1, epsilon_end=0.02, step_size=0.05
    ),
    "CliffWalking-v1": dict(gamma=0.99, total_steps=50_000, max_episode_steps=100, epsilon=0.1, step_size=0.1),
    "FrozenLake-v1": dict(gamma=0.99, total_steps=300_000, max_episode_steps=100, epsilon=0.1),
    "Taxi-v4": dict(gamma=0.99, total_steps=300_000, max_episode_steps=200, epsilon=0.1, step_size=0.1),
}


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run, tables=mc.RETURN_TABLES)
    q, rng = loop.q, loop.rng
    while loop.running():
        state = loop.reset()
        policy = lambda s: epsilon_greedy(q[s], loop.epsilon, rng)  # noqa: E731
        episode = mc.play_episode(loop, state, policy(state), policy)
        mc.average_returns(loop, episode, config)
    return loop.finish()
