"""Bad input: one clear error line on stderr and exit code 2, before any training starts."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from plainrl.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "ppo", "--env", "CartPol-v1"], "unknown env id 'CartPol-v1' (did you mean: CartPole-v1"),
        (["train", "pop", "--env", "CartPole-v1"], "unknown algorithm 'pop' (did you mean: ppo"),
        (
            ["train", "dqn", "--env", "tests.helpers:MultiBinaryEnv"],
            "dqn cannot handle the MultiBinary action space",
        ),
        (["train", "reinforce", "--env", "tests.helpers:ImageCueEnv"], "reinforce cannot handle the Image observation"),
        (["train", "ppo", "--set", "gamma=1.5"], "gamma = 1.5 must be in (0, 1]"),
        (["train", "ppo", "--set", "learning_rate=-1"], "learning_rate = -1.0 must be > 0"),
        (["train", "ppo", "--set", "clip_coef=0"], "clip_coef = 0.0 must be > 0"),
        (["train", "ppo", "--set", "gama=0.9"], "unknown key 'gama' in --set (did you mean: gamma"),
        (["train", "ppo", "--set", "gamma"], "is not of the form key=value"),
        (["train", "ppo", "--total-steps", "0"], "total_steps = 0 must be > 0"),
        (["train", "ppo", "--device", "tpu"], "device = 'tpu' is not one of"),
        (["eval", "no/such/run"], "'no/such/run' holds no run"),
        (["resume", "no/such/run"], "'no/such/run' holds no run"),
        (["plot", "no/such/run"], "'no/such/run' holds no run"),
        (["export", "no/such/run", "--out", "x"], "'no/such/run' holds no run"),
    ],
)
def test_bad_input_gives_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "r")] if args[0] == "train" else args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {result.stderr.strip()[7:]}"
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "config.toml").exists()  # nothing started


def test_bad_config_files_are_named(tmp_path):
    malformed, unknown = tmp_path / "malformed.toml", tmp_path / "unknown.toml"
    malformed.write_text("gamma = [\n")
    unknown.write_text("gamma = 0.9\nlearnin_rate = 0.1\n")
    result = runner.invoke(app, ["train", "ppo", "--config", str(malformed)])
    assert result.exit_code == 2 and "is not valid TOML" in result.stderr
    result = runner.invoke(app, ["train", "ppo", "--config", str(unknown)])
    assert result.exit_code == 2 and "unknown key 'learnin_rate'" in result.stderr
    assert "did you mean: learning_rate" in result.stderr


def test_real_process_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "plainrl", "train", "ppo", "--env", "NoSuchEnv-v0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: unknown env id 'NoSuchEnv-v0'")


def test_list_shows_algorithms_presets_and_action_spaces():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "ppo" in result.output and "Discrete, Box" in result.output and "CartPole-v1" in result.output


def test_help_on_every_command():
    for command in ["train", "eval", "resume", "plot", "list"]:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_train_eval_plot_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "ppo", "--env", "CartPole-v1", "--total-steps", "512", "--seed", "1",
                                 "--run-dir", str(run_dir), "--no-progress", "--set", "eval_episodes=2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ["config.toml", "metrics.csv", "curve.png", "eval.json", "checkpoints/latest.pt"]:
        assert (run_dir / name).exists(), name
    result = runner.invoke(app, ["eval", str(run_dir), "--episodes", "3", "--video"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["episodes"] == 3 and set(saved) == {"mean_return", "std_return", "episodes"}
    assert f"mean_return = {saved['mean_return']:.2f}" in result.output
    assert (run_dir / "episode.gif").stat().st_size > 1000
    assert (run_dir / "episode.mp4").stat().st_size > 1000 and "episode.mp4" in result.output  # imageio-ffmpeg: [dev]
    result = runner.invoke(app, ["plot", str(run_dir), str(run_dir), "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0 and (tmp_path / "c.png").exists()


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg", "trpo", "qac", "reinforce", "sarsa"])
def test_algorithms_without_an_image_encoder_refuse_images_in_one_line(algo, tmp_path):
    continuous = algo in ("sac", "td3", "ddpg")
    env = "tests.helpers:ImageCueBoxEnv" if continuous else "tests.helpers:ImageCueEnv"
    result = runner.invoke(app, ["train", algo, "--env", env, "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"error: {algo} cannot handle the Image observation space" in result.stderr


@pytest.mark.parametrize(
    "env, settings, message",
    [
        ("CartPole-v1", ["envpool=true"], "envpool = true: 'CartPole-v1' is not an Atari id EnvPool has"),
        ("ALE/Pong-v5", ["envpool=true", "async_envs=true"], "envpool = true steps the games in threads"),
    ],
)
def test_ppo_envpool_refuses_what_it_cannot_step_in_one_line(env, settings, message, tmp_path):
    args = ["train", "ppo", "--env", env, "--run-dir", str(tmp_path / "r")]
    result = runner.invoke(app, args + [item for s in settings for item in ("--set", s)])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
