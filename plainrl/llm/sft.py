"""Supervised fine-tuning: maximise the log-likelihood of the target completions, and only of them.

    for step = 1 .. total_steps:
        lr = warm-up (linear from 0) then cosine decay to min_lr_ratio * learning_rate
        for each of grad_accum micro-batches of (prompt, target) pairs:
            ids  = [prompt tokens][target tokens][EOS]          right-padded to the batch's longest
            loss = - sum over target and EOS tokens of log p(token | tokens before it) / (target tokens in the step)
            loss.backward()                                      gradients add up over the micro-batches
        clip the gradient norm; one AdamW step
        every eval_every steps: greedy accuracy on the task's held-out split

`--model tiny` trains the built-in decoder from scratch; `--model smollm2-135m` or a Hugging Face folder
fine-tunes a pretrained model, all weights or (with --lora-rank R) LoRA adapters only. Each step's
micro-batches are a function of (seed, step) alone, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from plainrl.kit import distributed
from plainrl.kit.config import require, require_ranges
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.config import PolicyConfig
from plainrl.llm.evaluate import evaluation_due, held_out_accuracy
from plainrl.llm.generate import SamplingParams, pad_sequences
from plainrl.llm.policies import build_policy, checkpointed, model_prompt
from plainrl.llm.tasks import Example, epoch_indices


@dataclass
class Config(PolicyConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 1e-3, "lora": 2e-4, "full": 2e-5}

    total_steps: int = 1500  # optimizer steps
    checkpoint_every: int = 500  # optimizer steps
    torch_threads: int = 1  # a tiny model trains fastest on one core (two threads lose to a busy machine)
    batch_size: int = 128  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    adam_betas: tuple[float, ...] = (0.9, 0.95)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # the cosine ends at this fraction of learning_rate
    weight_decay: float = 0.1
    eval_every: int = 250  # optimizer steps
    eval_n: int = 500
    eval_batch_size: int = 250
    stop_at_accuracy: float = 0.0  # > 0: stop once held-out accuracy reaches it (benchmarks)
    tiny_dim: int = 128  # the built-in model's size (--model tiny only)
    tiny_n_layers: int = 4
    tiny_n_heads: int = 4
    tiny_n_kv_heads: int = 2
    tiny_hidden_dim: int = 384
    tiny_attention: str = "gqa"  # gqa | mla (DeepSeek-V2's latent attention: the cache keeps a latent per token)
    tiny_kv_latent_dim: int = 32  # mla
    tiny_rope_dim: int = 16  # mla: the decoupled RoPE key's width (even)

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("batch_size", "grad_accum", "tiny_dim", "tiny_n_layers", "tiny_n_heads",
                                           "tiny_n_kv_heads", "tiny_hidden_dim"),
                       fraction=("min_lr_ratio",), non_negative=("weight_decay",))  # fmt: skip
        require(
            0 <= self.warmup_steps < self.total_steps, f"warmup_steps = {self.warmup_steps} must be in [0, total_steps)"
        )
        require(len(self.adam_betas) == 2, f"adam_betas = {self.adam_betas} must be two numbers")
        require(self.tiny_dim % self.tiny_n_heads == 0, "tiny_dim must be a multiple of tiny_n_heads")
        require(self.tiny_n_heads % self.tiny_n_kv_heads == 0, "tiny_n_heads must be a multiple of tiny_n_kv_heads")
        require(self.tiny_attention in ("gqa", "mla"), f"tiny_attention = {self.tiny_attention!r} is not gqa or mla")
        require(self.tiny_kv_latent_dim >= 1 and self.tiny_rope_dim >= 2 and self.tiny_rope_dim % 2 == 0,
                f"tiny_kv_latent_dim = {self.tiny_kv_latent_dim} must be >= 1 and tiny_rope_dim = "
                f"{self.tiny_rope_dim} even and >= 2")  # fmt: skip


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "batch_size"  # under torchrun each rank takes batch_size / N examples of every micro-batch
MULTI_TURN = True  # environment = ...: imitate its task's targets; evaluate in conversations


def learning_rate_at(step: int, config: Config) -> float:
    """Linear warm-up over warmup_steps, then a cosine from learning_rate down to min_lr_ratio of it."""
    peak = config.resolved_learning_rate()
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return peak * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def tokenize(examples: list[Example], task: Any, tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids + EOS) per example."""
    return [
        (tokenizer.prompt_ids(model_prompt(task, ex, tokenizer)), tokenizer.encode(ex.target) + [tokenizer.eos_ids[0]])
        for ex in examples
    ]


def make_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ids (B, L) and the loss mask (B, L - 1): True where the next token is a target token."""
    ids, _ = pad_sequences([p + c for p, c in pairs], pad_id, "right", device)
    loss_mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, (prompt, completion) in enumerate(pairs):
        loss_mask[row, len(prompt) : len(prompt) + len(completion)] = True
    return {"ids": ids, "loss_mask": loss_mask[:, 1:]}  # position t predicts token t + 1


def sft_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of the target tokens. Right padding: real tokens never see padding, so the plain
    causal mask is enough and padded positions only need to be left out of the loss."""
    logits = model(batch["ids"])[:, :-1]  # (B, L-1, V)
    targets = batch["ids"][:, 1:]
    losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return (losses * batch["loss_mask"].flatten()).sum()


def micro_batch_indices(step: int, micro: int, config: Config, n_examples: int) -> torch.Tensor:
    """Example indices of one micro-batch: epochs are seeded permutations, so any step can be recomputed."""
    start = step * config.batch_size * config.grad_accum + micro * config.batch_size
    return epoch_indices(start, config.batch_size, n_examples, config.seed)


def train(config: Config, run: Run) -> Any:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    examples = world.shard(config.batch_size, "batch_size")  # this rank's share of each micro-batch
    task = config.make_task()
    model, tokenizer = build_policy(config, device)
    if config.fsdp:
        distributed.shard_model(model)  # in place
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.resolved_learning_rate(),
        betas=(config.adam_betas[0], config.adam_betas[1]),
        weight_decay=config.weight_decay,
    )
    train_pairs = tokenize(task.train, task, tokenizer)
    eval_params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True)

    stateful = checkpointed(optimizer, model=model)
    run.restore(stateful)
    step = run.start_step

    accuracy = float("nan")
    while step < config.total_steps:
        step_start = time.perf_counter()
        lr = learning_rate_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = [
            make_batch([train_pairs[i] for i in micro_batch_indices(step, m, config, len(train_pairs))[examples.rows]],
                       tokenizer.pad_id, device)
            for m in range(config.grad_accum)
        ]  # fmt: skip
        local_tokens = sum(int(b["loss_mask"].sum()) for b in batches)
        target_tokens = float(world.sum(torch.tensor(float(local_tokens))))  # of the whole step, all ranks
        total_loss = 0.0
        for batch in batches:
            loss = sft_loss_sum(model, batch) / target_tokens  # token mean over the whole step
            loss.backward()
            total_loss += loss.item() * world.size  # ranks' shares, averaged in the log: the step's loss
        world.sync_gradients(trainable)  # summed over ranks: the gradient of the whole step's loss
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        metrics = {"loss": total_loss, "grad_norm": float(grad_norm), "learning_rate": lr,
                   "tokens_per_second": local_tokens / (time.perf_counter() - step_start)}  # fmt: skip
        if evaluation_due(config, step):
            accuracy = held_out_accuracy(model, tokenizer, task, eval_params, config)
            metrics["accuracy"] = accuracy
        run.log(step, metrics)
        if config.stop_at_accuracy > 0 and metrics.get("accuracy", 0.0) >= config.stop_at_accuracy:
            print(f"step {step}: held-out accuracy {accuracy:.3f} >= {config.stop_at_accuracy}, stopping")
            break
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, model):
            break
    run.maybe_checkpoint(step, stateful, final=True)

    return model
