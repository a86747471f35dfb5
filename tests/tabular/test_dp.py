"""Dynamic programming against hand-computed values and against each other."""

import numpy as np
import pytest

from plainrl.kit.envs import make_env
from plainrl.tabular import dp, policy_iteration, truncated_policy_iteration, value_iteration
from plainrl.tabular.models import model_of, q_from_v

from .helpers import greedy_path

GAMMAS = {"plainrl/GridWorld-v0": 0.9, "FrozenLake-v1": 0.99, "CliffWalking-v1": 0.99, "Taxi-v4": 0.99}


def solve_all(env_id: str, gamma: float, exact: bool = True) -> list[dp.DPResult]:
    model = model_of(make_env(env_id))
    results = [
        dp.solve(model, value_iteration.value_iteration_step, value_iteration.Config(gamma=gamma)),
        dp.solve(model, truncated_policy_iteration.truncated_policy_iteration_step,
                 truncated_policy_iteration.Config(gamma=gamma, eval_sweeps=5)),
    ]  # fmt: skip
    if exact:
        results.insert(1, dp.solve(model, policy_iteration.policy_iteration_step, policy_iteration.Config(gamma=gamma)))
    return results


@pytest.mark.parametrize("env_id", list(GAMMAS))
def test_value_iteration_and_policy_iterations_agree_on_every_state(env_id):
    # Taxi's 500 x 500 linear solves take seconds on a busy machine: policy iteration is checked on the others.
    vi, *others = solve_all(env_id, GAMMAS[env_id], exact=env_id != "Taxi-v4")
    for result in others:
        assert np.abs(vi.v - result.v).max() < 1e-6


def test_value_iteration_matches_the_books_optimal_values():
    """Zhao's 5x5 grid (r_boundary -1, r_forbidden -10, r_target 1, gamma 0.9). By hand: staying in the target
    is worth 1 / (1 - 0.9) = 10; entering it from (3, 1), (2, 2) or (4, 2) earns 1 + 0.9 * 10 = 10; one more
    step away is 0.9 * 10 = 9; from (0, 4) the way around the forbidden cells is down 4, left 2, up: the 7th
    move enters the target, 0.9^6 * 10; from (0, 0) it is 4 moves longer, 0.9^10 * 10 = 3.49."""
    vi, pi, _ = solve_all("plainrl/GridWorld-v0", 0.9)
    assert pi.iterations <= 10 < 100 < vi.iterations  # exact evaluation needs few improvements
    book = np.array([
        [3.5, 3.9, 4.3, 4.8, 5.3],
        [3.1, 3.5, 4.8, 5.3, 5.9],
        [2.8, 2.5, 10.0, 5.9, 6.6],
        [2.5, 10.0, 10.0, 10.0, 7.3],
        [2.3, 9.0, 10.0, 9.0, 8.1],
    ])  # fmt: skip
    v = vi.v.reshape(5, 5)
    assert np.abs(v - book).max() < 0.05 + 1e-9
    assert v[3, 2] == pytest.approx(10.0, abs=1e-8) and v[4, 1] == pytest.approx(9.0, abs=1e-8)
    assert v[0, 4] == pytest.approx(0.9**6 * 10, abs=1e-8) and v[0, 0] == pytest.approx(0.9**10 * 10, abs=1e-8)
    model = model_of(make_env("plainrl/GridWorld-v0"))
    path = greedy_path(model, q_from_v(model, vi.v, 0.9), start=0, max_steps=11)
    forbidden = {6, 7, 12, 16, 18, 21}
    assert path[-1] == 17 and not forbidden & set(path)  # reaches the target around the forbidden cells


def test_truncated_policy_iteration_with_one_sweep_is_value_iteration():
    model = model_of(make_env("plainrl/GridWorld-v0"))
    vi = dp.solve(model, value_iteration.value_iteration_step, value_iteration.Config(gamma=0.9))
    config = truncated_policy_iteration.Config(gamma=0.9, eval_sweeps=1)
    tpi = dp.solve(model, truncated_policy_iteration.truncated_policy_iteration_step, config)
    assert tpi.iterations == vi.iterations and np.allclose(tpi.changes, vi.changes, rtol=0, atol=1e-12)


def test_policy_evaluation_solves_the_bellman_equation():
    """Hand check on a 1x3 corridor S . T with the target at the end (ending the episode), gamma 0.5:
    always RIGHT from S earns 0 then 1: v(S) = 0 + 0.5 * 1 = 0.5, v(middle) = 1, v(T) = 0 (terminal)."""
    from plainrl.tabular.gridworld import GridWorld

    model = model_of(GridWorld(layout=("S.T",), target_terminates=True))
    v = dp.evaluate_exactly(model, np.array([1, 1, 1]), gamma=0.5)
    assert v == pytest.approx([0.5, 1.0, 0.0])
    assert dp.evaluate_sweeps(model, np.array([1, 1, 1]), np.zeros(3), 0.5, sweeps=1) == pytest.approx([0, 1, 0])
    assert model.terminal.tolist() == [False, False, True] and model.visitable.tolist() == [True, True, False]
    # In S: up, down and left bounce (-1, stay in S), right moves on (0 then v = 1), stay earns 0.
    assert q_from_v(model, v, 0.5)[0] == pytest.approx([-1 + 0.25, 0 + 0.5 * 1, -1 + 0.25, -1 + 0.25, 0 + 0.25])


def test_cliff_walking_optimum_is_the_cliff_edge():
    model = model_of(make_env("CliffWalking-v1"))
    vi = solve_all("CliffWalking-v1", 0.99)[0]
    assert model.terminal.tolist() == [s == 47 for s in range(48)]
    assert not model.visitable[37:47].any()  # the cliff: the agent is sent back to the start, never stands there
    path = greedy_path(model, q_from_v(model, vi.v, 0.99), start=36)
    assert path == [36, 24, *range(25, 36)]  # up, 11 steps right along the edge, then down into the goal
    assert vi.v[36] == pytest.approx(-sum(0.99**t for t in range(13)))
