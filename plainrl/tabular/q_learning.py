"""Q-learning (Watkins 1989; Sutton & Barto 6.5; Zhao 7.4): off-policy TD control.

Its target is the value of the greedy policy, whatever policy chose the actions, so it learns the optimal Q
from any behaviour that keeps trying every action.

    Q = 0
    for each episode:
        S = reset()
        until the episode ends:
            A = behaviour(Q, S)              epsilon-greedy in Q (on-policy), or uniformly random (off-policy)
            R, S' = step(A)
            Q(S, A) += alpha * (R + gamma * max_a Q(S', a) - Q(S, A))      (just R if S' is terminal)
            S = S'

On CliffWalking it learns the shortest path along the cliff edge, the optimal one, though epsilon-greedy
exploration makes it fall off now and then while it follows that path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plainrl.kit.config import require
from plainrl.kit.run import Run
from plainrl.tabular import td
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, EpisodeLoop, QTableAgent, build_agent
from plainrl.tabular.tables import epsilon_greedy as choose

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

# Off-policy, Q-learning learns the optimal Q while it keeps exploring: on GridWorld epsilon stays at 0.1, and
# the grid being deterministic, the steps can be large.
PRESETS = {
    **td.PRESETS,
    "plainrl/GridWorld-v0": dict(
        gamma=0.9, total_steps=30_000, max_episode_steps=20, alpha=0.5, epsilon=0.1, initial_q=10.0
    ),
}
BEHAVIOURS = ("epsilon_greedy", "uniform")


@dataclass
class Config(td.TDConfig):
    behaviour: str = "epsilon_greedy"  # or "uniform": a fixed, uniformly random behaviour policy

    def validate(self) -> None:
        super().validate()
        require(self.behaviour in BEHAVIOURS, f"behaviour = {self.behaviour!r} is not one of {', '.join(BEHAVIOURS)}")


def q_learning_target(reward: float, next_q: np.ndarray, terminated: bool, gamma: float) -> float:
    """R + gamma * max_a Q(S', a), next_q = Q(S', .); just R when the episode terminated at S'."""
    return reward if terminated else reward + gamma * next_q.max()


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run)
    q = loop.q
    while loop.running():
        state = loop.reset()
        done = False
        while not done:
            epsilon = 1.0 if config.behaviour == "uniform" else loop.epsilon
            action = choose(q[state], epsilon, loop.rng)
            next_state, reward, terminated, truncated = loop.step(action)
            target = q_learning_target(reward, q[next_state], terminated, config.gamma)
            q[state, action] += loop.alpha * (target - q[state, action])
            state = next_state
            done = terminated or truncated
    return loop.finish()
