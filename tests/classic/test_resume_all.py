"""Every classic algorithm checkpoints and resumes through the kit: interrupted half-way (the path Ctrl-C takes),
then `resume`d, it reaches its planned total and its metrics continue where the checkpoint left them."""

import csv

import pytest
import torch

from plainrl.kit import training
from plainrl.kit.registry import ALGORITHMS, load_algorithm
from plainrl.kit.run import Run, RunInterrupted, load_checkpoint_file

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
    config = training.build_config(module.Config, module.PRESETS, env, set_items=settings)
    with pytest.raises(RunInterrupted), Run.create(algo, config, tmp_path, show_progress=False) as run:

        def interrupt_half_way(step: int, agent: object) -> bool:
            run.stop_requested = run.stop_requested or step >= 1500
            return False

        run.step_hooks.append(interrupt_half_way)
        module.train(config, run)
    stopped_at = Run.resume(tmp_path, config, show_progress=False)
    assert 1500 <= stopped_at.start_step < 3000
    saved_agent = training.load_agent(tmp_path)[1]
    stopped_at.close()

    training.resume(tmp_path, show_progress=False)
    with (tmp_path / "metrics.csv").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] > stopped_at.start_step  # continued without duplicates
    assert load_checkpoint_file(tmp_path)["step"] >= 3000  # the planned total was reached
    resumed_agent = training.load_agent(tmp_path)[1]
    changed = any(not torch.equal(a, b) for a, b in zip(saved_agent.state_dict().values(),
                                                         resumed_agent.state_dict().values(), strict=True))  # fmt: skip
    assert changed  # training went on from the checkpoint
