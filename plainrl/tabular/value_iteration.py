"""Value iteration (Sutton & Barto 4.4; Zhao 4.1): apply the Bellman optimality equation until v stops moving.

    v = 0
    repeat:
        q(s, a) = r(s, a) + gamma * sum_s' p(s'|s, a) v(s')        for every state s and action a
        pi(s)   = argmax_a q(s, a)                                  policy improvement
        v(s)    = q(s, pi(s)) = max_a q(s, a)                       one sweep of policy evaluation
    until max_s |change of v(s)| < theta

One step of a run is one iteration (a sweep over every state). Needs the env's model (env.unwrapped.P).
"""

from __future__ import annotations

import numpy as np

from plainrl.kit.run import Run
from plainrl.tabular import dp
from plainrl.tabular.models import Model, check_model, q_from_v
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, QTableAgent, build_agent

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

Config = dp.DPConfig
PRESETS = dp.PRESETS
check_env = check_model  # the registry checks the env before training


def value_iteration_step(model: Model, v: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    q = q_from_v(model, v, config.gamma)
    policy = q.argmax(1)
    return q.max(1), policy


def train(config: Config, run: Run) -> QTableAgent:
    return dp.train(config, run, value_iteration_step)
