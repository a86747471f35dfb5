"""Monte Carlo epsilon-greedy (Sutton & Barto 5.4; Zhao 5.4): on-policy Monte Carlo control.

No exploring starts: the policy itself explores. It is epsilon-greedy in Q, so every action keeps being tried.

    Q = 0;  returns_sum = returns_count = 0
    for each episode:
        S_0 = the env's start (random_start: a random state);  A_0 = a random action
                                                    Zhao: "select a starting state-action pair"
        play S_0, A_0, R_1, ..., R_T with A_t = epsilon-greedy(Q, S_t) for t >= 1
        G = 0
        for t = T-1, ..., 0:
            G = R_t+1 + gamma * G
            unless first-visit and (S_t, A_t) occurs earlier in the episode:
                returns_sum(S_t, A_t) += G;  returns_count(S_t, A_t) += 1
                Q(S_t, A_t) = returns_sum(S_t, A_t) / returns_count(S_t, A_t)
                                         (or Q(S_t, A_t) += step_size * (G - Q(S_t, A_t)): constant-step MC)

It finds the best epsilon-greedy policy. For the greedy policy to become the optimal one, epsilon decays
toward 0 (epsilon_end, decay_fraction: "greedy in the limit with infinite exploration", GLIE).

The first action. Zhao's algorithm lets each episode begin with any (s, a); Sutton & Barto's takes A_0 from the
policy too (random_first_action=false). A return that starts with a random action is still a sample of
q_pi(S_0, A_0), so the estimates stay on-policy; what the random A_0 adds is that every action of a start state
is tried in every episode that starts there, not in an epsilon / |A| fraction of them. On GridWorld that
matters: a cell that the agent only passes at the start of an episode would otherwise keep, for a long time, the
low estimate of an action learned while the rest of the policy was still poor, and with epsilon decayed the
greedy policy would keep a worse action there (docs/tabular.md).

The first state. CliffWalking always starts in its corner, so the cells far from the epsilon-greedy path are
reached only by the wandering of early episodes, and their estimates keep those returns (the greedy policy
loops there). `random_start` begins each episode in a random state instead (Zhao's starting pair again, as
GridWorld's own random start does): every cell's estimate then follows the current policy.
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
    random_first_action: bool = True  # A_0 uniformly random (Zhao); False: A_0 = epsilon-greedy(Q, S_0) (S&B)
    random_start: bool = False  # S_0 a uniformly random state (needs env.unwrapped.s, as exploring starts)


# GridWorld: episodes start in a random free cell and are cut at 10 steps (their returns completed with Q, see
# mc.Episode), so that every cell is often a start; epsilon decays from 0.1 to 0 (GLIE) and a constant step
# forgets the returns of the early, worse policies. Seeds 0-9 reach the optimal policy, first- and every-visit.
PRESETS: dict[str, dict[str, Any]] = {
    "plainrl/GridWorld-v0": dict(
        gamma=0.9, total_steps=150_000, max_episode_steps=10, epsilon=0.1, epsilon_end=0.0, step_size=0.05
    ),
    # CliffWalking: episodes start in a random cell and are cut at 30 steps; epsilon decays 0.1 -> 0 over the
    # first half (GLIE), so the greedy policy becomes the optimal edge path (seeds 0-9, first- and every-visit).
    "CliffWalking-v1": dict(
        gamma=0.99,
        total_steps=200_000,
        max_episode_steps=30,
        epsilon=0.1,
        epsilon_end=0.0,
        decay_fraction=0.5,
        step_size=0.1,
        random_start=True,
    ),
    "FrozenLake-v1": dict(gamma=0.99, total_steps=300_000, max_episode_steps=100, epsilon=0.1),
    "Taxi-v4": dict(gamma=0.99, total_steps=300_000, max_episode_steps=200, epsilon=0.1, step_size=0.1),
}


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run, tables=mc.RETURN_TABLES)
    q, rng = loop.q, loop.rng
    states = loop.start_states() if config.random_start else None
    while loop.running():
        state = loop.start_at(int(rng.choice(states))) if states is not None else loop.reset()
        policy = lambda s: epsilon_greedy(q[s], loop.epsilon, rng)  # noqa: E731
        action = int(rng.integers(loop.n_actions)) if config.random_first_action else policy(state)
        episode = mc.play_episode(loop, state, action, policy)
        mc.average_returns(loop, episode, config)
    return loop.finish()
