"""DPO: the loss against hand computation, log 2 when the policy is the reference, the cached reference
log-probs, a seeded learning test that a sign flip fails, and the CLI (errors, run folder, resume)."""

import csv
import json
import math

import pytest
import torch

import plainrl
from plainrl.llm import dpo
from plainrl.llm.policies import load_policy
from plainrl.llm.preferences import PreferencePair, pair_batch, sequence_logprob_sums, tokenize_pairs


def test_dpo_loss_matches_hand_computation():
    # h = (log pi_w - log pi_l) - (ref_w - ref_l) = (-1 + 3) - (-2 + 2) = 2; beta h = 1
    pc, pr, rc, rr = (torch.tensor([x]) for x in (-1.0, -3.0, -2.0, -2.0))
    losses, chosen_rewards, rejected_rewards = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)  # -log sigmoid(1) = 0.3133
    assert chosen_rewards.item() == pytest.approx(0.5) and rejected_rewards.item() == pytest.approx(-0.5)
    smoothed, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    expected = 0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.exp(1))
    assert smoothed.item() == pytest.approx(expected, abs=1e-6)
    ipo, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo")
    assert ipo.item() == pytest.approx((2 - 1 / (2 * 0.5)) ** 2)  # = 1


def pairs():
    return [PreferencePair("1+2=", "3", "4"), PreferencePair("12+30=", "42", "41"), PreferencePair("5+5=", "10", "9")]


def test_loss_is_log_2_when_the_policy_is_the_reference():
    torch.manual_seed(0)
    model, tokenizer = load_policy("tiny")
    batch = pair_batch(tokenize_pairs(pairs(), tokenizer), tokenizer.pad_id, "cpu")
    chosen, rejected, _ = dpo.pair_logprobs(model, batch, "sigmoid")
    ref = dpo.reference_logprobs(model, tokenize_pairs(pairs(), tokenizer), tokenizer.pad_id, "sigmoid", 2)
    losses, _, _ = dpo.dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], beta=0.1)
    assert torch.allclose(losses, torch.full((3,), math.log(2)), atol=1e-5)  # -log sigmoid(0)


def test_sequence_logprobs_sum_the_completion_tokens_only():
    torch.manual_seed(0)
    model, tokenizer = load_policy("tiny")
    tokenized = tokenize_pairs(pairs(), tokenizer)
    sums, counts = sequence_logprob_sums(model, pair_batch(tokenized, tokenizer.pad_id, "cpu"))
    prompt, chosen, _ = tokenized[1]  # "12+30=" -> "42" + EOS, alone (no padding)
    ids = torch.tensor([prompt + chosen])
    log_probs = model(ids).log_softmax(-1)[0]
    by_hand = sum(float(log_probs.detach()[len(prompt) - 1 + i, token]) for i, token in enumerate(chosen))
    assert sums[1].item() == pytest.approx(by_hand, abs=1e-4)
    assert counts.tolist() == [2, 3, 3, 2, 3, 2]  # "3"+EOS, "42"+EOS, "10"+EOS, then the rejected ones


def write_pairs(path):
    """Single-digit sums: chosen the right answer, rejected it with a 0 appended (ten times too large)."""
    lines = [
        json.dumps({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": f"{a + b}0"})
        for a in range(10)
        for b in range(10)
    ]
    path.write_text("\n".join(lines))


def test_dpo_learns_the_preferred_completions(tmp_path):
    """From an untrained tiny model (held-out pairs ranked at chance), 20 DPO steps rank >= 90% of the held-out
    pairs right. A flipped loss sign ranks them wrong instead."""
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(pairs_file)
    settings = [f"pairs={str(pairs_file)!r}", "eval_every=10", "eval_n=10", "learning_rate=1e-3", "batch_size=32",
                "test_fraction=0.2", "max_new_tokens=3", "beta=0.5"]  # fmt: skip
    plainrl.train(
        "dpo",
        task="arithmetic:digits=1,n_test=10",
        total_steps=20,
        set_items=settings,
        run_dir=tmp_path / "run",
        progress=False,
    )
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    held_out = [float(r["held_out_preference_accuracy"]) for r in rows if r["accuracy"]]
    assert held_out[-1] >= 0.9
    assert float(rows[-1]["reward_margin"]) > 0.5


def test_dpo_cli_errors_and_a_short_run_that_resumes(tmp_path):
    from typer.testing import CliRunner

    from plainrl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["dpo", "--model", "tiny", "--set", "loss_type=kto"])
    assert result.exit_code == 2 and "loss_type = 'kto' is not one of sigmoid, ipo" in result.stderr
    result = runner.invoke(app, ["dpo", "--model", "tiny", "--set", "beta=0"])
    assert result.exit_code == 2 and "beta = 0.0 must be > 0" in result.stderr
    result = runner.invoke(app, ["dpo", "--model", "tiny", "--pairs", "no/such.jsonl"])
    assert result.exit_code == 2 and "pairs = 'no/such.jsonl': no such file" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "chosen": "2"}\n')
    result = runner.invoke(app, ["dpo", "--model", "tiny", "--pairs", str(bad), "--run-dir", str(tmp_path / "b")])
    assert result.exit_code == 2 and "bad.jsonl:1 is not a JSON object with prompt, chosen, rejected" in result.stderr

    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(pairs_file)
    run_dir = tmp_path / "run"
    args = ["dpo", "--model", "tiny", "--task", "arithmetic:digits=1,n_test=10", "--pairs", str(pairs_file),
            "--total-steps", "2", "--run-dir", str(run_dir), "--no-progress", "--set", "batch_size=4",
            "--set", "eval_n=4", "--set", "checkpoint_every=1", "--set", "max_new_tokens=3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ["config.toml", "metrics.csv", "eval.json", "curve.png", "checkpoints/latest.pt", "pairs_train.jsonl"]:
        assert (run_dir / name).exists(), name
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"rewards_chosen", "rewards_rejected", "reward_margin", "preference_accuracy", "accuracy"} <= set(header)
    config_text = (run_dir / "config.toml").read_text().replace("total_steps = 2", "total_steps = 3")
    (run_dir / "config.toml").write_text(config_text)
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    steps = [int(r["step"]) for r in csv.DictReader((run_dir / "metrics.csv").open())]
    assert steps == [1, 2, 3]
