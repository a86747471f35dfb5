"""GRPO: KL estimators, each loss aggregation against hand computation, the mu = 1 identity, advantages, learning."""

import math

import pytest
import torch

import plainrl
from plainrl.llm import grpo
from plainrl.llm.generate import SamplingParams, generate
from plainrl.llm.policies import load_policy


def test_kl_estimators_against_the_exact_kl_of_two_categoricals():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])  # the policy: tokens are sampled from it
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])  # the reference
    exact = float((p * (p / q).log()).sum())
    generator = torch.Generator().manual_seed(0)
    tokens = torch.multinomial(p, 400_000, replacement=True, generator=generator)
    logprobs, ref_logprobs = p.log()[tokens], q.log()[tokens]
    k1, k2, k3 = (grpo.kl_penalty(logprobs, ref_logprobs, k) for k in ("k1", "k2", "k3"))
    assert k1.mean().item() == pytest.approx(exact, abs=0.005)  # unbiased
    assert k3.mean().item() == pytest.approx(exact, abs=0.005)  # unbiased
    assert (k2 >= 0).all() and (k3 >= 0).all()  # non-negative per sample
    assert (k1 < 0).any()  # k1 alone is not: a sampled token can be likelier under the reference
    assert abs(k2.mean().item() - exact) > 0.01  # k2 is biased


def batch():
    """B = 2 completions, N = 3 tokens; the first is 2 tokens long."""
    old = torch.log(torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.6, 0.1]]))
    new = old.clone()
    new[0, 0] += math.log(1.5)  # ratio 1.5 on a positive-advantage token: clipped at 1.2
    mask = torch.tensor([[True, True, False], [True, True, True]])
    return new, old, torch.tensor([1.0, -2.0]), mask


@pytest.mark.parametrize(
    "aggregation, expected",
    [
        ("sequence_mean", ((-1.2 - 1.0) / 2 + (2 + 2 + 2) / 3) / 2),  # per completion, then over completions: 0.45
        ("token_mean", (-1.2 - 1.0 + 2 + 2 + 2) / 5),  # every token the same weight: 0.76
        ("constant", (-1.2 - 1.0 + 2 + 2 + 2) / (2 * 4)),  # / (B * max_new_tokens = 4): 0.475
    ],
)
def test_grpo_loss_of_each_aggregation_matches_hand_computation(aggregation, expected):
    new, old, advantages, mask = batch()
    loss, diagnostics = grpo.grpo_loss(new, old, advantages, mask, 0.2, 0.2, aggregation, max_new_tokens=4)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert diagnostics["clip_high_fraction"].item() == pytest.approx(1 / 5)


def test_kl_term_and_clip_higher():
    new, old, advantages, mask = batch()
    ref = new + math.log(0.5)  # r = pi_ref / pi = 0.5 on every token: k3 = 0.5 - 1 - log 0.5
    loss, diagnostics = grpo.grpo_loss(new, old, advantages, mask, 0.2, 0.2, "sequence_mean", 4, 0.1, ref, "k3")
    k3 = 0.5 - 1 - math.log(0.5)
    assert diagnostics["kl"].item() == pytest.approx(k3, abs=1e-6)
    assert loss.item() == pytest.approx(0.45 + 0.1 * k3, abs=1e-6)
    # Clip-higher: epsilon_high = 0.6 lets ratio 1.5 through unclipped.
    loss, _ = grpo.grpo_loss(new, old, advantages, mask, 0.2, 0.6, "sequence_mean", 4)
    assert loss.item() == pytest.approx(((-1.5 - 1.0) / 2 + 2) / 2, abs=1e-6)


def test_group_advantages():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()  # 0.57735
    scaled = grpo.group_advantages(rewards, group_size=4)
    up, down = 0.5 / (std + 1e-4), -0.5 / (std + 1e-4)
    assert scaled[:4].tolist() == pytest.approx([up, down, down, up], abs=1e-5)
    assert scaled[4:].tolist() == [0.0] * 4  # a group that all agrees teaches nothing
    assert grpo.group_advantages(rewards, 4, scale=False)[:4].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_one_iteration_has_ratio_one_and_the_plain_policy_gradient():
    torch.manual_seed(0)
    model, tokenizer = load_policy("tiny", "cpu", dim=32, n_layers=2, hidden_dim=64)
    prompts = [tokenizer.prompt_ids(p) for p in ["1+2=", "3+4=", "5+6=", "7+8="]]
    rollout = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=5), torch.Generator().manual_seed(0))
    rows = torch.arange(4)
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0])
    mask = rollout.completion_mask.float()

    logprobs, _ = grpo.completion_logprobs_entropy(model, rollout, rows, temperature=1.0)
    loss, _ = grpo.grpo_loss(logprobs, logprobs.detach(), advantages, rollout.completion_mask, 0.2, 0.2,
                             "sequence_mean", 5)  # fmt: skip
    assert torch.equal(torch.exp(logprobs - logprobs.detach()), torch.ones_like(logprobs))
    grads = torch.autograd.grad(loss, list(model.parameters()))

    logprobs, _ = grpo.completion_logprobs_entropy(model, rollout, rows, temperature=1.0)
    policy_gradient_loss = (-(advantages[:, None] * logprobs * mask).sum(1) / mask.sum(1)).mean()
    reference_grads = torch.autograd.grad(policy_gradient_loss, list(model.parameters()))
    for got, want in zip(grads, reference_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-7)


def digit_fraction(prompt: str, completion: str, answer: str) -> float:
    """A dense verifiable reward for the learning test: the share of the completion's characters that are digits."""
    return sum(c.isdigit() for c in completion) / max(len(completion), 1)


@pytest.mark.slow
def test_grpo_learns_a_verifiable_reward(tmp_path):
    """From an untrained tiny model (reward ~0.1), GRPO must push the digit share of completions far up within
    12 steps; with the advantage sign flipped it falls towards 0 instead. Two passes per batch (mu = 2) so the
    ratio and clipping are exercised too."""
    import csv

    settings = ["eval_every=0", "eval_n=10", "max_new_tokens=8", "beta=0.01", "prompts_per_step=8", "group_size=8",
                "learning_rate=3e-3", "num_iterations=2", 'rewards=["tests.llm.test_grpo:digit_fraction"]']  # fmt: skip
    plainrl.train(
        "grpo",
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


def test_grpo_cli_errors_and_a_short_run_that_resumes(tmp_path):
    from typer.testing import CliRunner

    from plainrl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["grpo", "--model", "tiny", "--set", "kl_estimator=k4"])
    assert result.exit_code == 2 and "kl_estimator = 'k4' is not one of k1, k2, k3" in result.stderr
    result = runner.invoke(app, ["grpo", "--model", "tiny", "--set", "group_size=1"])
    assert result.exit_code == 2 and "group_size = 1 must be >= 2" in result.stderr
    result = runner.invoke(app, ["grpo", "--model", "tiny", "--set", 'rewards=["accuracy", "format"]',
                                 "--set", "reward_weights=[1.0]"])  # fmt: skip
    assert result.exit_code == 2 and "reward_weights = [1.0] must have one weight per reward (2)" in result.stderr
    result = runner.invoke(app, ["grpo", "--model", "no/such/model"])
    assert result.exit_code == 2 and "unknown model 'no/such/model'" in result.stderr

    run_dir = tmp_path / "run"
    args = ["grpo", "--model", "tiny", "--task", "arithmetic:digits=1,n_test=10", "--total-steps", "2",
            "--run-dir", str(run_dir), "--no-progress", "--set", "prompts_per_step=2", "--set", "group_size=2",
            "--set", "max_new_tokens=3", "--set", "eval_n=4", "--set", "checkpoint_every=1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ["config.toml", "metrics.csv", "eval.json", "curve.png", "checkpoints/latest.pt"]:
        assert (run_dir / name).exists(), name
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    logged = ["reward", "reward/accuracy", "kl", "clip_low_fraction", "clip_high_fraction", "entropy",
              "completion_length", "tokens_per_second", "rollout_seconds", "update_seconds", "accuracy"]  # fmt: skip
    assert set(logged) <= set(header)
    result = runner.invoke(app, ["eval-llm", "--model", str(run_dir), "--task", "arithmetic:digits=1,n_test=10",
                                 "--n", "4", "--greedy", "--out", str(tmp_path / "e.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
