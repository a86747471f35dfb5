"""Checkpoints are safe to load (a crafted file cannot run code), recoverable (previous.pt backs up latest.pt) and
a run folder is locked while a process trains in it."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from plainrl.kit.config import EnvConfig
from plainrl.kit.errors import PlainRLError
from plainrl.kit.run import CHECKPOINT, PREVIOUS_CHECKPOINT, Run, load_checkpoint_file, read_checkpoint


def config(**kw) -> EnvConfig:
    return EnvConfig(**{"total_steps": 100, "checkpoint_every": 10, **kw})


def run_with_checkpoints(path, steps=(10, 20)) -> None:
    """A closed run folder with a checkpoint at each step (the last two kept: latest.pt and previous.pt)."""
    with Run.create("ppo", config(), path, show_progress=False) as run:
        for step in steps:
            run.log(step, {"loss": float(step)})
            run.maybe_checkpoint(step, {"agent": torch.nn.Linear(2, 1)}, final=True)


def write_marker(path: str) -> None:  # what a crafted checkpoint would like to run
    open(path, "w").close()


class RunsCode:
    """Pickled, it asks the loader to call `function(*args)`: torch.load(weights_only=False) would do it."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def cut_in_half(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("use_os_system", [True, False], ids=["os.system", "module_function"])
def test_a_checkpoint_that_asks_to_run_code_is_refused_not_run(tmp_path, use_os_system):
    run_dir, marker = tmp_path / "run", tmp_path / "marker"
    run_with_checkpoints(run_dir, steps=(10,))
    payload = RunsCode(os.system, f"touch {marker}") if use_os_system else RunsCode(write_marker, str(marker))
    torch.save({"step": 10, "agent": payload}, run_dir / CHECKPOINT)
    name = r"(posix|nt|os)\.system" if use_os_system else r"[\w.]*write_marker"
    with pytest.raises(
        PlainRLError, match=rf"latest\.pt is unreadable \(refused to load: it asks to run code \({name}\)\)"
    ) as error:
        load_checkpoint_file(run_dir)
    assert not marker.exists()
    assert "\n" not in str(error.value) and str(run_dir) in str(error.value)


def test_a_refused_latest_falls_back_to_previous(tmp_path, capsys):
    run_with_checkpoints(tmp_path)
    torch.save({"step": 30, "agent": RunsCode(write_marker, str(tmp_path / "marker"))}, tmp_path / CHECKPOINT)
    assert load_checkpoint_file(tmp_path)["step"] == 10
    assert not (tmp_path / "marker").exists()
    assert "refused to load: it asks to run code" in capsys.readouterr().err


def test_a_truncated_latest_falls_back_to_previous_with_one_warning(tmp_path, capsys):
    run_with_checkpoints(tmp_path)
    cut_in_half(tmp_path / CHECKPOINT)
    capsys.readouterr()
    resumed = Run.resume(tmp_path, config(), show_progress=False)
    resumed.close()
    assert resumed.start_step == 10
    warning = capsys.readouterr().err.strip()
    assert "\n" not in warning
    assert warning.startswith(f"warning: {CHECKPOINT} is unreadable (")
    assert warning.endswith(f"); using {PREVIOUS_CHECKPOINT} (step 10)")
    with (tmp_path / "metrics.csv").open() as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["10"]  # cut back to previous's step


def test_a_missing_latest_falls_back_to_previous(tmp_path, capsys):
    run_with_checkpoints(tmp_path)
    (tmp_path / CHECKPOINT).unlink()  # a crash between the two renames of a save
    assert load_checkpoint_file(tmp_path)["step"] == 10
    assert f"{CHECKPOINT} is missing; using {PREVIOUS_CHECKPOINT} (step 10)" in capsys.readouterr().err


def test_no_usable_checkpoint_is_one_clear_error_and_leaves_the_run_as_it_was(tmp_path):
    run_with_checkpoints(tmp_path)
    cut_in_half(tmp_path / CHECKPOINT)
    (tmp_path / PREVIOUS_CHECKPOINT).write_bytes(b"")
    metrics = (tmp_path / "metrics.csv").read_text()
    for _ in range(2):  # the failed resume released the folder's lock
        with pytest.raises(PlainRLError, match="has no usable checkpoint") as error:
            Run.resume(tmp_path, config(), show_progress=False)
        message = str(error.value)
        assert "\n" not in message and str(tmp_path) in message
        assert f"{CHECKPOINT} is unreadable (" in message and f"{PREVIOUS_CHECKPOINT} is unreadable (" in message
    assert (tmp_path / "metrics.csv").read_text() == metrics
    with pytest.raises(PlainRLError, match="has no checkpoint yet"):
        load_checkpoint_file(tmp_path / "elsewhere")


def test_saving_keeps_the_last_two_checkpoints(tmp_path):
    run_with_checkpoints(tmp_path, steps=(10, 20, 30))
    assert load_checkpoint_file(tmp_path)["step"] == 30
    assert read_checkpoint(tmp_path / PREVIOUS_CHECKPOINT)["step"] == 20
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.pt", "previous.pt"]


def test_a_full_disk_is_one_clear_error_and_keeps_the_checkpoints(tmp_path, monkeypatch):
    run = Run.create("ppo", config(), tmp_path, show_progress=False)
    run.maybe_checkpoint(10, {}, final=True)

    def disk_full(obj, f):
        f.write(b"part of a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(PlainRLError, match="No space left on device.*the one at step 10 is intact"):
        run.maybe_checkpoint(20, {}, final=True)
    monkeypatch.undo()
    run.close()
    assert load_checkpoint_file(tmp_path)["step"] == 10
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.pt"]


def test_numpy_state_round_trips_through_a_weights_only_load(tmp_path):
    # what Adam's state_dict() holds after a step (building a real optimizer first imports torch._dynamo: 3 s)
    optimizer = {
        "state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.rand(2, 3), "exp_avg_sq": torch.rand(2, 3)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "foreach": None, "params": [0]}],
    }
    replay = {
        "obs": np.random.rand(5, 3),
        "actions": np.arange(5),
        "rewards": np.ones(5, np.float32),
        "frames": np.zeros((2, 4), np.uint8),
        "done": np.zeros(5, bool),
        "position": np.int64(3),
        "mean": np.float64(1.5),
        "rng": np.random.default_rng(0).bit_generator.state,
    }
    run = Run.create("ppo", config(), tmp_path, show_progress=False)
    run.maybe_checkpoint(10, {"optimizer": optimizer, "replay": replay}, final=True)
    expected = (np.random.rand(), torch.rand(1).item())
    run.close()

    state = load_checkpoint_file(tmp_path)
    for name, value in replay.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(state["replay"][name], value) and state["replay"][name].dtype == value.dtype
        else:
            assert state["replay"][name] == value and type(state["replay"][name]) is type(value)
    assert state["rng"]["numpy"][1].dtype == np.uint32  # numpy's global RNG state: a uint32 array in a tuple
    assert state["optimizer"]["param_groups"] == optimizer["param_groups"]
    assert all(torch.equal(state["optimizer"]["state"][0][k], v) for k, v in optimizer["state"][0].items())
    resumed = Run.resume(tmp_path, config(), show_progress=False)
    assert resumed.restore({})  # the random number generators
    assert (np.random.rand(), torch.rand(1).item()) == expected
    resumed.close()


def test_a_run_folder_in_use_is_refused_until_closed(tmp_path):
    run_with_checkpoints(tmp_path)
    training = Run.resume(tmp_path, config(), show_progress=False)
    training.log(20, {"loss": 1.0})
    metrics = (tmp_path / "metrics.csv").read_text()
    in_use = rf"{tmp_path} is in use by another process \(pid {os.getpid()}\): wait for it to finish"
    with pytest.raises(PlainRLError, match=in_use):  # a second open() of .lock conflicts, even in one process
        Run.resume(tmp_path, config(), show_progress=False)
    with pytest.raises(PlainRLError, match="already holds a run"):
        Run.create("ppo", config(), tmp_path, show_progress=False)
    assert (tmp_path / "metrics.csv").read_text() == metrics  # untouched by the refused resume
    training.close()
    Run.resume(tmp_path, config(), show_progress=False).close()


HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_another_process_is_refused_and_dropped_when_it_dies(tmp_path):
    run_dir = tmp_path / "new"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        (run_dir / "config.toml").write_text('algo = "ppo"\n')
        with pytest.raises(PlainRLError, match=rf"in use by another process \(pid {holder.pid}\)"):
            Run(run_dir, "ppo", config(), resumed=False, show_progress=False)
    finally:
        holder.kill()
        holder.wait()
    Run(run_dir, "ppo", config(), resumed=False, show_progress=False).close()  # no stale lock after a kill
