import pytest
import torch

from plainrl.classic import dqn
from plainrl.kit.config import build_config
from plainrl.kit.nets import QNetwork, polyak_update


def test_double_dqn_target_uses_online_argmax_and_target_value():
    # Hand-built case where the two targets differ: the target network prefers action 0 (value 5), the online
    # network prefers action 1, which the target network values at 2.
    next_q_target = torch.tensor([[5.0, 2.0]])
    next_q_online = torch.tensor([[1.0, 3.0]])
    rewards, discounts, terminated = torch.tensor([1.0]), torch.tensor([0.9]), torch.tensor([0.0])
    assert dqn.td_targets(rewards, discounts, terminated, next_q_target).item() == pytest.approx(1 + 0.9 * 5)
    double = dqn.td_targets(rewards, discounts, terminated, next_q_target, next_q_online)
    assert double.item() == pytest.approx(1 + 0.9 * 2)


def test_td_target_of_a_terminal_transition_is_the_reward():
    target = dqn.td_targets(torch.tensor([2.0]), torch.tensor([0.99]), torch.tensor([1.0]), torch.tensor([[7.0, 9.0]]))
    assert target.item() == 2.0


def test_epsilon_decays_linearly_then_stays():
    config = build_config(dqn.Config, {}, set_items=["total_steps=1000", "exploration_fraction=0.5",
                                                     "start_epsilon=1.0", "end_epsilon=0.1"])  # fmt: skip
    assert [dqn.linear_epsilon(s, config) for s in (0, 250, 500, 900)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_polyak_update_against_hand_computation():
    source, target = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        source.weight.fill_(1.0), source.bias.fill_(-2.0), target.weight.fill_(3.0), target.bias.fill_(0.0)
    polyak_update(target, source, tau=0.25)
    assert target.weight.item() == pytest.approx(0.25 * 1 + 0.75 * 3)
    assert target.bias.item() == pytest.approx(0.25 * -2 + 0.75 * 0)
    polyak_update(target, source, tau=1.0)
    assert target.weight.item() == 1.0 and target.bias.item() == -2.0


def test_dueling_q_is_value_plus_centred_advantage():
    import gymnasium as gym

    net = QNetwork(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4), (16, 16), dueling=True)
    obs = torch.randn(5, 3)
    features = net.trunk(obs)
    advantages = net.advantage_head(features)
    q = net(obs)
    assert torch.allclose(q.mean(-1, keepdim=True), net.value_head(features), atol=1e-6)
    assert torch.allclose(q - q.mean(-1, keepdim=True), advantages - advantages.mean(-1, keepdim=True), atol=1e-6)
