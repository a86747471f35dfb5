"""Evaluation during training (eval_every): logged rows, checkpoints/best.pt holding the agent of the best one,
`plainrl eval --best`, and a resumed run keeping the best of before it."""

import json

import pytest
from typer.testing import CliRunner

import plainrl
from plainrl.cli import app
from plainrl.kit.errors import PlainRLError
from plainrl.kit.run import load_checkpoint_file


def test_evaluations_during_training_are_logged_and_the_best_agent_is_kept(tmp_path):
    run = plainrl.train("ppo", env="CartPole-v1", total_steps=6144, seed=0, eval_every=1024, eval_episodes=5,
                        progress=False, run_dir=tmp_path / "ppo")  # fmt: skip
    rows = [r for r in run.metrics if r.get("eval_return") is not None]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) >= 5 and all(b - a >= 1024 for a, b in zip(steps, steps[1:], strict=False))
    best_row = max(rows, key=lambda r: r["eval_return"])
    best = load_checkpoint_file(run.path, best=True)
    assert best["step"] == best_row["step"] and best["eval_return"] == best_row["eval_return"]
    result = CliRunner().invoke(app, ["eval", str(run.path), "--best", "--episodes", "5"])
    assert result.exit_code == 0, result.output
    # the same 5 deterministic episodes as during training: the same return, from best.pt's weights
    assert json.loads((run.path / "eval_best.json").read_text())["mean_return"] == pytest.approx(
        best_row["eval_return"]
    )


def test_a_run_without_eval_every_has_no_best_checkpoint(tmp_path):
    run = plainrl.train(
        "ppo", env="CartPole-v1", total_steps=512, num_steps=128, progress=False, run_dir=tmp_path / "r"
    )
    assert not any(r.get("eval_return") is not None for r in run.metrics)
    with pytest.raises(PlainRLError, match="has no checkpoints/best.pt: train with eval_every > 0"):
        plainrl.load(run.path, best=True)


def test_a_resumed_run_evaluates_on_schedule_and_keeps_the_best_of_before_it(tmp_path):
    stop_at = 2048
    run = plainrl.train("ppo", env="CartPole-v1", total_steps=4096, seed=1, eval_every=1024, eval_episodes=3,
                        progress=False, run_dir=tmp_path / "ppo",
                        callbacks=[lambda step, agent: step >= stop_at])  # fmt: skip
    before = load_checkpoint_file(run.path, best=True)["eval_return"]
    plainrl.resume(run.path, progress=False)
    rows = [r for r in run.metrics if r.get("eval_return") is not None]
    assert [int(r["step"]) for r in rows][:2] == [1024, 2048] and len(rows) >= 3  # on schedule after the resume
    assert load_checkpoint_file(run.path, best=True)["eval_return"] == max(before, *(r["eval_return"] for r in rows))
