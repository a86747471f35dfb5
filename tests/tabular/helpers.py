"""Shared by the tabular tests: optimal values from value iteration, and the exact value of a greedy policy."""

from __future__ import annotations

import numpy as np

from plainrl.kit.config import build_config
from plainrl.kit.envs import make_env
from plainrl.kit.registry import load_algorithm
from plainrl.tabular import dp, value_iteration
from plainrl.tabular.models import Model, model_of


def optimal(env_id: str, gamma: float) -> tuple[Model, dp.DPResult]:
    model = model_of(make_env(env_id))
    return model, dp.solve(model, value_iteration.value_iteration_step, value_iteration.Config(gamma=gamma))


def greedy_policy_value(model: Model, q: np.ndarray, gamma: float) -> np.ndarray:
    """v of the policy argmax_a Q(s, a) (ties to the lowest action, as the agent acts), solved exactly."""
    return dp.evaluate_exactly(model, q.argmax(1), gamma)


def greedy_path(model: Model, q: np.ndarray, start: int, max_steps: int = 100) -> list[int]:
    """The states the greedy policy acts in from `start` on a deterministic env, until the episode ends."""
    path, state = [start], start
    for _ in range(max_steps):
        next_states = np.flatnonzero(model.P[state, q[state].argmax()])
        if len(next_states) == 0:  # the episode ended
            break
        state = int(next_states[0])
        path.append(state)
    return path


def train(algo: str, env_id: str, seed: int = 0, **overrides) -> np.ndarray:
    """Q learned by `algo` with its preset for env_id, `overrides` on top; no run folder."""
    module = load_algorithm(algo)
    settings = [f"{k}={v}" for k, v in overrides.items()]
    config = build_config(module.Config, module.PRESETS, {"env": env_id, "seed": seed}, set_items=settings)
    return module.train(config).q.detach().numpy()
