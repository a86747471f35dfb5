"""SFT end to end through the CLI and the library: it learns, it resumes exactly, bad input is one line."""

import json

import pytest
import torch
from typer.testing import CliRunner

import plainrl
from plainrl.cli import app
from plainrl.kit.run import RunInterrupted, load_checkpoint_file
from plainrl.llm import sft
from tests.helpers import interrupt_at

runner = CliRunner()
SMALL = ["tiny_dim=32", "tiny_n_layers=2", "tiny_hidden_dim=64", "batch_size=32", "warmup_steps=2", "eval_n=20"]


def test_cosine_schedule_with_warmup():
    config = sft.Config(total_steps=110, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert sft.learning_rate_at(0, config) == pytest.approx(0.1)
    assert sft.learning_rate_at(9, config) == pytest.approx(1.0)
    assert sft.learning_rate_at(60, config) == pytest.approx(0.55)
    assert sft.learning_rate_at(110, config) == pytest.approx(0.1)


def test_only_target_tokens_are_in_the_loss():
    batch = sft.make_batch([([1, 10, 11], [20, 2]), ([1, 10], [21, 22, 2])], pad_id=0, device=torch.device("cpu"))
    assert batch["ids"].tolist() == [[1, 10, 11, 20, 2], [1, 10, 21, 22, 2]]
    # position t predicts token t + 1: the targets 20, 2 and 21, 22, 2
    assert batch["loss_mask"].tolist() == [[False, False, True, True], [False, True, True, True]]


def test_sft_cli_learns_a_tiny_task_and_eval_llm_reads_the_run(tmp_path):
    data = tmp_path / "copy.jsonl"  # learnable from scratch in a few steps: answer = the prompt's letter
    data.write_text("\n".join(json.dumps({"prompt": f"{c}?", "answer": c}) for c in "abcdefghijklmnopqrstuvwxyz" * 4))
    run_dir = tmp_path / "run"
    args = ["sft", "--task", str(data), "--total-steps", "150", "--run-dir", str(run_dir), "--no-progress"]
    result = runner.invoke(
        app, args + [arg for item in SMALL for arg in ("--set", item)] + ["--set", "learning_rate=1e-2"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "eval.json").read_text())["accuracy"] >= 0.8
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval-llm", "--model", str(run_dir), "--task", str(data), "--n", "5", "--greedy",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy = " in result.output
    record = json.loads(out.read_text())
    assert (
        record["n"] == 5 and {"prompt", "completion", "extracted", "answer", "correct"} <= record["samples"][0].keys()
    )


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    run = dict(task="arithmetic:digits=1,n_test=10", total_steps=12, checkpoint_every=100, progress=False,
               set_items=[*SMALL, "eval_every=0"])  # fmt: skip
    plainrl.train("sft", run_dir=tmp_path / "straight", **run)
    with pytest.raises(RunInterrupted):  # Ctrl-C after step 5: the stop is honoured at the next step
        plainrl.train("sft", run_dir=tmp_path / "cut", callbacks=[interrupt_at(5)], **run)
    assert load_checkpoint_file(tmp_path / "cut")["step"] == 6
    plainrl.resume(tmp_path / "cut", progress=False)
    straight = load_checkpoint_file(tmp_path / "straight")["model"]
    resumed = load_checkpoint_file(tmp_path / "cut")["model"]
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=0, rtol=0)


def test_lora_sft_on_the_builtin_model_saves_adapters(tmp_path):
    plainrl.train("sft", task="arithmetic:digits=1,n_test=10", total_steps=3, lora_rank=2, run_dir=tmp_path / "lora",
                  set_items=[*SMALL, "eval_every=0"], progress=False)  # fmt: skip
    assert (tmp_path / "lora" / "adapter" / "adapter.safetensors").is_file()
    saved = load_checkpoint_file(tmp_path / "lora")["model"]
    assert saved and all("lora_" in name for name in saved)


@pytest.mark.parametrize(
    "args, message",
    [
        (["sft", "--task", "arithmetc"], "unknown task 'arithmetc' (did you mean: arithmetic"),
        (["sft", "--model", "gpt5"], "unknown model 'gpt5'"),
        (["sft", "--set", "batch_size=0"], "batch_size = 0 must be >= 1"),
        (["sft", "--lora-rank", "-1"], "lora_rank = -1 must be >= 0"),
        (["eval-llm", "--model", "tiny", "--task", "arithmetic", "--n", "0"], "--n 0 must be >= 1"),
        (["eval-llm", "--model", "nope", "--task", "arithmetic"], "unknown model 'nope'"),
    ],
)
def test_bad_llm_input_gives_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "r")] if args[0] == "sft" else args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_the_last_step_is_evaluated_once(tmp_path, monkeypatch):
    """eval.json reuses the loop's evaluation of the last step instead of decoding the held-out set again."""
    from plainrl.llm import evaluate

    calls = []
    real = evaluate.evaluate_policy

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_policy", counting)
    plainrl.train("sft", task="arithmetic:digits=1,n_test=10", total_steps=4, set_items=[*SMALL, "eval_every=2"],
                  run_dir=tmp_path, progress=False)  # fmt: skip
    assert len(calls) == 2  # steps 2 and 4
    logged = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()]
    accuracy_column = logged[0].index("accuracy")
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == float(logged[-1][accuracy_column])
