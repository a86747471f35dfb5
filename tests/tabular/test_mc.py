"""Monte Carlo: mean estimation, returns by hand, evaluation by returns against DP, then seeded control."""

import numpy as np
import pytest

from plainrl.kit.config import build_config
from plainrl.kit.envs import make_env
from plainrl.tabular import dp, mc, mc_epsilon_greedy
from plainrl.tabular.models import model_of
from plainrl.tabular.tables import EpisodeLoop

from .helpers import greedy_path, greedy_policy_value, optimal, train


def test_mean_estimation_is_the_running_mean_and_converges():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(20_000) < 0.3, 1.0, -1.0)  # E[X] = 0.3 - 0.7 = -0.4, std(X) = sqrt(1 - 0.16)
    estimates = mc.mc_mean(x)
    assert estimates[:3] == pytest.approx([x[0], x[:2].mean(), x[:3].mean()])
    assert estimates == pytest.approx(np.cumsum(x) / np.arange(1, len(x) + 1))
    std = np.sqrt(1 - 0.16)
    for k in (100, 1_000, 20_000):
        assert abs(estimates[k - 1] + 0.4) < 4 * std / np.sqrt(k)  # the law of large numbers, at 4 sigma
    assert abs(estimates[-1] + 0.4) < 0.03


def test_returns_first_and_every_visit_by_hand():
    # (S, A, R): (0, 1) is visited twice. gamma 0.5: G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5.
    episode = mc.Episode(steps=[(0, 1, 1.0), (2, 0, 0.0), (0, 1, 2.0)])
    assert mc.returns(episode, 0.5).tolist() == [1.5, 1.0, 2.0]
    assert mc.returns_to_average(episode, 0.5, first_visit=True) == [(0, 1, 1.5), (2, 0, 1.0)]
    assert mc.returns_to_average(episode, 0.5, first_visit=False) == [(0, 1, 1.5), (2, 0, 1.0), (0, 1, 2.0)]
    # Cut by a time limit where Q(S_T, A_T) = 8: every return gets the discounted tail, 0.5^(T - t) * 8.
    cut = mc.Episode(steps=episode.steps, tail=8.0)
    assert mc.returns(cut, 0.5).tolist() == [1.5 + 0.125 * 8, 1.0 + 0.25 * 8, 2.0 + 0.5 * 8]


def test_averaging_returns_evaluates_a_policy_like_dp():
    """Policy evaluation by returns: MC estimates of q_pi for a fixed epsilon-greedy policy match DP's."""
    env_id, gamma, epsilon = "plainrl/GridWorld-v0", 0.9, 0.2
    model = model_of(make_env(env_id))
    greedy = optimal(env_id, gamma)[1].policy
    pi = np.full((25, 5), epsilon / 5) + (1 - epsilon) * (greedy[:, None] == np.arange(5))
    v = dp.evaluate_exactly(model, greedy, gamma)  # a start; iterate the epsilon-soft evaluation to convergence
    for _ in range(500):
        v = (pi * (model.R + gamma * model.P @ v)).sum(1)
    q_pi = model.R + gamma * model.P @ v
    config = build_config(mc_epsilon_greedy.Config, {}, {"env": env_id}, set_items=["max_episode_steps=40"])
    loop = EpisodeLoop(config, tables=mc.RETURN_TABLES)
    cumulative = pi.cumsum(1)

    def policy(state: int) -> int:
        return min(int(np.searchsorted(cumulative[state], loop.rng.random())), 4)

    for _ in range(800):
        state = loop.reset()
        mc.average_returns(loop, mc.play_episode(loop, state, policy(state), policy), config)
    often = loop.tables["returns_count"] >= 100  # sampling error about 3 / sqrt(100) = 0.3 at most
    error = np.abs(loop.q - q_pi)[often]
    assert often.sum() > 20 and error.max() < 1.0 and error.mean() < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["mc_basic", "mc_exploring_starts"])
def test_mc_control_reaches_the_optimal_policy_on_gridworld_and_cliff_walking(algo):
    model, best = optimal("plainrl/GridWorld-v0", 0.9)
    q = train(algo, "plainrl/GridWorld-v0", seed=1)
    # Both start episodes in every state: the greedy policy is optimal in every state the agent can be in.
    assert np.abs(greedy_policy_value(model, q, 0.9) - best.v)[model.visitable].max() < 1e-6
    cliff, _ = optimal("CliffWalking-v1", 0.99)
    assert greedy_path(cliff, train(algo, "CliffWalking-v1", seed=1), start=36) == [36, 24, *range(25, 36)]


@pytest.mark.slow
@pytest.mark.parametrize("first_visit", [True, False])
def test_mc_epsilon_greedy_reaches_the_optimal_policy_on_gridworld(first_visit):
    """With the preset (epsilon 0.1 decaying to 0, a random first action, 10-step episodes from every free cell)
    the greedy policy is worth v* from every start cell; seeds 0-9 do, first- and every-visit (docs/tabular.md).
    Greedy with respect to -Q, or averaging returns without the discount, would not."""
    model, best = optimal("plainrl/GridWorld-v0", 0.9)
    q = train("mc_epsilon_greedy", "plainrl/GridWorld-v0", seed=0, first_visit=first_visit)
    assert np.abs(greedy_policy_value(model, q, 0.9) - best.v)[model.start > 0].max() < 1e-6
    assert np.abs(greedy_policy_value(model, -q, 0.9) - best.v)[model.start > 0].max() > 1  # the check can fail


@pytest.mark.slow
def test_mc_epsilon_greedy_takes_the_optimal_edge_path_on_cliff_walking():
    """The preset: random start cells, 30-step episodes, epsilon 0.1 decaying to 0 over half the run (GLIE). The
    greedy policy becomes value iteration's path along the cliff; seeds 0-9 do (docs/tabular.md). Started from
    the corner only, as the env does, the greedy policy loops."""
    cliff, best = optimal("CliffWalking-v1", 0.99)
    edge = greedy_path(cliff, best.policy[:, None] == np.arange(4), start=36)
    assert edge == [36, 24, *range(25, 36)]
    assert greedy_path(cliff, train("mc_epsilon_greedy", "CliffWalking-v1", seed=0), start=36) == edge
    corner_only = train("mc_epsilon_greedy", "CliffWalking-v1", seed=0, random_start=False)
    assert greedy_path(cliff, corner_only, start=36) != edge
