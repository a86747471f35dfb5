"""The model of a tabular env, as dynamic programming needs it: `Model` (the MDP as arrays), read by `model_of`
from an env's `P[s][a] = [(probability, next_state, reward, terminated), ...]`, the one-step look-ahead
`q_from_v`, and the checks that an env publishes a model (`check_model`) or lets an episode start in a chosen
state (`check_settable_state`).

It imports no other tabular module, so tables.py (the methods' shared parts) and plots.py (the pictures) both
build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from plainrl.kit.errors import PlainRLError


@dataclass
class Model:
    """An MDP as arrays, read from an env's `P[s][a] = [(probability, next_state, reward, terminated), ...]`.

    P[s, a, s']  probability that action a in s leads to s' and the episode goes on (a transition that ends
                 the episode has no future, so it is left out: q = R + gamma * P @ v needs no special case)
    R[s, a]      expected reward
    start[s]     the start distribution
    visitable[s] the agent can be in s when it acts: a start state, or one reached from a start state
                 without the episode ending (walls and CliffWalking's cliff are not)
    terminal[s]  not visitable, but an episode can end there (the goal, a hole): its value is 0
    """

    P: np.ndarray
    R: np.ndarray
    start: np.ndarray
    terminal: np.ndarray
    visitable: np.ndarray

    @property
    def n_states(self) -> int:
        return self.R.shape[0]


def has_model(env: gym.Env) -> bool:
    return hasattr(env.unwrapped, "P")


def check_model(env: gym.Env) -> None:
    if not has_model(env):
        raise PlainRLError(
            f"{env_name(env)} publishes no model: dynamic programming needs env.unwrapped.P[s][a] = "
            "[(probability, next_state, reward, terminated), ...], as Gymnasium's toy-text envs have"
        )


def model_of(env: gym.Env) -> Model:
    check_model(env)
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)  # type: ignore[attr-defined]
    P = np.zeros((n_states, n_actions, n_states))
    R = np.zeros((n_states, n_actions))
    ends = np.zeros((n_states, n_states), dtype=bool)  # ends[s, s']: some action in s ends the episode in s'
    for s, rows in env.unwrapped.P.items():  # type: ignore[attr-defined]
        for a, outcomes in rows.items():
            for probability, next_state, reward, terminated in outcomes:
                R[s, a] += probability * reward
                if terminated:
                    ends[s, next_state] = True
                else:
                    P[s, a, next_state] += probability
    start = np.asarray(getattr(env.unwrapped, "initial_state_distrib", np.full(n_states, 1.0 / n_states)), float)
    # The states the agent can act in: the start states and all it can reach from them without the episode ending.
    visitable = start > 0
    while True:
        reached = visitable | (P[visitable] > 0).any(axis=(0, 1))
        if (reached == visitable).all():
            break
        visitable = reached
    terminal = ends[visitable].any(axis=0) & ~visitable
    P[terminal], R[terminal] = 0.0, 0.0  # the episode is over there: no reward, no future
    return Model(P=P, R=R, start=start, terminal=terminal, visitable=visitable)


def q_from_v(model: Model, v: np.ndarray, gamma: float) -> np.ndarray:
    """The one-step look-ahead q(s, a) = r(s, a) + gamma * sum_s' p(s'|s, a) v(s'), for every s and a."""
    return model.R + gamma * model.P @ v


def env_name(env: gym.Env) -> str:
    return env.spec.id if env.spec else type(env.unwrapped).__name__


def check_settable_state(env: gym.Env) -> None:
    """Exploring starts begin episodes in a chosen state: Gymnasium's toy-text envs and GridWorld keep their
    state in `env.unwrapped.s` and publish the model that says which states exist."""
    if not (has_model(env) and hasattr(env.unwrapped, "s")):
        raise PlainRLError(
            f"{env_name(env)} cannot start an episode in a chosen state (needs env.unwrapped.s and .P, as "
            "Gymnasium's toy-text envs and plainrl/GridWorld-v0 have)"
        )
