"""Every classic algorithm checkpoints and resumes through the kit: interrupted half-way (the path Ctrl-C takes),
then `resume`d, it reaches its planned total and its metrics continue where the checkpoint left them."""

import csv

import pytest
import torch

import plainrl
from plainrl.kit.registry import ALGORITHMS, load_algorithm
from plainrl.kit.run import RunInterrupted, load_checkpoint_file
from tests.helpers import interrupt_at

CLASSIC = [name for name, module in ALGORITHMS.items() if module.startswith("plainrl.classic.")]


@pytest.mark.parametrize("algo", CLASSIC)
def test_interrupted_run_resumes_to_its_total(algo, tmp_path):
    module = load_algorithm(algo)
    settings = ["total_steps=3000", "eval_episodes=1", "checkpoint_every=100000"]
    if algo == "dqn":
        settings += ["learning_starts=200", "train_frequency=50", "gradient_steps=2"]
    if algo in ("ddpg", "td3", "sac"):  # off-policy, continuous: fewer and smaller updates keep the test quick
        settings += ["learning_starts=200", "train_frequency=10", "batch_size=32", "hidden_sizes=[32]"]
    env = "CartPole-v1" if "Discrete" in module.ACTION_SPACES else "Pendulum-v1"
    with pytest.raises(RunInterrupted):
        plainrl.train(algo, env=env, run_dir=tmp_path, set_items=settings, progress=False,
                      callbacks=[interrupt_at(1500)])  # fmt: skip
    stopped_at = load_checkpoint_file(tmp_path)["step"]
    assert 1500 <= stopped_at < 3000
    saved_agent = plainrl.load(tmp_path).module

    plainrl.resume(tmp_path, progress=False)
    with (tmp_path / "metrics.csv").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] > stopped_at  # continued without duplicates
    assert load_checkpoint_file(tmp_path)["step"] >= 3000  # the planned total was reached
    resumed_agent = plainrl.load(tmp_path).module
    changed = any(not torch.equal(a, b) for a, b in zip(saved_agent.state_dict().values(),
                                                         resumed_agent.state_dict().values(), strict=True))  # fmt: skip
    assert changed  # training went on from the checkpoint
