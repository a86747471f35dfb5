import math

import gymnasium as gym
import pytest
import torch

from plainrl.classic import sac
from plainrl.kit.nets import QEnsemble, TanhGaussianActor, squashed_gaussian_sample
from tests.helpers import constant_critic


def test_tanh_gaussian_log_prob_matches_numerical_change_of_variables():
    # p(a) = d/da P(tanh(u) <= a) = d/da Phi((atanh(a) - mean) / std), by central differences of the Gaussian CDF.
    torch.manual_seed(0)
    mean = torch.tensor([[0.3, -1.2], [2.0, 0.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.2], [0.0, -1.0]], dtype=torch.float64)
    actions, log_probs = squashed_gaussian_sample(mean, log_std)
    normal = torch.distributions.Normal(mean, log_std.exp())
    h = 1e-6
    density = (normal.cdf(torch.atanh(actions + h)) - normal.cdf(torch.atanh(actions - h))) / (2 * h)
    assert torch.allclose(log_probs, density.log().sum(-1), atol=1e-4)


def test_tanh_gaussian_log_prob_is_finite_where_tanh_saturates():
    actions, log_probs = squashed_gaussian_sample(torch.tensor([[30.0]]), torch.tensor([[-5.0]]))
    assert actions.item() == 1.0 and math.isfinite(log_probs.item())


def test_actor_actions_lie_within_the_env_bounds():
    obs_space, action_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2.0, 2.0, (1,))
    actor = TanhGaussianActor(obs_space, action_space, (16,), "relu")
    obs = torch.randn(64, 3) * 100
    for deterministic in (True, False):
        actions = actor.act(obs, deterministic)
        assert actions.shape == (64, 1) and actions.abs().max() <= 2.0
    assert torch.equal(actor.to_env(torch.tensor([[-1.0], [1.0]])), torch.tensor([[-2.0], [2.0]]))


def test_q_ensemble_equals_separate_critics():
    ensemble = QEnsemble(3, 1, (8, 8), n=2)
    obs, actions = torch.randn(5, 3), torch.randn(5, 1)
    x = torch.cat([obs, actions], -1)
    for i in range(2):
        h = x
        for layer, (w, b) in enumerate(zip(ensemble.weights, ensemble.biases, strict=True)):
            h = h @ w[i] + b[i]
            h = h.relu() if layer < 2 else h
        assert torch.allclose(ensemble(obs, actions)[i], h.squeeze(-1), atol=1e-6)


def test_detached_critic_passes_gradient_to_actions_only():
    ensemble = QEnsemble(3, 1, (8,), n=2)
    actions = torch.randn(4, 1, requires_grad=True)
    ensemble(torch.randn(4, 3), actions, detach_params=True).sum().backward()
    assert actions.grad is not None and all(p.grad is None for p in ensemble.parameters())


def test_sac_critic_loss_against_hand_computation():
    config = sac.Config(hidden_sizes=(4,), initial_alpha=0.5)
    agent = sac.build_agent(config, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,)))
    agent.critic, agent.target_critic = constant_critic([2.0, 5.0]), constant_critic([1.0, 3.0])
    batch = {"obs": torch.zeros(1, 3), "next_obs": torch.zeros(1, 3), "actions": torch.zeros(1, 1),
             "rewards": torch.tensor([1.0]), "discounts": torch.tensor([0.9]),
             "terminated": torch.tensor([0.0])}  # fmt: skip
    torch.manual_seed(0)
    _, diagnostics = sac.sac_losses(agent, batch, target_entropy=-1.0)
    torch.manual_seed(0)  # the same draws: the policy's sample at s' (row 1 of the joint pass over s and s')
    next_log_prob = agent.actor(torch.zeros(2, 3))[1][1].item()
    y = 1.0 + 0.9 * (min(1.0, 3.0) - 0.5 * next_log_prob)
    expected = 0.5 * ((2.0 - y) ** 2 + (5.0 - y) ** 2)
    assert diagnostics["critic_loss"].item() == pytest.approx(expected, rel=1e-5)
    batch["terminated"] = torch.tensor([1.0])
    _, diagnostics = sac.sac_losses(agent, batch, target_entropy=-1.0)
    assert diagnostics["critic_loss"].item() == pytest.approx(0.5 * ((2.0 - 1.0) ** 2 + (5.0 - 1.0) ** 2))


def test_alpha_rises_when_entropy_is_below_target():
    config = sac.Config(hidden_sizes=(4,))
    agent = sac.build_agent(config, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,)))
    with torch.no_grad():  # a near-deterministic policy: log-probs far above -target_entropy
        agent.actor.net[-1].bias.copy_(torch.tensor([0.0, -10.0]))
        agent.actor.net[-1].weight.zero_()
    batch = {"obs": torch.zeros(8, 3), "next_obs": torch.zeros(8, 3), "actions": torch.zeros(8, 1),
             "rewards": torch.zeros(8), "discounts": torch.ones(8), "terminated": torch.zeros(8)}  # fmt: skip
    loss, _ = sac.sac_losses(agent, batch, target_entropy=-1.0)
    loss.backward()
    assert agent.log_alpha.grad is not None and agent.log_alpha.grad.item() < 0  # gradient descent raises alpha


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_mujoco_presets_train_and_evaluate(env_id, tmp_path):
    pytest.importorskip("mujoco", reason="MuJoCo envs need `pip install plainrl[mujoco]`")

    import plainrl

    settings = ["total_steps=300", "learning_starts=200", "batch_size=32", "hidden_sizes=[16,16]", "eval_episodes=1"]
    run = plainrl.train("sac", env=env_id, run_dir=tmp_path / "run", progress=False,
                                 set_items=settings, seed=0)  # fmt: skip
    assert sac.PRESETS[env_id]["learning_starts"] == 10_000
    assert math.isfinite(run.eval["mean_return"])
