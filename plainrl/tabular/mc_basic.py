"""MC basic (Zhao 5.2): policy iteration that evaluates each policy by the mean of sampled returns.

Averaging returns instead of solving the Bellman equation needs no model. The simplest Monte Carlo control,
and the least efficient.

    pi = the policy that takes action 0 everywhere
    repeat:
        for every state s and action a:                                     policy evaluation
            play `episodes_per_pair` episodes that start in s with action a and then follow pi
            q(s, a) = the mean of their returns
        pi(s) = argmax_a q(s, a) for every s                                policy improvement
    until pi stops changing

Episodes last at most max_episode_steps: long enough to reach the target, or q stays blind to it (Zhao's
episode-length example); an episode cut there is completed with the current estimate of where it was
cut (see mc.Episode). One run step is one env step; the iteration under way when total_steps is reached is
finished. Starting in a chosen state needs env.unwrapped.s and P (GridWorld, Gymnasium's toy-text envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plainrl.kit.config import require
from plainrl.kit.run import Run
from plainrl.tabular import mc
from plainrl.tabular.models import check_settable_state
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import (
    ACTION_SPACES,
    OBSERVATION_SPACES,
    EpisodeLoop,
    ModelFreeConfig,
    QTableAgent,
    build_agent,
)

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

PRESETS: dict[str, dict[str, Any]] = {  # it stops as soon as an iteration leaves the policy unchanged
    "plainrl/GridWorld-v0": dict(gamma=0.9, total_steps=50_000, max_episode_steps=20),
    "CliffWalking-v1": dict(gamma=0.99, total_steps=200_000, max_episode_steps=30),
    "FrozenLake-v1": dict(gamma=0.99, total_steps=500_000, max_episode_steps=100, episodes_per_pair=20),
}
check_env = check_settable_state  # the registry checks the env before training


@dataclass
class Config(ModelFreeConfig):
    episodes_per_pair: int = 1  # returns averaged per (s, a) and iteration: 1 is exact on a deterministic env

    def validate(self) -> None:
        super().validate()
        require(self.episodes_per_pair >= 1, f"episodes_per_pair = {self.episodes_per_pair} must be >= 1")


def train(config: Config, run: Run | None = None) -> QTableAgent:
    loop = EpisodeLoop(config, run)
    q = loop.q
    states = loop.start_states().tolist()
    policy = q.argmax(1)  # greedy in the last evaluation (at first: action 0 everywhere)
    while loop.running():
        follow = policy.tolist().__getitem__  # state -> the policy's action
        for state in states:
            for action in range(loop.n_actions):
                episodes = [
                    mc.play_episode(loop, loop.start_at(state), action, follow) for _ in range(config.episodes_per_pair)
                ]
                q[state, action] = np.mean([mc.returns(episode, config.gamma)[0] for episode in episodes])
        improved = q.argmax(1)
        if (improved == policy).all():  # policy iteration's stopping rule: improvement changes nothing
            break
        policy = improved
    return loop.finish()
