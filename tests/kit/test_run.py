import csv
import random

import numpy as np
import pytest
import torch

from plainrl.kit.config import EnvConfig
from plainrl.kit.errors import PlainRLError
from plainrl.kit.run import NonFiniteError, Run, read_run_config


def config(**kw) -> EnvConfig:
    return EnvConfig(**{"total_steps": 100, "checkpoint_every": 10, **kw})


def test_run_folder_has_resolved_config_metrics_tensorboard_and_curve(tmp_path):
    with Run.create("ppo", config(seed=7), tmp_path / "run", show_progress=False) as run:
        for step in (10, 20, 30):
            run.log(step, {"loss": 1.0 / step, "episode_return": float(step)})
        run.log(40, {"loss": 0.1, "new_metric": 2.0})  # a metric appearing later widens the CSV
    saved = read_run_config(tmp_path / "run")
    assert saved["algo"] == "ppo" and saved["seed"] == 7 and saved["total_steps"] == 100
    assert {"plainrl", "torch", "gymnasium", "python"} <= set(saved["meta"])
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert rows[0]["new_metric"] == "" and rows[3]["new_metric"] == "2.0"
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "curve.png").stat().st_size > 1000


def test_checkpoint_round_trip_restores_state_rng_and_truncates_metrics(tmp_path):
    model = torch.nn.Linear(3, 2)
    run = Run.create("ppo", config(), tmp_path, show_progress=False)
    run.log(10, {"loss": 1.0})
    run.maybe_checkpoint(10, {"agent": model})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())  # draws right after the checkpoint
    run.log(20, {"loss": 2.0})  # logged after the checkpoint: lost by a crash, so dropped on resume
    run.close()

    resumed = Run.resume(tmp_path, config(), show_progress=False)
    assert resumed.start_step == 10
    copy = torch.nn.Linear(3, 2)
    assert resumed.restore({"agent": copy})  # restores the random number generators too
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values(), strict=True))
    resumed.log(20, {"loss": 3.0})
    resumed.close()
    with (tmp_path / "metrics.csv").open() as f:
        assert [(r["step"], r["loss"]) for r in csv.DictReader(f)] == [("10", "1.0"), ("20", "3.0")]


def test_checkpoints_follow_checkpoint_every(tmp_path):
    run = Run.create("ppo", config(checkpoint_every=25), tmp_path, show_progress=False)
    saved = []
    for step in range(10, 101, 10):
        run.maybe_checkpoint(step, {})
        saved.append(run.last_checkpoint_step)
    run.close()
    assert saved == [0, 0, 30, 30, 30, 60, 60, 60, 90, 90]


def test_stop_request_writes_a_checkpoint_then_raises(tmp_path):
    run = Run.create("ppo", config(checkpoint_every=1000), tmp_path, show_progress=False)
    run.stop_requested = True
    with pytest.raises(PlainRLError, match="interrupted at step 30.*plainrl resume"):
        run.maybe_checkpoint(30, {"agent": torch.nn.Linear(1, 1)})
    run.close()
    resumed = Run.resume(tmp_path, config(), show_progress=False)
    assert resumed.start_step == 30
    resumed.close()


def test_nan_metric_is_reported_not_logged(tmp_path):
    run = Run.create("ppo", config(), tmp_path, show_progress=False)
    with pytest.raises(NonFiniteError, match="value_loss = nan at step 50"):
        run.log(50, {"policy_loss": 0.1, "value_loss": float("nan")})
    run.close()


def test_existing_run_is_not_overwritten_and_missing_run_is_named(tmp_path):
    Run.create("ppo", config(), tmp_path, show_progress=False).close()
    with pytest.raises(PlainRLError, match="already holds a run"):
        Run.create("ppo", config(), tmp_path, show_progress=False)
    with pytest.raises(PlainRLError, match="holds no run"):
        read_run_config(tmp_path / "nothing")
