import gymnasium as gym
import pytest
import torch

from plainrl.classic import trpo
from plainrl.kit.nets import ActorCritic


def test_conjugate_gradient_matches_a_direct_solve():
    torch.manual_seed(0)
    m = torch.randn(6, 6, dtype=torch.float64)
    spd = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: spd @ v, b, iterations=6)  # exact in n steps, in exact arithmetic
    assert torch.allclose(x, torch.linalg.solve(spd, b), atol=1e-8)


def test_line_search_never_accepts_a_step_beyond_the_kl_bound():
    full_step = torch.tensor([1.0, -2.0])
    for curvature in (0.001, 0.3, 5.0, 80.0, 1e6):  # KL = curvature * |step|^2: each halving divides it by 4

        def evaluate(step: torch.Tensor, curvature: float = curvature) -> tuple[float, float]:
            return 1.0, curvature * float(step @ step)

        step = trpo.line_search(evaluate, full_step, max_kl=0.01, max_backtracks=10)
        if step is None:
            assert evaluate(full_step * 0.5**9)[1] > 0.01  # even the smallest fraction tried was too far
        else:
            assert evaluate(step)[1] <= 0.01
            assert step.norm() == full_step.norm() or evaluate(step * 2)[1] > 0.01  # the largest that fits


def test_line_search_rejects_steps_that_do_not_improve():
    def evaluate(step: torch.Tensor) -> tuple[float, float]:  # within the bound, but only tiny steps improve
        return (1.0 if step.norm() < 0.1 else -1.0), 0.0

    step = trpo.line_search(evaluate, torch.tensor([1.0]), max_kl=0.01, max_backtracks=10)
    assert step is not None and step.item() == pytest.approx(0.5**4)
    assert trpo.line_search(lambda s: (-1.0, 0.0), torch.tensor([1.0]), 0.01, 10) is None


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_mean_kl_is_zero_for_the_same_policy_and_positive_after_a_change(space):
    agent = ActorCritic(gym.spaces.Box(-1, 1, (4,)), space)
    obs = torch.randn(16, 4)
    old = trpo.policy_distribution(agent, obs)
    assert trpo.mean_kl(old, trpo.policy_distribution(agent, obs)).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        agent.actor[-1].bias[0] += 0.5
    assert trpo.mean_kl(old, trpo.policy_distribution(agent, obs)).item() > 0


@pytest.mark.parametrize("max_kl", [1e-4, 1e-2])
def test_policy_step_stays_within_the_trust_region(max_kl):
    torch.manual_seed(0)
    agent = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)))
    obs, actions, advantages = torch.randn(256, 4), torch.randn(256, 2), torch.randn(256)
    with torch.no_grad():
        old_logprobs = agent.head.log_prob(agent.policy_output(obs), actions)
    config = trpo.Config(max_kl=max_kl)
    metrics = trpo.trpo_policy_step(agent, obs, actions, old_logprobs, advantages, config)
    assert metrics["step_fraction"] > 0 and 0 < metrics["kl"] <= max_kl
