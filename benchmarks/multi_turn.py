"""Multi-turn learning (issue #19): GRPO over conversations with a built-in environment, held-out before and after.

    python benchmarks/multi_turn.py calculator     SFT the built-in model on the calculator task (the tool's format in
                                                   20% of the targets), then GRPO for --minutes: held-out success
    python benchmarks/multi_turn.py guess          SFT on a random player's games, then GRPO: mean turns to find it
    python benchmarks/multi_turn.py smollm2        SmolLM2-135M-Instruct (make llm), 2-digit products, LoRA GRPO

Held-out: greedy conversations on the first --eval-n test problems, the same before and after. The GRPO budget is
wall-clock (its periodic evaluations included); the SFT start is not counted in it. --dry-run: tiny budgets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

SETUPS = {
    "calculator": dict(
        environment="calculator", model="tiny", sft_steps=800,
        sft=["batch_size=64", "learning_rate=2e-3", "eval_every=0", "warmup_steps=2"],
        grpo=["prompts_per_step=16", "group_size=8", "max_new_tokens=48", "learning_rate=2e-4", "beta=0",
              "eval_every=10", "temperature=1.0"],
    ),
    "guess": dict(
        environment="guess", model="tiny", sft_steps=400,
        sft=["batch_size=64", "learning_rate=2e-3", "eval_every=0", "warmup_steps=2"],
        grpo=["prompts_per_step=16", "group_size=8", "max_new_tokens=6", "learning_rate=1e-4", "beta=0",
              "eval_every=10", "temperature=1.0"],
    ),
    "smollm2": dict(
        environment="calculator:digits=2,tool_fraction=0", model="smollm2-135m", sft_steps=0, sft=[],
        grpo=["lora_rank=16", "learning_rate=1e-4", "prompts_per_step=4", "group_size=8", "max_new_tokens=64",
              "num_minibatches=4",
              "beta=0", "eval_every=10", "temperature=1.0", "torch_threads=2", "eval_batch_size=50"],
    ),
}  # fmt: skip


def held_out(model_spec: str, environment: str, n: int, max_new_tokens: int) -> dict[str, float]:
    from plainrl.llm.environments import environment_task
    from plainrl.llm.evaluate import evaluate_policy
    from plainrl.llm.generate import SamplingParams
    from plainrl.llm.policies import load_policy

    task = environment_task(environment)
    model, tokenizer = load_policy(model_spec)
    result = evaluate_policy(model, tokenizer, task, task.test[:n], SamplingParams(max_new_tokens, greedy=True), 50)
    samples = result["samples"]
    return {"success": result["accuracy"], "turns": statistics.mean(s["turns"] for s in samples),
            "reward": statistics.mean(s["reward"] for s in samples), "example": samples[0]["completion"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setup", choices=list(SETUPS))
    parser.add_argument("--minutes", type=float, default=15.0, help="the GRPO run's wall-clock budget")
    parser.add_argument("--sft-steps", type=int, default=None)
    parser.add_argument("--eval-n", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()

    import torch

    import plainrl

    setup = SETUPS[args.setup]
    out = args.out or Path(f"runs/multi_turn_{args.setup}_{int(time.time())}")
    sft_steps = 5 if args.dry_run else (args.sft_steps if args.sft_steps is not None else setup["sft_steps"])
    eval_n = 8 if args.dry_run else args.eval_n
    minutes = 0.3 if args.dry_run else args.minutes
    torch.set_num_threads(2 if args.setup == "smollm2" else 1)
    grpo_settings = [*setup["grpo"], f"eval_n={eval_n}", "total_steps=100000"]
    max_new = int(next(s for s in grpo_settings if s.startswith("max_new_tokens=")).split("=")[1])

    start_model = setup["model"]
    if sft_steps > 0:
        started = time.perf_counter()
        sft = plainrl.train("sft", environment=setup["environment"], model=setup["model"], total_steps=sft_steps,
                            set_items=[*setup["sft"], f"eval_n={eval_n}", f"max_new_tokens={max_new}"],
                            run_dir=out / "sft", progress=False)  # fmt: skip
        print(f"SFT: {sft_steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
        start_model = str(sft.path)
    before = held_out(start_model, setup["environment"], eval_n, max_new)
    print(f"before GRPO: {json.dumps(before)}", flush=True)

    started = time.perf_counter()
    deadline = started + minutes * 60
    grpo = plainrl.train("grpo", environment=setup["environment"], model=start_model, set_items=grpo_settings,
                         run_dir=out / "grpo", progress=False,
                         callbacks=[lambda step, model: time.perf_counter() > deadline])  # fmt: skip
    seconds = time.perf_counter() - started
    after = held_out(str(grpo.path), setup["environment"], eval_n, max_new)
    curve = [(int(r["step"]), round(r["accuracy"], 3)) for r in grpo.metrics if r.get("accuracy") is not None]
    turns = [(int(r["step"]), round(r["turns"], 2)) for r in grpo.metrics if r.get("turns") is not None]
    print(f"after GRPO ({len(grpo.metrics)} steps, {seconds:.0f} s): {json.dumps(after)}")
    print(f"held-out success by step: {curve}")
    print(f"training turns by step (every 5th): {turns[::5]}")
    print(f"held-out success {before['success']:.3f} -> {after['success']:.3f} "
          f"({100 * (after['success'] - before['success']):+.1f} points); mean turns {before['turns']:.2f} -> "
          f"{after['turns']:.2f}; curve: {grpo.path / 'curve.png'}")  # fmt: skip
    (out / "summary.json").write_text(
        json.dumps(
            {
                "before": before,
                "after": after,
                "curve": curve,
                "turns": turns,
                "grpo_seconds": seconds,
                "steps": len(grpo.metrics),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
