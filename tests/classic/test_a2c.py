import pytest
import torch

from plainrl.classic import a2c, reinforce, sarsa


def test_a2c_loss_matches_hand_computation():
    logprobs, advantages = torch.tensor([-0.5, -1.0]), torch.tensor([2.0, -1.0])
    values, returns, entropy = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 2.0]), torch.tensor([0.7, 0.3])
    loss, diag = a2c.a2c_loss(logprobs, advantages, values, returns, entropy, vf_coef=0.5, ent_coef=0.1)
    policy_loss = -(-0.5 * 2.0 + -1.0 * -1.0) / 2  # 0.0
    value_loss = (1.0 + 4.0) / 2
    assert diag["policy_loss"].item() == pytest.approx(policy_loss)
    assert diag["value_loss"].item() == pytest.approx(value_loss)
    assert loss.item() == pytest.approx(policy_loss + 0.5 * value_loss - 0.1 * 0.5)


def test_reinforce_loss_with_and_without_baseline():
    logprobs, advantages, entropy = torch.tensor([-1.0, -2.0]), torch.tensor([3.0, 1.0]), torch.tensor([0.5, 0.5])
    loss, diag = reinforce.reinforce_loss(logprobs, advantages, entropy, ent_coef=0.2)
    assert loss.item() == pytest.approx(-(-3.0 - 2.0) / 2 - 0.2 * 0.5) and "value_loss" not in diag
    values, returns = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 0.0])
    loss_b, diag_b = reinforce.reinforce_loss(logprobs, advantages, entropy, 0.2, values, returns, vf_coef=0.5)
    assert diag_b["value_loss"].item() == pytest.approx((4.0 + 1.0) / 2)
    assert loss_b.item() == pytest.approx(loss.item() + 0.5 * 2.5)


def test_sarsa_target_and_epsilon_greedy():
    targets = sarsa.sarsa_targets(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([4.0, 4.0]), 0.5)
    assert targets.tolist() == [3.0, 1.0]
    q = torch.tensor([[0.0, 1.0, 0.0]]).expand(10_000, 3)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(sarsa.epsilon_greedy(q, 0.0, generator), torch.ones(10_000, dtype=torch.long))
    explored = sarsa.epsilon_greedy(q, 0.3, generator)
    # P(action 1) = 0.7 + 0.3 / 3 = 0.8; the other two share the rest.
    assert (explored == 1).float().mean().item() == pytest.approx(0.8, abs=0.015)
