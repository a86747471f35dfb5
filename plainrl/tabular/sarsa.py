"""SARSA (Rummery & Niranjan 1994; Sutton & Barto 6.4; Zhao 7.2): on-policy TD control, tabular.

Registered as `tabular_sarsa` (`sarsa` is deep SARSA).

    Q = 0
    for each episode:
        S = reset();  A = epsilon-greedy(Q, S)
        until the episode ends:
            R, S' = step(A)
            A' = epsilon-greedy(Q, S')
            Q(S, A) += alpha * (R + gamma * Q(S', A') - Q(S, A))      (just R if S' is terminal)
            S, A = S', A'

It learns the value of the policy it follows, exploration included: on CliffWalking with epsilon > 0 the
greedy path keeps away from the cliff edge, where an exploratory step would be costly.
"""

from __future__ import annotations

from plainrl.kit.run import Run
from plainrl.tabular import td
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, EpisodeLoop, QTableAgent, build_agent
from plainrl.tabular.tables import epsilon_greedy as choose

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

Config = td.TDConfig
PRESETS = td.PRESETS


def sarsa_target(reward: float, next_value: float, terminated: bool, gamma: float) -> float:
    """R + gamma * Q(S', A'), where next_value = Q(S', A'); just R when the episode terminated at S'."""
    return reward if terminated else reward + gamma * next_value


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run)
    q = loop.q
    while loop.running():
        state = loop.reset()
        action = choose(q[state], loop.epsilon, loop.rng)
        done = False
        while not done:
            next_state, reward, terminated, truncated = loop.step(action)
            next_action = choose(q[next_state], loop.epsilon, loop.rng)
            target = sarsa_target(reward, q[next_state, next_action], terminated, config.gamma)
            q[state, action] += loop.alpha * (target - q[state, action])
            state, action = next_state, next_action
            done = terminated or truncated
    return loop.finish()
