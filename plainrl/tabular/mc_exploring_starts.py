"""Monte Carlo exploring starts (Sutton & Barto 5.3; Zhao 5.3): random first state and action, then greedy.

Every episode starts with a random state and action, then follows the greedy policy; q(s, a) averages all
the returns seen after (s, a).

    Q = 0;  returns_sum = returns_count = 0
    for each episode:
        S_0, A_0 = a random state and a random action                      the exploring start
        play S_0, A_0, R_1, S_1, A_1, ..., R_T with A_t = argmax_a Q(S_t, a) for t >= 1
        G = 0
        for t = T-1, ..., 0:
            G = R_t+1 + gamma * G
            unless first-visit and (S_t, A_t) occurs earlier in the episode:
                returns_sum(S_t, A_t) += G;  returns_count(S_t, A_t) += 1
                Q(S_t, A_t) = returns_sum(S_t, A_t) / returns_count(S_t, A_t)

The greedy policy improves with Q after every episode. The exploring starts are what keeps every action
tried, which needs an env that can start anywhere (env.unwrapped.s and P: GridWorld, the toy-text envs).
"""

from __future__ import annotations

from typing import Any

from plainrl.kit.run import Run
from plainrl.tabular import mc
from plainrl.tabular.models import check_settable_state
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import (
    ACTION_SPACES,
    OBSERVATION_SPACES,
    EpisodeLoop,
    QTableAgent,
    build_agent,
    greedy_action,
)

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

Config = mc.MCConfig
# On a deterministic env a return is exact for the policy that produced it, and the policy keeps improving:
# a constant step (step_size) forgets the returns of earlier policies, which the mean would keep forever.
PRESETS: dict[str, dict[str, Any]] = {
    "plainrl/GridWorld-v0": dict(gamma=0.9, total_steps=50_000, max_episode_steps=20, step_size=0.5),
    "CliffWalking-v1": dict(gamma=0.99, total_steps=50_000, max_episode_steps=30, step_size=0.5),
    "Taxi-v4": dict(gamma=0.99, total_steps=300_000, max_episode_steps=100, step_size=0.5),
    "FrozenLake-v1": dict(gamma=0.99, total_steps=300_000, max_episode_steps=100),
}
check_env = check_settable_state  # the registry checks the env before training


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run, tables=mc.RETURN_TABLES)
    q, rng = loop.q, loop.rng
    states = loop.start_states()
    while loop.running():
        state, action = int(rng.choice(states)), int(rng.integers(loop.n_actions))
        episode = mc.play_episode(loop, loop.start_at(state), action, lambda s: greedy_action(q[s], rng))
        mc.average_returns(loop, episode, config)
    return loop.finish()
