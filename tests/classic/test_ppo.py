import math

import pytest
import torch

import plainrl
from plainrl.classic import ppo
from plainrl.kit.config import build_config


def test_ppo_loss_matches_hand_computation():
    # Two samples. Sample 0: ratio e^0.5 = 1.6487 > 1 + clip with A > 0 -> clipped at 1.2.
    # Sample 1: ratio e^-0.1 = 0.9048, inside the clip range, A < 0 -> unclipped.
    new_lp, old_lp = torch.tensor([-0.5, -1.1]), torch.tensor([-1.0, -1.0])
    adv = torch.tensor([2.0, -1.0])
    new_v, old_v, ret = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.0]), torch.tensor([2.0, 1.0])
    entropy = torch.tensor([0.6, 0.4])
    loss, diag = ppo.ppo_loss(new_lp, old_lp, adv, new_v, old_v, ret, entropy, clip_coef=0.2,
                              clip_vloss=False, vf_coef=0.5, ent_coef=0.01)  # fmt: skip
    r1 = math.exp(-0.1)
    policy_loss = (-(2.0 * 1.2) + -(-1.0 * r1)) / 2  # -mean(min(r A, clip(r) A))
    value_loss = ((1.0 - 2.0) ** 2 + (0.0 - 1.0) ** 2) / 2
    assert diag["policy_loss"].item() == pytest.approx(policy_loss, abs=1e-6)
    assert diag["value_loss"].item() == pytest.approx(value_loss, abs=1e-6)
    assert loss.item() == pytest.approx(policy_loss + 0.5 * value_loss - 0.01 * 0.5, abs=1e-6)
    assert diag["clip_fraction"].item() == pytest.approx(0.5)
    approx_kl = ((math.exp(0.5) - 1 - 0.5) + (r1 - 1 + 0.1)) / 2
    assert diag["approx_kl"].item() == pytest.approx(approx_kl, abs=1e-6)

    # Value clipping: new value 1.0 moved 0.5 from the old 0.5, clipped to 0.7; max of the two errors.
    _, clipped = ppo.ppo_loss(new_lp, old_lp, adv, new_v, old_v, ret, entropy, 0.2, True, 0.5, 0.01)
    assert clipped["value_loss"].item() == pytest.approx((max(1.0, (0.7 - 2.0) ** 2) + 1.0) / 2, abs=1e-6)


def test_ppo_loss_gradient_pushes_up_the_probability_of_positive_advantage_actions():
    new_lp = torch.tensor([-1.0, -1.0], requires_grad=True)
    loss, _ = ppo.ppo_loss(new_lp, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, -1.0]), torch.zeros(2),
                           torch.zeros(2), torch.zeros(2), torch.zeros(2), 0.2, False, 0.0, 0.0)  # fmt: skip
    loss.backward()
    assert new_lp.grad[0] < 0 < new_lp.grad[1]  # descending the loss raises log pi for A > 0, lowers it for A < 0


def test_bad_hyperparameters_are_rejected():
    from plainrl.kit.errors import ConfigError

    for item, message in [
        ("learning_rate=0", "learning_rate = 0.0 must be > 0"),
        ("clip_coef=-0.1", "clip_coef = -0.1 must be > 0"),
        ("num_minibatches=10000", "num_minibatches = 10000 must be in"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_config(ppo.Config, ppo.PRESETS, {"env": "CartPole-v1"}, set_items=[item])


@pytest.mark.slow
def test_ppo_learns_cartpole(tmp_path):
    """Seeded learning test: a broken loss sign or GAE keeps the return near 20, far from the threshold."""
    run = plainrl.train(
        "ppo", env="CartPole-v1", run_dir=tmp_path / "run", progress=False,
        set_items=["eval_episodes=10"], seed=0,  # the full CartPole preset (100k steps, ~20 s)
    )  # fmt: skip
    result = run.eval
    assert result["episodes"] == 10
    assert result["mean_return"] >= 475


def test_saved_run_evaluates_with_its_observation_statistics(tmp_path):
    """CleanRL #425 / SB3 #468: `plainrl eval` must use the normalisation statistics the run trained with."""
    trained = []  # the agent as training left it, handed to every callback
    plainrl.train("ppo", env="CartPole-v1", total_steps=2048, normalize_obs=True, eval_episodes=0, run_dir=tmp_path,
                  progress=False, callbacks=[lambda step, agent: trained.append(agent) or False])  # fmt: skip
    agent = trained[-1]
    assert agent.obs_normalizer.count.item() > 1000  # statistics really moved during training
    loaded = plainrl.load(tmp_path).module
    assert torch.equal(loaded.obs_normalizer.mean, agent.obs_normalizer.mean)
    assert torch.equal(loaded.obs_normalizer.var, agent.obs_normalizer.var)
    obs = torch.randn(16, 4)
    assert torch.equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    from plainrl.kit.evaluate import agent_policy, evaluate_episodes

    expected = evaluate_episodes(agent_policy(agent), "CartPole-v1", 3, seed=0)
    assert plainrl.evaluate(tmp_path, episodes=3) == expected


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_continuous_actions_train_and_evaluate(algo, tmp_path):
    """Box actions: Gaussian head, clipped env actions, normalisation on; the run completes with finite numbers."""
    run = plainrl.train(
        algo, env="Pendulum-v1", run_dir=tmp_path / "run", progress=False,
        set_items=["total_steps=2048", "num_envs=2", "num_steps=64", "eval_episodes=1"],
    )  # fmt: skip
    result = run.eval
    assert -2000 < result["mean_return"] <= 0  # Pendulum's returns are negative, 200 steps of at most -16.3
    agent = plainrl.load(run.path).module
    assert agent.head.log_std.shape == (1,)
    assert agent.obs_normalizer.count.item() > 1000  # the Pendulum preset normalises observations
