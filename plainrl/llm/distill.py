"""Distil a small draft model for speculative sampling from a target, on the target's own samples.

    prompts   = the task's training questions (the chat version for chat models)
    samples   = n_samples completions of the target (temperature sample_temperature; the first
                greedy_fraction of them greedy), and at each completion position the target's top_k
                log-probabilities log p(. | prompt, completion so far): the teacher's distributions
    draft     = the built-in decoder, small (draft_dim, draft_n_layers), on the target's tokenizer; its tied
                embedding starts as the projection of the target's embedding on its top draft_dim principal
                directions (init_embedding = "pca") and stays frozen unless train_embedding
    for step = 1 .. total_steps (or until `minutes` have passed since the start, sampling included):
        a batch of samples, right-padded: [prompt][completion]
        loss = mean over completion positions of - sum over the teacher's top-k tokens v of p(v) log q(v)
                                                            (= KL(p || q) up to a constant, on the kept mass)
        AdamW step, warm-up then cosine learning rate

The run folder is an ordinary plainrl LLM run: `load_policy(run_dir)` gives the draft (and the target's
tokenizer), so `plainrl generate --model smollm2-135m --draft runs/distill_...` uses it. Under torchrun every rank
samples the same teacher completions (rank 0 saves them) and trains on batch_size / N of each batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from plainrl.kit import distributed
from plainrl.kit.config import require, require_ranges
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.config import TaskConfig
from plainrl.llm.generate import SamplingParams, generate, pad_sequences
from plainrl.llm.model import ModelConfig, Transformer, rope_cos_sin
from plainrl.llm.policies import load_policy, load_tokenizer, model_prompt


@dataclass
class Config(TaskConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 2e-3, "lora": 2e-3, "full": 2e-3}  # a new draft

    task: str = "arithmetic"  # the task whose training questions are the prompts (the draft's domain)
    model: str = "smollm2-135m"  # the target: a model name, Hugging Face folder or LLM run folder
    total_steps: int = 600  # optimizer steps
    checkpoint_every: int = 200
    torch_threads: int = 1
    minutes: float = 0.0  # > 0: stop training once this much time has passed since the start
    n_samples: int = 448  # target completions to distil on
    max_new_tokens: int = 48  # of each target sample
    sample_temperature: float = 1.0
    greedy_fraction: float = 0.5  # this share of the samples is the target's greedy completion
    sample_batch_size: int = 32
    top_k: int = 32  # teacher log-probs kept per position
    batch_size: int = 16  # sequences per optimizer step
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    draft_dim: int = 256
    draft_n_layers: int = 4
    draft_n_heads: int = 4
    draft_n_kv_heads: int = 2
    draft_hidden_dim: int = 768
    init_embedding: str = "pca"  # pca | random
    train_embedding: bool = False  # the tied embedding/output matrix dominates the cost of every step

    def validate(self) -> None:
        super().validate()
        require_ranges(self, non_negative=("minutes", "weight_decay"),
                       at_least_one=("n_samples", "sample_batch_size", "top_k", "batch_size", "draft_dim",
                                     "draft_n_layers", "draft_n_heads", "draft_n_kv_heads", "draft_hidden_dim"),
                       positive=("sample_temperature",), fraction=("greedy_fraction",))  # fmt: skip
        require(
            0 <= self.warmup_steps < self.total_steps, f"warmup_steps = {self.warmup_steps} must be in [0, total_steps)"
        )
        require(self.draft_dim % self.draft_n_heads == 0, "draft_dim must be a multiple of draft_n_heads")
        require(self.draft_n_heads % self.draft_n_kv_heads == 0, "draft_n_heads must be a multiple of draft_n_kv_heads")
        require(self.init_embedding in ("pca", "random"), f"init_embedding = {self.init_embedding!r} is not pca|random")


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "batch_size"  # under torchrun each rank takes batch_size / N samples of every batch


def draft_config(config: Config, vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, dim=config.draft_dim, n_layers=config.draft_n_layers,
                       n_heads=config.draft_n_heads, n_kv_heads=config.draft_n_kv_heads,
                       hidden_dim=config.draft_hidden_dim, max_seq_len=4096)  # fmt: skip


def build_policy(config: Config, device: torch.device | str) -> tuple[Transformer, Any]:
    """The (untrained) draft a distill run's config describes, and the target's tokenizer."""
    tokenizer = load_tokenizer(config.model)
    return Transformer(draft_config(config, tokenizer.vocab_size)).to(device), tokenizer


def check(config: Config) -> None:
    """Before the run folder exists: the draft's width fits the target's vocabulary (the PCA start projects the
    target's (V, D) embedding on `draft_dim` principal directions, so draft_dim <= V and <= D)."""
    require(not config.fsdp, "fsdp = true: distill-draft trains a small draft, copied on every rank (fsdp = false)")
    vocab_size = load_tokenizer(config.model).vocab_size
    require(
        config.draft_dim <= vocab_size,
        f"draft_dim = {config.draft_dim} must be <= the target's vocabulary size ({vocab_size})",
    )


def pca_embedding(target_embedding: torch.Tensor, dim: int) -> torch.Tensor:
    """E V: the target's embedding (V, D) in the basis of its top `dim` right singular vectors (V, dim)."""
    shape = tuple(target_embedding.shape)
    require(dim <= min(shape), f"draft_dim = {dim} must be <= the target's vocabulary and width {shape} (PCA start)")
    _, _, basis = torch.pca_lowrank(target_embedding.float(), q=dim, center=False, niter=4)
    return target_embedding.float() @ basis


def sample_teacher(config: Config, target: Any, tokenizer: Any, prompts: list[str]) -> list[dict[str, Any]]:
    """Target completions with its top-k log-probs at each completion position."""
    generator = torch.Generator(device=next(target.parameters()).device).manual_seed(config.seed)
    n_greedy = round(config.greedy_fraction * len(prompts))
    samples: list[dict[str, Any]] = []
    for start in range(0, len(prompts), config.sample_batch_size):
        chunk = prompts[start : start + config.sample_batch_size]
        greedy = start < n_greedy  # whole batches: the greedy share is rounded to them
        params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.sample_temperature,
                                greedy=greedy)  # fmt: skip
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []

        def keep(t: int, logits: torch.Tensor, kept: list = kept) -> None:
            top = F.log_softmax(logits.float(), dim=-1).topk(config.top_k, dim=-1)
            kept.append((top.indices, top.values))

        ids = [tokenizer.prompt_ids(p) for p in chunk]
        rollout = generate(target, tokenizer, ids, params, generator, logits_hook=keep)
        top_ids, top_logprobs = torch.stack([k[0] for k in kept], 1), torch.stack([k[1] for k in kept], 1)
        for row, prompt_ids in enumerate(ids):
            n = int(rollout.completion_mask[row].sum())
            samples.append(dict(prompt=prompt_ids, completion=rollout.completion_ids[row, :n].tolist(),
                                top_ids=top_ids[row, :n].cpu(), top_logprobs=top_logprobs[row, :n].cpu()))  # fmt: skip
        distributed.say(f"sampled {len(samples)}/{len(prompts)} target completions")
    return samples


def completion_logprobs(draft: Transformer, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """log q(. | ids[:, :t+1]) at the given (row, t) positions only, (M, V): the output matrix is the expensive
    part of a small model with a large vocabulary, so it runs only where the loss needs it."""
    cos, sin = rope_cos_sin(torch.arange(ids.shape[1], device=ids.device).expand(ids.shape), draft.config.rope_width,
                            draft.config.rope_theta)  # fmt: skip
    x = draft.embed_tokens(ids)
    for layer in draft.layers:
        x = layer(x, cos, sin, None, None)  # right padding: the plain causal mask
    hidden = draft.norm(x[positions[:, 0], positions[:, 1]])
    return F.log_softmax(draft.lm_head(hidden).float(), dim=-1)


def make_batch(samples: list[dict[str, Any]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """ids (B, L) right-padded; positions (M, 2) predicting completion tokens; teacher top-k ids, log-probs (M, k)."""
    ids, _ = pad_sequences([s["prompt"] + s["completion"] for s in samples], pad_id, "right")
    positions = [(row, len(s["prompt"]) - 1 + t) for row, s in enumerate(samples) for t in range(len(s["completion"]))]
    top_ids = torch.cat([s["top_ids"] for s in samples])
    top_logprobs = torch.cat([s["top_logprobs"] for s in samples])
    return ids, torch.tensor(positions), top_ids, top_logprobs


def learning_rate_at(step: int, config: Config) -> float:
    if step < config.warmup_steps:
        return config.resolved_learning_rate() * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps))
    return config.resolved_learning_rate() * (
        config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def train(config: Config, run: Run) -> Transformer:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    rows = world.shard(config.batch_size, "batch_size")  # this rank's share of each batch
    started = time.perf_counter()
    draft, tokenizer = build_policy(config, "cpu")

    samples_file = run.dir / "samples.pt"
    saved = torch.load(samples_file) if world.is_main and samples_file.is_file() else None
    samples = world.broadcast_object(saved)  # a resumed run distils on the same samples (rank 0's folder)
    if samples is None:
        target, _ = load_policy(config.model, device)  # the teacher samples on the training device
        target.eval()
        task = config.make_task()
        prompts = [model_prompt(task, example, tokenizer) for example in task.train[: config.n_samples]]
        samples = sample_teacher(config, target, tokenizer, prompts)
        if config.init_embedding == "pca":
            draft.embed_tokens.weight.data.copy_(pca_embedding(target.embed_tokens.weight.detach(), config.draft_dim))
        if world.is_main:
            torch.save(samples, samples_file)
            torch.save(draft.embed_tokens.weight.data, run.dir / "embedding_init.pt")
        del target
    if not config.train_embedding:
        draft.embed_tokens.weight.requires_grad_(False)
    draft = draft.to(device).train()
    trainable = [p for p in draft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.resolved_learning_rate(), weight_decay=config.weight_decay)
    stateful = {"model": draft, "optimizer": optimizer}
    embedding_file = run.dir / "embedding_init.pt"
    if not run.restore(stateful) and world.broadcast_object(embedding_file.is_file()):
        draft.embed_tokens.weight.data.copy_(
            world.broadcast_object(torch.load(embedding_file) if world.is_main else None)
        )
    step = run.start_step
    size, tokens = sum(p.numel() for p in draft.parameters()) / 1e6, sum(len(s["completion"]) for s in samples)
    distributed.say(f"draft: {size:.1f}M parameters, {len(samples)} samples, {tokens} completion tokens")

    while step < config.total_steps:
        if world.any(config.minutes > 0 and time.perf_counter() - started > 60 * config.minutes):  # all ranks
            distributed.say(f"step {step}: the {config.minutes}-minute budget is spent, stopping")
            break
        step_start = time.perf_counter()
        lr = learning_rate_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(config.seed * 100_003 + step))
        batch = order[: config.batch_size][rows.rows]
        ids, positions, top_ids, top_logprobs = make_batch([samples[i] for i in batch], tokenizer.pad_id)
        ids, positions = ids.to(device), positions.to(device)
        full_log_q = completion_logprobs(draft, ids, positions)  # (M, V)
        log_q = full_log_q.gather(1, top_ids.to(device))  # (M, k) on the teacher's top-k
        p = top_logprobs.to(device).exp()
        total_positions = world.sum(torch.tensor(float(len(positions)), device=device))  # on all ranks
        loss = -(p * log_q).sum() / total_positions  # this rank's share of the mean over the batch's positions
        loss.backward()
        world.sync_gradients(trainable)  # summed over ranks: the whole batch's gradient
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        with torch.no_grad():
            kl = (p * (top_logprobs.to(device) - log_q)).sum(dim=1).mean()
            top1 = (full_log_q.argmax(dim=1) == top_ids[:, 0].to(device)).float().mean()  # the same argmax
        run.log(step, {"loss": loss.item() * world.size, "kl_topk": kl.item(), "top1_agreement": top1.item(),
                       "grad_norm": float(grad_norm), "learning_rate": lr,
                       "tokens_per_second": len(positions) / (time.perf_counter() - step_start)})  # fmt: skip
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, draft):
            break
    run.maybe_checkpoint(step, stateful, final=True)
    return draft


def final_evaluation(config: Config, draft: Transformer, run_dir: Path, step: int) -> dict[str, Any]:
    """eval.json of a draft: how far it trained (its acceptance rate is measured by `plainrl generate --draft`)."""
    return {"step": step, "samples": config.n_samples}
