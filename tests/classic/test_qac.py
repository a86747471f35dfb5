import gymnasium as gym
import pytest
import torch

from plainrl.classic import qac

OBS = gym.spaces.Box(-1, 1, (3,))


@pytest.mark.parametrize("space", [gym.spaces.Discrete(2), gym.spaces.Box(-2, 2, (1,))])
def test_q_critic_takes_either_action_space(space):
    agent = qac.build_agent(qac.Config(hidden_sizes=(8,)), OBS, space)
    obs = torch.randn(5, 3)
    actions = agent.act(obs)
    assert agent.q(obs, actions).shape == (5,)


def test_policy_loss_is_minus_log_prob_times_fixed_q():
    config = qac.Config(hidden_sizes=(8,), q_coef=0.0)
    agent = qac.build_agent(config, OBS, gym.spaces.Discrete(2))
    with torch.no_grad():  # Q(s, a) = 2 everywhere
        for p in agent.critic.parameters():
            p.zero_()
        agent.critic.biases[-1].fill_(2.0)
    obs, actions = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    data = {"obs": obs, "actions": actions, "next_obs": obs, "rewards": torch.zeros(4), "terminated": torch.ones(4)}
    loss, diagnostics = qac.qac_loss(agent, data, config)
    log_probs = agent.actor(obs).log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    assert loss.item() == pytest.approx(-(2.0 * log_probs).mean().item(), rel=1e-5)
    assert diagnostics["q_loss"].item() == pytest.approx(4.0)  # terminal steps: y = r = 0, Q = 2
