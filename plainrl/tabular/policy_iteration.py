"""Policy iteration (Sutton & Barto 4.3; Zhao 4.2): evaluate the policy exactly, improve it, repeat.

    v = 0
    repeat:
        pi(s) = argmax_a [ r(s, a) + gamma * sum_s' p(s'|s, a) v(s') ]    policy improvement
        v     = v_pi, the solution of v = r_pi + gamma * P_pi v            policy evaluation, exact:
                                                                           v_pi = (I - gamma P_pi)^-1 r_pi
    until v (and so pi) stops changing

Each policy is better than the last and there are finitely many, so it ends after a few iterations. One
step of a run is one iteration. Needs the env's model (env.unwrapped.P).
"""

from __future__ import annotations

import numpy as np

from plainrl.kit.run import Run
from plainrl.tabular import dp
from plainrl.tabular.models import Model, check_model
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, QTableAgent, build_agent

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

Config = dp.DPConfig
PRESETS = dp.PRESETS
check_env = check_model  # the registry checks the env before training


def policy_iteration_step(model: Model, v: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    policy = dp.greedy_policy(model, v, config.gamma)
    return dp.evaluate_exactly(model, policy, config.gamma), policy


def train(config: Config, run: Run) -> QTableAgent:
    return dp.train(config, run, policy_iteration_step)
