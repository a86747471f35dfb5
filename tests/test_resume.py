"""Nothing lost: a run killed with SIGKILL mid-way, then resumed, reaches its planned total steps and its
metrics continue where the last checkpoint left them."""

import csv
import json
import os
import signal
import subprocess
import sys
import time


def test_sigkilled_run_resumes_to_its_planned_total(tmp_path):
    run_dir = tmp_path / "run"
    total, batch = 12_800, 256  # the CartPole preset collects 8 envs x 32 steps per iteration
    command = [sys.executable, "-m", "plainrl", "train", "ppo", "--env", "CartPole-v1", "--seed", "0",
               "--total-steps", str(total), "--run-dir", str(run_dir), "--no-progress",
               "--set", "checkpoint_every=2048", "--set", "eval_episodes=2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    checkpoint = run_dir / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and _last_step(run_dir) >= 3 * 2048:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _last_step(run_dir)
    assert killed_at < total

    result = subprocess.run([sys.executable, "-m", "plainrl", "resume", str(run_dir), "--no-progress"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (run_dir / "metrics.csv").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == list(range(batch, total + 1, batch))  # no gap, no duplicate, ends at the planned total
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 2


def _last_step(run_dir) -> int:
    try:
        with (run_dir / "metrics.csv").open() as f:
            rows = list(csv.DictReader(f))
        return int(rows[-1]["step"]) if rows else 0
    except (FileNotFoundError, KeyError, ValueError):
        return 0
