"""TD control: each target against hand computation, then seeded learning against value iteration's optimum."""

from collections import deque

import numpy as np
import pytest

from plainrl.kit.config import build_config
from plainrl.kit.errors import ConfigError
from plainrl.tabular import expected_sarsa, n_step_sarsa, q_learning, sarsa
from plainrl.tabular.tables import epsilon_greedy_probabilities

from .helpers import greedy_path, greedy_policy_value, optimal, train

NEXT_Q = np.array([1.0, 4.0, 2.0, 4.0])  # Q(S', .): actions 1 and 3 tie for greedy


def test_targets_by_hand():
    # R = 1, gamma = 0.5. SARSA uses the sampled next action's value; Q-learning the max.
    assert sarsa.sarsa_target(1.0, NEXT_Q[2], terminated=False, gamma=0.5) == 1 + 0.5 * 2
    assert q_learning.q_learning_target(1.0, NEXT_Q, terminated=False, gamma=0.5) == 1 + 0.5 * 4
    # Expected SARSA, epsilon 0.2: each action 0.2 / 4 = 0.05, the two greedy ones share 0.8 more.
    assert epsilon_greedy_probabilities(NEXT_Q, 0.2) == pytest.approx([0.05, 0.45, 0.05, 0.45])
    expected = 0.05 * 1 + 0.45 * 4 + 0.05 * 2 + 0.45 * 4
    assert expected_sarsa.expected_sarsa_target(1.0, NEXT_Q, 0.2, False, 0.5) == pytest.approx(1 + 0.5 * expected)
    assert expected_sarsa.expected_sarsa_target(1.0, NEXT_Q, 0.0, False, 0.5) == pytest.approx(1 + 0.5 * 4)
    # A terminal S' has no future: every target is just R.
    assert sarsa.sarsa_target(1.0, 2.0, True, 0.5) == q_learning.q_learning_target(1.0, NEXT_Q, True, 0.5) == 1.0
    assert expected_sarsa.expected_sarsa_target(1.0, NEXT_Q, 0.2, True, 0.5) == 1.0


def test_n_step_return_and_window_update_by_hand():
    assert n_step_sarsa.n_step_return([1.0, 2.0, 3.0], bootstrap=10.0, gamma=0.5) == 1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10
    q = np.zeros((3, 2))
    window = deque([(0, 1, 1.0), (2, 0, 2.0)])
    n_step_sarsa.update_first(q, window, bootstrap=4.0, alpha=0.5, gamma=0.5)  # G = 1 + 0.5 * 2 + 0.25 * 4 = 3
    assert q[0, 1] == 1.5 and list(window) == [(2, 0, 2.0)]
    n_step_sarsa.update_first(q, window, bootstrap=0.0, alpha=1.0, gamma=0.5)  # the end of a terminated episode
    assert q[2, 0] == 2.0 and not window


def test_one_step_n_step_sarsa_is_sarsa():
    settings = dict(total_steps=3000, alpha=0.1)
    assert np.array_equal(train("tabular_sarsa", "plainrl/GridWorld-v0", **settings),
                          train("n_step_sarsa", "plainrl/GridWorld-v0", n=1, **settings))  # fmt: skip


def test_bad_td_settings_are_rejected():
    for module, item, message in [
        (sarsa, "alpha=0", "alpha = 0.0 must be in (0, 1]"),
        (sarsa, "epsilon=1.5", "epsilon = 1.5 must be in [0, 1]"),
        (sarsa, "decay_fraction=0", "decay_fraction = 0.0 must be in (0, 1]"),
        (n_step_sarsa, "n=0", "n = 0 must be >= 1"),
        (q_learning, "behaviour=greedy", "behaviour = 'greedy' is not one of epsilon_greedy, uniform"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            build_config(module.Config, module.PRESETS, {"env": "plainrl/GridWorld-v0"}, set_items=[item])


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo, settings, where",
    [
        ("q_learning", {}, "visitable"),
        ("q_learning", {"behaviour": "uniform"}, "visitable"),  # off-policy: the behaviour never looks at Q
        ("tabular_sarsa", {}, "start"),
        ("expected_sarsa", {}, "start"),
        ("n_step_sarsa", {}, "start"),
    ],
)
def test_td_methods_reach_the_optimal_policy_on_gridworld(algo, settings, where):
    """The greedy policy learned with the preset is worth v*: an optimal policy. Q-learning's in every state
    the agent can be in; the on-policy methods' from every start cell (they seldom try the forbidden cells,
    which no optimal path from a free cell enters)."""
    model, best = optimal("plainrl/GridWorld-v0", 0.9)
    q = train(algo, "plainrl/GridWorld-v0", seed=1, **settings)
    v = greedy_policy_value(model, q, 0.9)
    states = model.visitable if where == "visitable" else model.start > 0
    assert np.abs(v - best.v)[states].max() < 1e-6


CLIFF_EDGE = [36, 24, *range(25, 36)]  # up, right along the cliff, down into the goal: 13 steps, optimal
START = 36


@pytest.mark.slow
def test_cliff_walking_q_learning_takes_the_edge_and_sarsa_the_safe_path():
    """Sutton & Barto's example 6.6, epsilon 0.1 throughout: Q-learning learns the optimal path along the
    cliff; the SARSAs learn the value of their exploring policy and keep their greedy path off the edge."""
    model, best = optimal("CliffWalking-v1", 0.99)
    assert greedy_path(model, best.policy[:, None] == np.arange(4), START) == CLIFF_EDGE  # value iteration's
    q = train("q_learning", "CliffWalking-v1", seed=0)
    assert greedy_path(model, q, START) == CLIFF_EDGE
    for algo in ("tabular_sarsa", "expected_sarsa", "n_step_sarsa"):
        path = greedy_path(model, train(algo, "CliffWalking-v1", seed=0), START)
        assert not set(path) & set(range(25, 35))  # never on the edge between the start and the goal column
        assert len(path) < 20  # and yet a path to the goal, not a loop
