"""n-step SARSA (Sutton & Barto 7.2; Zhao 7.5): SARSA whose target adds up n rewards before it bootstraps.

Between one-step SARSA (n = 1) and Monte Carlo (n >= the episode's length).

    Q = 0
    for each episode:
        S = reset();  A = epsilon-greedy(Q, S);  window = the last n (S, A, R), empty
        until the episode ends:
            R, S' = step(A);  append (S, A, R) to window
            A' = epsilon-greedy(Q, S')
            if window holds n steps: update its first (S, A) and drop it
            S, A = S', A'
        update the rest of the window, first to last

    update the first (S_0, A_0) of the window, k = its length:
        G = R_1 + gamma R_2 + ... + gamma^(k-1) R_k + gamma^k Q(S', A')     (no last term if S' is terminal)
        Q(S_0, A_0) += alpha * (G - Q(S_0, A_0))
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from plainrl.kit.config import require
from plainrl.kit.run import Run
from plainrl.tabular import td
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, EpisodeLoop, QTableAgent, build_agent
from plainrl.tabular.tables import epsilon_greedy as choose

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

# A return over n steps adds up n steps of exploration's noise: smaller steps than one-step SARSA's.
PRESETS = {env: {**preset, "alpha": preset["alpha"] / 3} for env, preset in td.PRESETS.items()}


@dataclass
class Config(td.TDConfig):
    n: int = 3  # rewards in each target

    def validate(self) -> None:
        super().validate()
        require(self.n >= 1, f"n = {self.n} must be >= 1")


def n_step_return(rewards: list[float], bootstrap: float, gamma: float) -> float:
    """R_1 + gamma R_2 + ... + gamma^(k-1) R_k + gamma^k * bootstrap, for the k rewards given."""
    return sum(gamma**i * reward for i, reward in enumerate(rewards)) + gamma ** len(rewards) * bootstrap


def update_first(
    q: np.ndarray, window: deque[tuple[int, int, float]], bootstrap: float, alpha: float, gamma: float
) -> None:
    """Move Q of the window's first (state, action) toward its return over the window, then drop it."""
    G = n_step_return([reward for _, _, reward in window], bootstrap, gamma)
    state, action, _ = window.popleft()
    q[state, action] += alpha * (G - q[state, action])


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run)
    q = loop.q
    while loop.running():
        state = loop.reset()
        action = choose(q[state], loop.epsilon, loop.rng)
        window: deque[tuple[int, int, float]] = deque()
        done = False
        while not done:
            next_state, reward, terminated, truncated = loop.step(action)
            window.append((state, action, reward))
            next_action = choose(q[next_state], loop.epsilon, loop.rng)
            bootstrap = 0.0 if terminated else q[next_state, next_action]  # the value after the window
            done = terminated or truncated
            if done:
                while window:
                    update_first(q, window, bootstrap, loop.alpha, config.gamma)
            elif len(window) == config.n:
                update_first(q, window, bootstrap, loop.alpha, config.gamma)
            state, action = next_state, next_action
    return loop.finish()
