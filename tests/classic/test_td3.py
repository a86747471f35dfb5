import gymnasium as gym
import pytest
import torch

from plainrl.classic import ddpg, td3
from plainrl.kit.nets import QEnsemble
from tests.helpers import constant_critic

OBS, ACTIONS = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,))


def _batch(terminated: float = 0.0) -> dict[str, torch.Tensor]:
    return {"obs": torch.zeros(1, 3), "next_obs": torch.zeros(1, 3), "actions": torch.zeros(1, 1),
            "rewards": torch.tensor([1.0]), "discounts": torch.tensor([0.9]),
            "terminated": torch.tensor([terminated])}  # fmt: skip


def test_td3_target_takes_the_min_of_the_twin_target_critics():
    config = td3.Config(hidden_sizes=(4,))
    agent = td3.build_agent(config, OBS, ACTIONS)
    agent.critic, agent.target_critic = constant_critic([2.0, 5.0]), constant_critic([4.0, 3.0])
    _, diagnostics = td3.td3_losses(agent, _batch(), config, update_actor=False)
    y = 1.0 + 0.9 * 3.0
    assert diagnostics["critic_loss"].item() == pytest.approx((2.0 - y) ** 2 + (5.0 - y) ** 2)
    _, diagnostics = td3.td3_losses(agent, _batch(terminated=1.0), config, update_actor=False)
    assert diagnostics["critic_loss"].item() == pytest.approx((2.0 - 1.0) ** 2 + (5.0 - 1.0) ** 2)


def test_delayed_actor_gets_no_gradient_on_critic_only_steps():
    config = td3.Config(hidden_sizes=(8,))
    agent = td3.build_agent(config, OBS, ACTIONS)
    loss, diagnostics = td3.td3_losses(agent, _batch(), config, update_actor=False)
    loss.backward()
    assert "actor_loss" not in diagnostics and all(p.grad is None for p in agent.actor.parameters())
    agent.zero_grad(set_to_none=True)
    loss, diagnostics = td3.td3_losses(agent, _batch(), config, update_actor=True)
    loss.backward()
    assert all(p.grad is not None for p in agent.actor.parameters())
    assert all(p.grad is None for p in agent.target_actor.parameters())


def test_actor_loss_is_minus_q_of_the_actor_action():
    # Q(s, a) = 0 * s + 1 * a, so L_mu = -mean(mu(s)) and its gradient pushes mu(s) up.
    config = td3.Config(hidden_sizes=(4,))
    agent = td3.build_agent(config, OBS, ACTIONS)
    critic = QEnsemble(3, 1, (), n=2)
    with torch.no_grad():
        critic.weights[0].zero_(), critic.biases[0].zero_()
        critic.weights[0][:, 3, 0] = 1.0
    agent.critic = critic
    _, diagnostics = td3.td3_losses(agent, _batch(), config, update_actor=True)
    assert diagnostics["actor_loss"].item() == pytest.approx(-agent.actor(torch.zeros(1, 3)).item(), abs=1e-6)


def test_ddpg_is_td3_with_one_critic_no_smoothing_no_delay():
    config = ddpg.Config()
    assert (config.n_critics, config.policy_delay, config.target_policy_noise) == (1, 1, 0.0)
    assert ddpg.build_agent(config, OBS, ACTIONS).critic(torch.zeros(2, 3), torch.zeros(2, 1)).shape == (1, 2)
    with pytest.raises(Exception, match="n_critics"):
        ddpg.Config(n_critics=2).validate()
