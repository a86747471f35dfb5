"""Tabular methods as runs: the CLI, the run folder and its pictures, checkpoints and resuming, bad input."""

import json
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import plainrl
from plainrl.cli import app
from plainrl.kit.evaluate import evaluate_episodes
from plainrl.kit.run import RunInterrupted, load_checkpoint_file
from tests.helpers import interrupt_at

runner = CliRunner()


def test_q_learning_on_gridworld_from_the_cli_finishes_in_seconds_with_pictures(tmp_path):
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    result = runner.invoke(app, ["train", "q_learning", "--env", "plainrl/GridWorld-v0", "--run-dir", str(run_dir),
                                 "--no-progress"])  # fmt: skip
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert seconds < 30  # about 2 s on a laptop core; generous for a loaded CI machine
    for name in ["config.toml", "metrics.csv", "curve.png", "values.png", "eval.json", "checkpoints/latest.pt"]:
        assert (run_dir / name).stat().st_size > 0, name
    # 100-step episodes from a random free cell: reach the target in at most 11 steps, then stay (+1 a step).
    assert json.loads((run_dir / "eval.json").read_text())["mean_return"] > 85
    (run_dir / "values.png").unlink()
    result = runner.invoke(app, ["plot", str(run_dir), "--out", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    assert (run_dir / "values.png").stat().st_size > 1000 and "values.png" in result.output


@pytest.mark.parametrize("algo", ["value_iteration", "policy_iteration", "truncated_policy_iteration"])
def test_dynamic_programming_runs_draw_values_and_convergence(algo, tmp_path):
    run = plainrl.train(algo, env="CliffWalking-v1", run_dir=tmp_path / "run", progress=False,
                                 set_items=["eval_episodes=1"])  # fmt: skip
    assert (run.path / "values.png").exists() and (run.path / "curve.png").exists()
    assert run.eval["mean_return"] == -13  # the cliff edge
    agent = plainrl.load(run.path).module
    assert agent.act(torch.tensor([36.0]), deterministic=True).tolist() == [0]  # up, off the start


def test_pictures_for_every_grid(tmp_path):
    from plainrl.tabular.plots import draw_values

    for env_id, n_states, n_actions in [("FrozenLake-v1", 16, 4), ("Taxi-v4", 500, 6), ("plainrl/GridWorld-v0", 25, 5)]:
        q = np.random.default_rng(0).normal(size=(n_states, n_actions))
        path = draw_values(tmp_path / f"{env_id.replace('/', '-')}.png", env_id, q)
        assert path is not None and path.stat().st_size > 1000


def test_interrupted_run_resumes_to_the_same_table(tmp_path):
    """Checkpoints hold Q, the tables and the RNG: stopping half-way and resuming gives the uninterrupted Q."""
    settings = ["total_steps=6000", "checkpoint_every=1000", "eval_episodes=0"]
    straight = plainrl.train("mc_exploring_starts", env="plainrl/GridWorld-v0", run_dir=tmp_path / "straight",
                                  set_items=settings, progress=False)  # fmt: skip

    with pytest.raises(RunInterrupted):
        plainrl.train("mc_exploring_starts", env="plainrl/GridWorld-v0", run_dir=tmp_path / "resumed",
                      set_items=settings, progress=False, callbacks=[interrupt_at(3000)])  # fmt: skip
    assert 3000 <= load_checkpoint_file(tmp_path / "resumed")["step"] < 6000
    plainrl.resume(tmp_path / "resumed", progress=False)
    final = [load_checkpoint_file(path) for path in (straight.path, tmp_path / "resumed")]
    assert final[0]["step"] == final[1]["step"]
    assert np.array_equal(final[0]["agent"]["q"], final[1]["agent"]["q"])
    assert np.array_equal(final[0]["loop"]["tables"]["returns_count"], final[1]["loop"]["tables"]["returns_count"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "q_learning", "--env", "CartPole-v1"],
         "q_learning cannot handle the Box observation space of CartPole-v1 (it handles: Discrete)"),
        (["train", "value_iteration", "--env", "tests.tabular.test_runs:ModelFreeEnv"],
         "ModelFreeEnv publishes no model: dynamic programming needs env.unwrapped.P"),
        (["train", "mc_exploring_starts", "--env", "tests.tabular.test_runs:ModelFreeEnv"],
         "cannot start an episode in a chosen state"),
        (["train", "value_iteration", "--env", "plainrl/GridWorld-v0", "--set", "gamma=1"],
         "gamma = 1.0 must be < 1 for dynamic programming"),
        (["train", "q_learning", "--env", "plainrl/GridWorld-v0", "--set", "alpha=2"], "alpha = 2.0 must be in (0, 1]"),
        (["train", "q_learning", "--env", "Taxi-v3"], "unknown env id 'Taxi-v3' (did you mean: Taxi-v4"),
        (["train", "q_learnin"], "unknown algorithm 'q_learnin' (did you mean: q_learning"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_evaluation_ends_episodes_of_envs_without_a_time_limit(monkeypatch):
    """CliffWalking-v1 has no time limit: a greedy policy that walks into the boundary forever still ends."""
    monkeypatch.setattr("plainrl.kit.evaluate.UNTIMED_EPISODE_LIMIT", 50)
    result = evaluate_episodes(lambda obs: np.array([3]), "CliffWalking-v1", episodes=2, seed=0)  # left, forever
    assert result["mean_return"] == -50


class ModelFreeEnv(gym.Env):
    """A Discrete env without a model (no P): fine for Q-learning, not for DP or exploring starts."""

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, True, False, {}
