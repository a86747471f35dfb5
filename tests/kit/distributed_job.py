"""What tests/kit/test_distributed.py launches under torchrun (and runs in one process for reference):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/kit/distributed_job.py BASE MODE [CASE ...]

MODE: "ddp" and "fsdp" train each CASE for 3 optimizer steps into BASE/MODE/CASE; "fail" trains GRPO with a
callback that raises on rank 1 at step 2; "slow" trains 8 GRPO steps of 0.3 s or more, checkpointing every 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import plainrl
from plainrl.kit.distributed import world

PAIRS = [  # preference pairs for dpo and reward-model (no sampling: the data is the same by construction)
    {"prompt": f"{a}+{b}=", "chosen": f"{a + b}", "rejected": f"{a + b + 1 + (a % 3)}"}
    for a in range(10)
    for b in range(4)
]


def digits(prompt: str, completion: str, answer: str) -> float:
    """A reward an untrained model's samples differ in (accuracy would be 0 for all: no gradient to compare)."""
    return sum(c.isdigit() for c in completion) / 8


LLM = dict(eval_every=0, eval_n=4, max_new_tokens=8)
GRPO = dict(
    LLM, prompts_per_step=4, group_size=4, beta=0.04, total_steps=3, rewards=["tests.kit.distributed_job:digits"]
)


def cases(base: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (algorithm, train() keywords): 3 optimizer steps each."""
    pairs = str(base / "pairs.jsonl")
    return {
        "sft": ("sft", dict(LLM, total_steps=3, batch_size=8, warmup_steps=0)),
        "sft-lora": ("sft", dict(LLM, total_steps=3, batch_size=8, warmup_steps=0, lora_rank=4)),
        "grpo-sequence_mean": ("grpo", dict(GRPO, loss_aggregation="sequence_mean")),
        "grpo-token_mean": ("grpo", dict(GRPO, loss_aggregation="token_mean")),
        "grpo-constant": ("grpo", dict(GRPO, loss_aggregation="constant")),
        "dpo": ("dpo", dict(LLM, total_steps=3, batch_size=8, pairs=pairs)),
        "reward-model": ("reward-model", dict(LLM, total_steps=3, batch_size=8, pairs=pairs, learning_rate=1e-4)),
        "ppo-llm": (
            "ppo-llm",
            dict(LLM, total_steps=3, prompts_per_step=4, ppo_epochs=1, num_minibatches=1, rewards=GRPO["rewards"]),
        ),  # fmt: skip
        "distill": (
            "distill",
            dict(
                total_steps=3,
                n_samples=16,
                sample_batch_size=8,
                max_new_tokens=6,
                batch_size=4,
                warmup_steps=0,
                draft_dim=16,
                draft_n_layers=1,
                draft_n_heads=2,
                draft_n_kv_heads=1,
                draft_hidden_dim=32,
            ),
        ),  # fmt: skip
        "a2c": (
            "a2c",
            dict(
                env="CartPole-v1",
                total_steps=96,
                num_envs=4,
                num_steps=8,
                norm_adv=True,
                normalize_obs=True,
                normalize_reward=True,
                eval_episodes=0,
            ),
        ),  # fmt: skip
        "ppo": (
            "ppo",
            dict(
                env="CartPole-v1",
                total_steps=64,
                num_envs=4,
                num_steps=16,
                num_minibatches=1,
                update_epochs=3,
                eval_episodes=0,
                normalize_obs=True,
            ),
        ),  # fmt: skip
    }


def write_pairs(base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))


def train_case(base: Path, folder: Path, name: str, **extra: Any) -> None:
    algo, keywords = cases(base)[name]
    plainrl.train(algo, seed=0, device="cpu", run_dir=folder / name, progress=False, **{**keywords, **extra})


def fail_at_step_2(step: int, trained: Any) -> bool:
    if step == 2 and world().rank == 1:
        raise RuntimeError("this rank fails on purpose at step 2")
    return False


def slowly(step: int, trained: Any) -> bool:
    time.sleep(0.3)  # time for the test to kill the job mid-run
    return False


def main() -> None:
    base, mode, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if mode == "slow":
        plainrl.train("grpo", seed=0, device="cpu", run_dir=base / "slow", progress=False, callbacks=[slowly],
                      **dict(GRPO, total_steps=8, checkpoint_every=2))  # fmt: skip
        return
    if mode == "fail":
        plainrl.train("grpo", seed=0, device="cpu", run_dir=base / "fail", progress=False, callbacks=[fail_at_step_2],
                      **dict(GRPO, total_steps=5))  # fmt: skip
        return
    for name in names:
        train_case(base, base / mode, name, **({"fsdp": True} if mode == "fsdp" else {}))


if __name__ == "__main__":
    main()
