"""PPO for LLMs: per-token rewards with the KL penalty and token-level GAE against hand computation, the critic
read at completion positions only, the clipped losses, a seeded learning test, and a run with a reward model."""

import csv

import pytest
import torch

import plainrl
from plainrl.llm import ppo
from plainrl.llm.generate import SamplingParams, generate
from plainrl.llm.policies import load_policy
from plainrl.llm.reward_model import ScalarModel


def test_token_rewards_and_gae_match_hand_computation():
    # Two completions: 3 tokens, and 2 tokens + padding. kl_coef 0.5, gamma 0.9, lambda 0.5.
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logprobs = torch.tensor([[-1.0, -2.0, -1.0], [-0.5, -1.0, 0.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -1.0], [-0.5, -2.0, 0.0]])
    scores = torch.tensor([1.0, -1.0])
    rewards, kl = ppo.token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef=0.5)
    # kl = log pi - log pi_ref: [0.5, -1, 0] and [0, 1, -]; reward = -0.5 kl, + score on the last token
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.25, 0.5, 1.0], [0.0, -1.5, 0.0]]))

    values = torch.tensor([[0.2, 0.4, 0.6], [0.1, -0.3, 0.0]])
    advantages, returns = ppo.token_gae(rewards, values, mask, gamma=0.9, gae_lambda=0.5)
    # Row 0: deltas = r_t + 0.9 V_{t+1} - V_t with V_3 = 0 (the episode ends on the last token)
    d = [-0.25 + 0.9 * 0.4 - 0.2, 0.5 + 0.9 * 0.6 - 0.4, 1.0 - 0.6]
    a2 = d[2]
    a1 = d[1] + 0.45 * a2
    a0 = d[0] + 0.45 * a1
    # Row 1: nothing bootstraps from the padding after token 1
    e = [0.0 + 0.9 * -0.3 - 0.1, -1.5 - (-0.3)]
    b1 = e[1]
    b0 = e[0] + 0.45 * b1
    assert torch.allclose(advantages, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]), atol=1e-6)
    assert torch.allclose(returns, (advantages + values) * mask, atol=1e-6)


def test_ppo_losses_match_hand_computation():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = old + torch.log(torch.tensor([[1.5, 0.9]]))  # ratios 1.5 (clipped to 1.2 for A > 0) and 0.9
    advantages = torch.tensor([[1.0, -1.0]])
    values, old_values, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]])
    mask = torch.tensor([[True, True]])
    policy_loss, value_loss, clip_fraction = ppo.ppo_losses(new, old, advantages, values, old_values, returns, mask,
                                                            0.2, 0.2)  # fmt: skip
    assert policy_loss.item() == pytest.approx(-(1.2 * 1.0 + 0.9 * -1.0) / 2)
    # token 0: max((1 - 0)^2, (0.7 - 0)^2) = 1; token 1: max(1, 1) = 1
    assert value_loss.item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)
    assert clip_fraction.item() == pytest.approx(0.5)


def test_the_critic_sees_completion_positions_only(device):
    """Value t is the critic's output just before completion token t, and no gradient reaches the outputs at
    prompt or padding positions."""
    torch.manual_seed(0)
    model, tokenizer = load_policy("tiny", device)
    prompts = [tokenizer.prompt_ids("12+34="), tokenizer.prompt_ids("1+2=")]
    rollout = generate(
        model, tokenizer, prompts, SamplingParams(max_new_tokens=4), torch.Generator(device).manual_seed(0)
    )
    critic = ScalarModel(model).to(device)
    outputs = []
    critic.head.register_forward_hook(lambda module, args, out: outputs.append(out) or out.retain_grad())
    rows = torch.arange(2, device=device)
    values = ppo.completion_values(critic, rollout, rows)
    mask = rollout.completion_mask
    assert (values[~mask] == 0).all()
    P = rollout.prompt_ids.shape[1]
    for row in range(2):  # value of token t == the critic on the prompt + the completion's first t tokens
        prompt = rollout.prompt_ids[row][rollout.prompt_mask[row]].tolist()
        for t in range(int(mask[row].sum())):
            ids = torch.tensor([prompt + rollout.completion_ids[row, :t].tolist()], device=device)
            assert values[row, t].item() == pytest.approx(critic(ids)[0, -1].item(), abs=1e-4)
    values[mask.clone()].sum().backward()
    grad = outputs[0].grad.squeeze(-1)  # (B, P + N)
    used = torch.zeros_like(grad, dtype=torch.bool)
    used[:, P - 1 : -1] = mask
    assert (grad[~used] == 0).all() and (grad[used] != 0).all()


def digit_fraction(prompt: str, completion: str, answer: str) -> float:
    return sum(c.isdigit() for c in completion) / max(len(completion), 1)


@pytest.mark.slow
def test_ppo_learns_a_verifiable_reward(tmp_path):
    """From an untrained tiny model (digit share ~0.1), 12 PPO steps push the reward to >= 0.5; with the
    advantage sign flipped it falls instead."""
    settings = ["eval_every=0", "eval_n=10", "max_new_tokens=8", "prompts_per_step=32", "learning_rate=3e-3",
                "ppo_epochs=2", "num_minibatches=2", "kl_coef=0.01", "stop_strings=[]",
                'rewards=["tests.llm.test_ppo_llm:digit_fraction"]']  # fmt: skip
    plainrl.train(
        "ppo-llm",
        task="arithmetic:digits=1,n_test=10",
        total_steps=12,
        set_items=settings,
        run_dir=tmp_path,
        progress=False,
    )
    with (tmp_path / "metrics.csv").open() as f:
        rewards = [float(row["reward"]) for row in csv.DictReader(f)]
    assert rewards[0] < 0.2
    assert sum(rewards[-3:]) / 3 >= 0.5


def test_ppo_with_a_reward_model_and_the_cli(tmp_path):
    import json

    from typer.testing import CliRunner

    from plainrl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["ppo-llm", "--model", "tiny", "--set", "gae_lambda=2"])
    assert result.exit_code == 2 and "gae_lambda = 2.0 must be in [0, 1]" in result.stderr
    result = runner.invoke(app, ["ppo-llm", "--model", "tiny", "--set", "rewards=[]"])
    assert result.exit_code == 2 and "rewards must name at least one reward" in result.stderr
    result = runner.invoke(app, ["ppo-llm", "--model", "tiny", "--set", "num_minibatches=100"])
    assert result.exit_code == 2 and "num_minibatches = 100 must be in [1, prompts_per_step = 64]" in result.stderr

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"{a}+1=", "chosen": str(a + 1), "rejected": "x"})
                               for a in range(10)))  # fmt: skip
    task = ["--task", "arithmetic:digits=1,n_test=10"]
    rm_dir, ppo_dir = tmp_path / "rm", tmp_path / "ppo"
    result = runner.invoke(app, ["reward-model", "--model", "tiny", *task, "--pairs", str(pairs), "--total-steps",
                                 "2", "--run-dir", str(rm_dir), "--no-progress", "--set", "batch_size=4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    args = ["ppo-llm", "--model", "tiny", *task, "--reward-model", str(rm_dir), "--total-steps", "2", "--run-dir",
            str(ppo_dir), "--no-progress", "--set", "prompts_per_step=4", "--set", "num_minibatches=2",
            "--set", "max_new_tokens=3", "--set", "eval_n=4", "--set", "checkpoint_every=1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ["config.toml", "metrics.csv", "eval.json", "curve.png", "checkpoints/latest.pt"]:
        assert (ppo_dir / name).exists(), name
    header = (ppo_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    logged = ["reward", "kl", "policy_loss", "value_loss", "clip_fraction", "entropy", "explained_variance",
              "completion_length", "accuracy"]  # fmt: skip
    assert set(logged) <= set(header)


def test_gae_over_a_conversation_skips_environment_tokens_and_bootstraps_across_them():
    # Model tokens at 0, 1 (turn 1) and 4 (turn 2); tokens 2, 3 are the environment's reply. Turn rewards 0.5 at
    # token 1 and 2.0 at token 4; kl_coef 0; gamma 0.9, lambda 0.5. The reply is not a step: token 1's next value
    # is token 4's, and its advantage carries token 4's.
    mask = torch.tensor([[True, True, False, False, True]])
    zeros = torch.zeros(1, 5)
    rewards, _ = ppo.token_rewards(torch.tensor([[0.5, 2.0]]), zeros, zeros, mask, 0.0, at=torch.tensor([[1, 4]]))
    assert torch.equal(rewards, torch.tensor([[0.0, 0.5, 0.0, 0.0, 2.0]]))
    values = torch.tensor([[0.1, 0.2, 9.0, 9.0, 0.3]])  # the values at 2, 3 are never read
    advantages, returns = ppo.token_gae(rewards, values, mask, gamma=0.9, gae_lambda=0.5)
    d4 = 2.0 - 0.3
    d1 = 0.5 + 0.9 * 0.3 - 0.2
    d0 = 0.0 + 0.9 * 0.2 - 0.1
    a4, a1 = d4, d1 + 0.45 * d4
    a0 = d0 + 0.45 * a1
    assert torch.allclose(advantages, torch.tensor([[a0, a1, 0.0, 0.0, a4]]), atol=1e-6)
    assert torch.allclose(returns, (advantages + values) * mask, atol=1e-6)
