"""Expected SARSA (van Seijen et al. 2009; Sutton & Barto 6.6; Zhao 7.3): SARSA with an expected target.

The target averages over the policy's next action instead of sampling it, which removes that sampling's
variance.

    Q = 0
    for each episode:
        S = reset()
        until the episode ends:
            A = epsilon-greedy(Q, S)
            R, S' = step(A)
            Q(S, A) += alpha * (R + gamma * sum_a pi(a|S') Q(S', a) - Q(S, A))   (just R if S' is terminal)
            S = S'

pi is the epsilon-greedy policy: epsilon / |A| on every action plus 1 - epsilon on the greedy ones.
"""

from __future__ import annotations

import numpy as np

from plainrl.kit.run import Run
from plainrl.tabular import td
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import (
    ACTION_SPACES,
    OBSERVATION_SPACES,
    EpisodeLoop,
    QTableAgent,
    build_agent,
    epsilon_greedy_probabilities,
)
from plainrl.tabular.tables import epsilon_greedy as choose

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

Config = td.TDConfig
PRESETS = td.PRESETS


def expected_sarsa_target(reward: float, next_q: np.ndarray, epsilon: float, terminated: bool, gamma: float) -> float:
    """R + gamma * sum_a pi(a|S') Q(S', a), next_q = Q(S', .), pi epsilon-greedy; just R when S' is terminal."""
    expected_next = epsilon_greedy_probabilities(next_q, epsilon) @ next_q
    return reward if terminated else reward + gamma * expected_next


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run)
    q = loop.q
    while loop.running():
        state = loop.reset()
        done = False
        while not done:
            action = choose(q[state], loop.epsilon, loop.rng)
            next_state, reward, terminated, truncated = loop.step(action)
            target = expected_sarsa_target(reward, q[next_state], loop.epsilon, terminated, config.gamma)
            q[state, action] += loop.alpha * (target - q[state, action])
            state = next_state
            done = terminated or truncated
    return loop.finish()
