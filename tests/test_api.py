"""The Python API: train -> load -> predict / generate -> evaluate, for a classic algorithm and an LLM trainer;
env= as an id, an instance and a factory; tasks and rewards from Python; the CLI commands over it."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import plainrl
from plainrl.cli import app
from plainrl.kit.errors import ConfigError, PlainRLError
from plainrl.llm.tasks import Example, Task
from tests.helpers import CountingEnv

runner = CliRunner()


def test_classic_round_trip_train_load_predict_evaluate(tmp_path):
    run = plainrl.train("ppo", env="CartPole-v1", seed=3, total_steps=1024, num_envs=2, num_steps=128,
                        eval_episodes=4, run_dir=tmp_path / "run", progress=False)  # fmt: skip
    assert run.path == tmp_path / "run" and run.algo == "ppo" and run.config["seed"] == 3
    assert [row["step"] for row in run.metrics] == [256.0, 512.0, 768.0, 1024.0]  # 2 envs x 128 steps per row
    assert run.eval == json.loads((run.path / "eval.json").read_text()) and run.eval["episodes"] == 4

    agent = plainrl.load(run.path)
    obs = np.array([0.01, -0.02, 0.03, 0.04], dtype=np.float32)
    batch = np.stack([obs, -obs, 2 * obs])
    expected = agent.module.act(torch.as_tensor(batch), deterministic=True).numpy()
    assert agent.predict(obs) == expected[0]  # one observation in, one action out
    assert agent.predict(batch).tolist() == expected.tolist()  # a batch in, a batch out
    # evaluating the saved run again plays the same deterministic episodes as the final evaluation did
    assert plainrl.evaluate(run.path, episodes=4) == run.eval


def test_env_as_an_instance_a_factory_and_an_importable_factory(tmp_path):
    """CountingEnv pays 1 per step and ends after `length` steps, whatever the policy: the return is `length`."""
    settings = dict(total_steps=64, num_envs=2, num_steps=16, eval_episodes=2, progress=False)
    instance = CountingEnv(length=5)
    run = plainrl.train("ppo", env=instance, run_dir=tmp_path / "instance", **settings)
    assert run.eval["mean_return"] == 5.0
    assert run.config["env"].startswith("python/CountingEnv-v") and instance.t == 0  # copies were stepped

    run = plainrl.train("ppo", env=lambda: CountingEnv(length=7), run_dir=tmp_path / "lambda", **settings)
    assert run.eval["mean_return"] == 7.0
    assert plainrl.load(run.path).predict(np.array([3.0], dtype=np.float32)) in (0, 1)

    from tests.helpers import make_counting_env

    run = plainrl.train("ppo", env=make_counting_env, run_dir=tmp_path / "importable", **settings)
    assert run.config["env"] == "tests.helpers:make_counting_env"  # another process can make it again
    assert run.eval["mean_return"] == 4.0


def test_llm_round_trip_with_python_rewards_and_examples_in_memory(tmp_path):
    calls = {"sample": 0, "batch": 0}

    def exact(prompt, completion, answer):  # per sample: (prompt, completion, answer) -> float
        calls["sample"] += 1
        return float(completion.strip() == answer)

    def short(prompts, completions, **columns):  # TRL-style batch function: columns hold answer=[...] and extras
        calls["batch"] += 1
        assert columns["answer"] and columns["kind"] == ["sum"] * len(completions)
        return [1.0 / (1 + len(c)) for c in completions]

    examples = [{"prompt": f"{a}+{b}=", "answer": str(a + b), "kind": "sum"} for a in range(5) for b in range(4)]
    run = plainrl.train("grpo", model="tiny", task=examples, rewards=[exact, short], reward_weights=[1.0, 0.5],
                        total_steps=2, prompts_per_step=2, group_size=2, max_new_tokens=3, eval_n=2,
                        run_dir=tmp_path / "grpo", progress=False)  # fmt: skip
    assert calls == {"sample": 2 * 4, "batch": 2}  # 2 steps x (2 prompts x 2 completions), one batch call per step
    written = [json.loads(line) for line in (run.path / "task.jsonl").read_text().splitlines()]
    assert written == examples and run.config["task"] == str(run.path / "task.jsonl")
    assert {"reward/exact", "reward/short"} <= set(run.metrics[-1])
    assert run.eval == {"accuracy": 0.0, "n": 2, "step": 2}  # an untrained tiny model

    policy = plainrl.load(run.path)
    texts = policy.generate(["1+2=", "3+4="], max_new_tokens=4, greedy=True)
    assert len(texts) == 2 and all(isinstance(t, str) and len(t) <= 4 for t in texts)
    assert policy.generate("1+2=", max_new_tokens=4, greedy=True) == texts[:1]  # same greedy completion
    assert plainrl.evaluate(run.path) == run.eval  # greedy: the same held-out answers again


def test_a_task_object_trains_and_is_named_in_the_config(tmp_path):
    class Echo(Task):
        def is_correct(self, completion, answer, **columns):
            return completion.strip() == answer

    task = Echo(train=[Example(f"{i}>", str(i), str(i)) for i in range(8)], test=[Example("3>", "3", "3")])
    run = plainrl.train("sft", task=task, total_steps=3, warmup_steps=1, batch_size=4, eval_n=1, tiny_dim=32,
                        tiny_n_layers=1, tiny_hidden_dim=64, run_dir=tmp_path / "sft", progress=False)  # fmt: skip
    assert run.config["task"] == "python:Echo" and run.eval["n"] == 1
    assert plainrl.train is plainrl.api.train  # the package's face is the API module's


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: plainrl.train("ppo", task="arithmetic"), "ppo takes env= (not task=)"),
        (lambda: plainrl.train("grpo", env="CartPole-v1"), "grpo takes task=, model=, rewards= (not env=)"),
        (lambda: plainrl.train("ppo2"), "unknown algorithm 'ppo2' (did you mean: ppo"),
        (lambda: plainrl.train("ppo", env=42), "env = 42 is not an env id, a gymnasium.Env or a zero-argument factory"),
        (lambda: plainrl.train("ppo", learning_rat=1e-3), "unknown key 'learning_rat' in train() (did you mean"),
        (lambda: plainrl.train("grpo", rewards=[3]), "reward 3 is not a name or a function"),
        (lambda: plainrl.train("grpo", task=[{"prompt": "1+1="}]), 'task example 1 must be a dict with "prompt"'),
        (lambda: plainrl.train("grpo", task=[{"prompt": "1+1=", "answer": "2"}] * 3, group_size=1), "group_size = 1"),
    ],
)
def test_bad_python_input_is_one_clear_error_before_any_work(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlainRLError) as error:
        call()
    assert message in str(error.value)
    assert not any(tmp_path.rglob("*"))  # nothing was left behind


def test_a_character_outside_the_tokenizer_names_the_file_line_and_character(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "caf\\u00e9?", "answer": "3"}\n')
    result = runner.invoke(app, ["sft", "--task", str(data), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"error: task '{data}', line 2: character 'é' is outside the built-in tokenizer's alphabet" in result.stderr
    assert not (tmp_path / "run").exists()


def test_distill_draft_wider_than_the_vocabulary_is_a_config_error(tmp_path):
    result = runner.invoke(app, ["distill-draft", "--target", "tiny", "--set", "draft_dim=256", "--run-dir",
                                 str(tmp_path / "d")])  # fmt: skip
    assert result.exit_code == 2
    assert "error: draft_dim = 256 must be <= the target's vocabulary size (99)" in result.stderr


def test_older_llm_run_folders_still_load(tmp_path):
    """Run folders from before the task config: `env` named the task, 0 meant an automatic learning rate."""
    run = plainrl.train("sft", task="arithmetic:digits=1,n_test=4", total_steps=2, warmup_steps=1, batch_size=4,
                        eval_n=2, tiny_dim=32, tiny_n_layers=1, tiny_hidden_dim=64, run_dir=tmp_path / "r",
                        progress=False)  # fmt: skip
    config_file = run.path / "config.toml"
    text = config_file.read_text().replace("task = ", "env = ") + "eval_episodes = 0\nlearning_rate = 0.0\n"
    config_file.write_text(text)
    policy = plainrl.load(run.path)
    assert len(policy.generate("1+1=", max_new_tokens=2, greedy=True)) == 1


@pytest.mark.parametrize(
    "command",
    ["train", "sft", "grpo", "reward-model", "ppo-llm", "dpo", "distill-draft", "resume", "eval", "plot", "list",
     "eval-llm", "generate"],
)  # fmt: skip
def test_every_cli_command_and_alias_still_answers(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output


def test_plainrl_train_takes_llm_trainers_and_one_resume_and_eval_serve_every_run(tmp_path):
    run_dir = tmp_path / "grpo"
    args = ["train", "grpo", "--task", "arithmetic:digits=1,n_test=4", "--total-steps", "2", "--run-dir", str(run_dir),
            "--no-progress", "--set", "prompts_per_step=2", "--set", "group_size=2", "--set", "max_new_tokens=2",
            "--set", "eval_n=2", "--set", "checkpoint_every=1"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace("total_steps = 2", "total_steps = 3"))
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "at step 2 of 3" in result.output
    result = runner.invoke(app, ["eval", str(run_dir), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "eval.json").read_text()) == {"accuracy": 0.0, "n": 1, "step": 3}
    with pytest.raises(ConfigError, match="video is for env runs"):
        plainrl.evaluate(run_dir, video=True)


class NaNRewardEnv(CountingEnv):
    """CountingEnv whose third step pays NaN: a broken reward function in a user's env."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, float("nan") if self.t == 3 else reward, terminated, truncated, info


def test_a_nan_reward_from_the_env_is_reported_as_the_envs_not_as_a_diverged_loss(tmp_path):
    result = runner.invoke(app, ["train", "ppo", "--env", "tests.test_api:NaNRewardEnv", "--total-steps", "64",
                                 "--set", "num_envs=1", "--set", "num_steps=16", "--run-dir", str(tmp_path / "r"),
                                 "--no-progress"])  # fmt: skip
    assert result.exit_code == 2
    assert (
        "error: env 'tests.test_api:NaNRewardEnv' returned a NaN reward at its step 3 (episode step 3)" in result.stderr
    )
