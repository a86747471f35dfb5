"""Dynamic programming: what value iteration, policy iteration and truncated policy iteration share.

All three repeat the same two steps and differ only in how far they evaluate (Zhao, chapter 4):

    policy improvement:  pi(s) = argmax_a q(s, a),  q(s, a) = r(s, a) + gamma * sum_s' p(s'|s, a) v(s')
    policy evaluation:   v <- r_pi + gamma * P_pi v,  applied once (value iteration), j times (truncated policy
                         iteration), or until it stops changing, i.e. solving v = r_pi + gamma P_pi v
                         exactly (policy iteration)

They need the model (models.Model, read from the env's P) and no samples. In a run, one step is one
iteration (improvement + evaluation): total_steps caps the iterations, and the run stops early once no state
value changes by more than theta. gamma must be below 1, so that every policy has finite values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plainrl.kit.config import require
from plainrl.kit.envs import make_env
from plainrl.kit.run import Run
from plainrl.tabular.models import Model, model_of, q_from_v
from plainrl.tabular.plots import draw_dp_curve, draw_values
from plainrl.tabular.tables import QTableAgent, TabularConfig, build_agent


@dataclass
class DPConfig(TabularConfig):
    total_steps: int = 10_000  # iterations at most
    theta: float = 1e-10  # stop once an iteration changes no state value by more than this

    def validate(self) -> None:
        super().validate()
        require(self.gamma < 1, f"gamma = {self.gamma} must be < 1 for dynamic programming")
        require(self.theta > 0, f"theta = {self.theta} must be > 0")


PRESETS: dict[str, dict[str, Any]] = {
    "plainrl/GridWorld-v0": dict(gamma=0.9),
    "FrozenLake-v1": dict(gamma=0.99),
    "CliffWalking-v1": dict(gamma=0.99),
    "Taxi-v4": dict(gamma=0.99),
}

# One iteration: (model, v, config) -> (the new v, the greedy policy it was computed for).
Iteration = Callable[[Model, np.ndarray, Any], tuple[np.ndarray, np.ndarray]]


def greedy_policy(model: Model, v: np.ndarray, gamma: float) -> np.ndarray:
    """Policy improvement: in every state the action with the largest one-step look-ahead value."""
    return q_from_v(model, v, gamma).argmax(1)


def policy_rewards_and_transitions(model: Model, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """r_pi (n_states,) and P_pi (n_states, n_states) of a deterministic policy."""
    states = np.arange(model.n_states)
    return model.R[states, policy], model.P[states, policy]


def evaluate_sweeps(model: Model, policy: np.ndarray, v: np.ndarray, gamma: float, sweeps: int) -> np.ndarray:
    """Iterative policy evaluation: `sweeps` applications of v <- r_pi + gamma * P_pi v."""
    r_pi, P_pi = policy_rewards_and_transitions(model, policy)
    for _ in range(sweeps):
        v = r_pi + gamma * P_pi @ v
    return v


def evaluate_exactly(model: Model, policy: np.ndarray, gamma: float) -> np.ndarray:
    """v_pi, the solution of the Bellman equation v = r_pi + gamma * P_pi v: (I - gamma P_pi) v = r_pi."""
    r_pi, P_pi = policy_rewards_and_transitions(model, policy)
    return np.linalg.solve(np.eye(model.n_states) - gamma * P_pi, r_pi)


@dataclass
class DPResult:
    v: np.ndarray
    policy: np.ndarray  # greedy with respect to v
    iterations: int
    changes: list[float] = field(default_factory=list)  # max_s |v_new(s) - v(s)| of each iteration


def solve(
    model: Model,
    iteration: Iteration,
    config: Any,
    v: np.ndarray | None = None,
    first_iteration: int = 0,
    after_iteration: Callable[[int, np.ndarray, float], None] | None = None,
) -> DPResult:
    """Repeat `iteration` from v (zeros by default) until values change by less than theta or total_steps
    iterations are done. `after_iteration(k, v, change)` lets a run log and checkpoint."""
    v = np.zeros(model.n_states) if v is None else v
    changes = []
    k = first_iteration
    while k < config.total_steps:
        v_new, _ = iteration(model, v, config)
        change = float(np.abs(v_new - v).max())
        v, k = v_new, k + 1
        changes.append(change)
        if after_iteration is not None:
            after_iteration(k, v, change)
        if change < config.theta:
            break
    return DPResult(v=v, policy=greedy_policy(model, v, config.gamma), iterations=k, changes=changes)


def train(config: DPConfig, run: Run, iteration: Iteration) -> QTableAgent:
    """A DP method as a run: one metrics row per iteration, the Q-table agent, values.png and curve.png."""
    env = make_env(config.env)
    model = model_of(env)
    agent = build_agent(config, env.observation_space, env.action_space)
    env.close()
    v = None
    if run.checkpoint_state is not None:
        v = np.asarray(run.checkpoint_state["v"])

    def after_iteration(k: int, v: np.ndarray, change: float) -> None:
        run.log(k, {"value_change": change, "start_value": float(model.start @ v)})
        agent.table()[:] = q_from_v(model, v, config.gamma)
        run.maybe_checkpoint(k, {"agent": agent, "v": v})

    result = solve(model, iteration, config, v, run.start_step, after_iteration)
    run.maybe_checkpoint(result.iterations, {"agent": agent, "v": result.v}, final=True)
    draw_values(run.dir / "values.png", config.env, agent.table(), title=f"{run.algo} on {config.env}")
    draw_dp_curve(run.dir)
    return agent
