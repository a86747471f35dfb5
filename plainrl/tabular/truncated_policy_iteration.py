"""Truncated policy iteration (Zhao 4.3): policy iteration whose evaluation stops after a few sweeps.

Sutton & Barto's generalized policy iteration: policy evaluation stops after `eval_sweeps` sweeps, starting
from the previous values.

    v = 0
    repeat:
        pi(s) = argmax_a [ r(s, a) + gamma * sum_s' p(s'|s, a) v(s') ]    policy improvement
        repeat eval_sweeps times:                                         truncated policy evaluation
            v = r_pi + gamma * P_pi v
    until max_s |change of v(s)| < theta

eval_sweeps = 1 is value iteration; eval_sweeps -> infinity is policy iteration. One step of a run is one
iteration (eval_sweeps sweeps). Needs the env's model (env.unwrapped.P).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plainrl.kit.config import require
from plainrl.kit.run import Run
from plainrl.tabular import dp
from plainrl.tabular.models import Model, check_model
from plainrl.tabular.plots import draw_pictures
from plainrl.tabular.tables import ACTION_SPACES, OBSERVATION_SPACES, QTableAgent, build_agent

__all__ = ["ACTION_SPACES", "OBSERVATION_SPACES", "Config", "PRESETS", "build_agent", "draw_pictures", "train"]

PRESETS = dp.PRESETS
check_env = check_model  # the registry checks the env before training


@dataclass
class Config(dp.DPConfig):
    eval_sweeps: int = 5  # policy-evaluation sweeps per iteration (Zhao's j_truncate)

    def validate(self) -> None:
        super().validate()
        require(self.eval_sweeps >= 1, f"eval_sweeps = {self.eval_sweeps} must be >= 1")


def truncated_policy_iteration_step(model: Model, v: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    policy = dp.greedy_policy(model, v, config.gamma)
    return dp.evaluate_sweeps(model, policy, v, config.gamma, config.eval_sweeps), policy


def train(config: Config, run: Run) -> QTableAgent:
    return dp.train(config, run, truncated_policy_iteration_step)
