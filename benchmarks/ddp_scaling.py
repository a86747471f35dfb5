"""Data-parallel scaling: 1 process vs 2 processes (torchrun, gloo, one torch thread each), side by side.

    python benchmarks/ddp_scaling.py [--steps 4] [--repeats 3] [--only grpo sft ppo]

Each workload trains the same global batch with one process (`python -m plainrl train`, as without torchrun) and
with two (`torchrun --nproc_per_node 2 -m plainrl train`), alternating, --repeats times each, then prints the
median throughput of each side, their ratio (2 processes / 1 process) and the ratio of each pair of runs: on this
machine one pair alone can be off by 20%.

- grpo: the built-in model at dim 256, 6 layers (4.7M parameters; an SFT run folder of 1 step, made first),
  64 prompts x 8 completions, up to 16 new tokens, beta 0.04: generated tokens per second of whole steps
  (rollout + update).
- sft:  the same model size, batch 1024, 3x as many steps: target tokens per second.
- ppo:  CartPole-v1, 8 envs x 128 steps, 4 minibatches x 4 epochs: env steps per second.

Rates come from the run folder's metrics.csv: the steps after the first (warm-up) over the time they took (the
`time` column, so process start-up and imports are not counted). On a 2-core machine the 2-process job has a core
per rank and nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
MODEL = ["--set", "tiny_dim=256", "--set", "tiny_n_layers=6", "--set", "tiny_n_heads=8", "--set", "tiny_n_kv_heads=4",
         "--set", "tiny_hidden_dim=768"]  # fmt: skip
PROMPTS = 64  # GRPO prompts per step (x 8 completions)
LLM = ["--set", "eval_every=0", "--set", "eval_n=8", "--set", "torch_threads=1", "--set", "checkpoint_every=1000"]


def workloads(base: Path, steps: int) -> dict[str, tuple[list[str], str]]:
    """name -> (the `plainrl train` arguments, what the rate counts)."""
    return {
        "grpo": (
            [
                "grpo",
                "--model",
                str(base / "model"),
                "--total-steps",
                str(steps),
                *LLM,
                "--set",
                f"prompts_per_step={PROMPTS}",
                "--set",
                "group_size=8",
                "--set",
                "max_new_tokens=16",
            ],
            "generated tokens/s",
        ),  # fmt: skip
        "sft": (
            [
                "sft",
                "--total-steps",
                str(3 * steps),
                *MODEL,
                *LLM,
                "--set",
                "batch_size=1024",
                "--set",
                "warmup_steps=0",
            ],
            "target tokens/s",
        ),  # fmt: skip
        "ppo": (
            [
                "ppo",
                "--env",
                "CartPole-v1",
                "--total-steps",
                str(1024 * steps),
                "--set",
                "num_envs=8",
                "--set",
                "num_steps=128",
                "--set",
                "num_minibatches=4",
                "--set",
                "update_epochs=4",
                "--set",
                "eval_episodes=0",
            ],
            "env steps/s",
        ),  # fmt: skip
    }


def train(arguments: list[str], run_dir: Path, processes: int) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "plainrl", "train", *arguments,
               "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def rate(run_dir: Path, name: str) -> float:
    """Units per second over the logged steps after the first."""
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    seconds = float(last["time"]) - float(first["time"])
    if name == "ppo":
        return (float(last["step"]) - float(first["step"])) / seconds
    later = rows[1:]
    if name == "grpo":  # mean completion length x completions per step, over the timed steps
        return sum(float(r["completion_length"]) * PROMPTS * 8 for r in later) / seconds
    return target_tokens(run_dir, len(later)) / seconds


def target_tokens(run_dir: Path, steps: int) -> float:
    """SFT: the target tokens of the timed steps, recomputed from the run's data order (the same for 1 or 2 ranks)."""
    import plainrl
    from plainrl.kit.registry import load_run
    from plainrl.llm.sft import micro_batch_indices, tokenize
    from plainrl.llm.tasks import make_task

    _, _, config = load_run(run_dir)
    task = make_task(config.task)  # type: ignore[attr-defined]
    pairs = tokenize(task.train, task, plainrl.load(run_dir).tokenizer)
    total = 0
    for step in range(1, 1 + steps):
        for micro in range(config.grad_accum):  # type: ignore[attr-defined]
            total += sum(len(pairs[i][1]) for i in micro_batch_indices(step, micro, config, len(pairs)))  # type: ignore[arg-type]
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; medians printed")
    parser.add_argument("--only", nargs="*", default=["grpo", "sft", "ppo"])
    parser.add_argument("--keep", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = args.keep or Path(folder)
        if "grpo" in args.only:  # the larger built-in model GRPO starts from: an SFT run of one step
            train(["sft", "--total-steps", "1", *MODEL, *LLM, "--set", "warmup_steps=0"], base / "model", 1)
        print(f"{'workload':<8} {'unit':<20} {'1 process':>12} {'2 processes':>12} {'ratio':>7}   (medians of runs)")
        for name, (arguments, unit) in workloads(base, args.steps).items():
            if name not in args.only:
                continue
            rates: dict[int, list[float]] = {1: [], 2: []}
            for repeat in range(args.repeats):
                for processes in (1, 2):  # alternating, so a slow spell of the machine hits both sides
                    run_dir = base / f"{name}-{processes}-{repeat}"
                    train(arguments, run_dir, processes)
                    rates[processes].append(rate(run_dir, name))
            r1, r2 = statistics.median(rates[1]), statistics.median(rates[2])
            runs = "  ".join(f"{b / a:.2f}" for a, b in zip(rates[1], rates[2], strict=True))
            print(f"{name:<8} {unit:<20} {r1:>12.0f} {r2:>12.0f} {r2 / r1:>6.2f}x   (each pair: {runs})", flush=True)


if __name__ == "__main__":
    main()
