"""GridWorld's dynamics against hand computation: boundary and walls, forbidden cells, the target, slipping."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import plainrl  # noqa: F401  (registers plainrl/GridWorld-v0)
from plainrl.tabular.gridworld import DEFAULT_LAYOUT, GridWorld

UP, RIGHT, DOWN, LEFT, STAY = range(5)


def cell(row: int, col: int, ncol: int = 5) -> int:
    return row * ncol + col


def outcome(env: GridWorld, state: int, action: int) -> tuple[int, float, bool]:
    """The single (next state, reward, terminated) of a deterministic grid, through the Gymnasium API."""
    env.reset(seed=0)
    env.s = state
    next_state, reward, terminated, truncated, _ = env.step(action)
    assert not truncated
    return next_state, reward, terminated


def test_registered_default_is_the_books_five_by_five_grid():
    env = gym.make("plainrl/GridWorld-v0")
    assert env.spec.max_episode_steps == 100
    assert env.observation_space == gym.spaces.Discrete(25) and env.action_space == gym.spaces.Discrete(5)
    inner = env.unwrapped
    assert inner.cells("T") == [cell(3, 2)]
    assert inner.cells("F") == [cell(1, 1), cell(1, 2), cell(2, 2), cell(3, 1), cell(3, 3), cell(4, 1)]
    # No start cell in the layout: episodes start uniformly in the 18 free cells.
    free = [s for s in range(25) if s not in inner.cells("T") + inner.cells("F")]
    assert np.allclose(inner.initial_state_distrib, np.isin(np.arange(25), free) / 18)
    check_env(inner)


def test_moves_boundary_forbidden_and_target_rewards():
    env = GridWorld()  # r_boundary -1, r_forbidden -10, r_target 1, r_other 0
    assert outcome(env, cell(0, 0), RIGHT) == (cell(0, 1), 0.0, False)  # an ordinary move
    assert outcome(env, cell(0, 0), UP) == (cell(0, 0), -1.0, False)  # off the grid: bounced back
    assert outcome(env, cell(0, 0), LEFT) == (cell(0, 0), -1.0, False)
    assert outcome(env, cell(4, 4), DOWN) == (cell(4, 4), -1.0, False)
    assert outcome(env, cell(0, 1), DOWN) == (cell(1, 1), -10.0, False)  # into a forbidden cell
    assert outcome(env, cell(1, 1), STAY) == (cell(1, 1), -10.0, False)  # staying in one costs again
    assert outcome(env, cell(1, 1), UP) == (cell(0, 1), 0.0, False)  # leaving one is free
    assert outcome(env, cell(2, 2), DOWN) == (cell(3, 2), 1.0, False)  # into the target: it goes on
    assert outcome(env, cell(3, 2), STAY) == (cell(3, 2), 1.0, False)  # staying earns r_target every step
    assert outcome(env, cell(0, 3), STAY) == (cell(0, 3), 0.0, False)


def test_walls_bounce_like_the_boundary_and_rewards_are_configurable():
    env = GridWorld(layout=("S.#", "F.T"), r_boundary=-2.0, r_forbidden=-3.0, r_target=5.0, r_other=-0.5)
    assert outcome(env, cell(0, 1, 3), RIGHT) == (cell(0, 1, 3), -2.0, False)  # the wall
    assert outcome(env, cell(1, 2, 3), UP) == (cell(1, 2, 3), -2.0, False)
    assert outcome(env, cell(0, 0, 3), RIGHT) == (cell(0, 1, 3), -0.5, False)
    assert outcome(env, cell(0, 0, 3), DOWN) == (cell(1, 0, 3), -3.0, False)
    assert outcome(env, cell(1, 1, 3), RIGHT) == (cell(1, 2, 3), 5.0, False)
    assert env.reset(seed=3)[0] == 0  # the 'S' cell is the only start
    assert np.array_equal(env.initial_state_distrib, [1, 0, 0, 0, 0, 0])


def test_target_can_end_the_episode():
    env = GridWorld(target_terminates=True)
    assert outcome(env, cell(2, 2), DOWN) == (cell(3, 2), 1.0, True)
    assert outcome(env, cell(4, 2), UP) == (cell(3, 2), 1.0, True)


def test_slip_replaces_the_action_with_a_uniformly_random_one():
    slip = 0.5
    env = GridWorld(slip=slip)
    # From (0, 1), RIGHT: intended with 1 - 0.5 + 0.5 / 5 = 0.6; each other action with 0.1.
    outcomes = env.P[cell(0, 1)][RIGHT]
    assert [p for p, *_ in outcomes] == pytest.approx([0.1, 0.6, 0.1, 0.1, 0.1])
    assert [(s, r) for _, s, r, _ in outcomes] == [
        (cell(0, 1), -1.0),  # up: bounced
        (cell(0, 2), 0.0),  # right
        (cell(1, 1), -10.0),  # down: forbidden
        (cell(0, 0), 0.0),  # left
        (cell(0, 1), 0.0),  # stay
    ]
    counts = np.zeros(25)
    env.reset(seed=0)
    n = 20_000
    for _ in range(n):
        env.s = cell(0, 1)
        counts[env.step(RIGHT)[0]] += 1
    expected = np.zeros(25)
    expected[[cell(0, 1), cell(0, 2), cell(1, 1), cell(0, 0)]] = [0.2, 0.6, 0.1, 0.1]  # up and stay both stay
    assert np.abs(counts / n - expected).max() < 4 * np.sqrt(0.25 / n)
    for s in range(25):
        for a in range(5):
            assert sum(p for p, *_ in env.P[s][a]) == pytest.approx(1.0)


def test_render_and_bad_layouts():
    env = GridWorld(render_mode="ansi")
    env.reset(seed=0)
    env.s = cell(0, 0)
    assert env.render().splitlines()[0] == "A . . . ."
    image = GridWorld(render_mode="rgb_array")
    image.reset(seed=0)
    assert image.render().shape == (5 * 48, 5 * 48, 3)
    for layout, message in [(("..", "."), "equal length"), (("..",), "exactly one target"), (("TX",), "may use only")]:
        with pytest.raises(ValueError, match=message):
            GridWorld(layout=layout)
    with pytest.raises(ValueError, match="slip"):
        GridWorld(slip=1.5)
    assert len(DEFAULT_LAYOUT) == 5
