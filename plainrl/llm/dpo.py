"""Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290): the policy learns from preference
pairs directly, with the reference model standing in for the reward model.

    log-probs of a completion = sum over its tokens of log pi(token | prompt, tokens before)
    before training: ref_w, ref_l = log pi_ref(y_w | x), log pi_ref(y_l | x) for every pair, computed once (cached)
    for step = 1 .. total_steps:
        a batch of pairs (x, y_w, y_l)
        h = (log pi(y_w|x) - log pi(y_l|x)) - (ref_w - ref_l)
        loss = -log sigmoid(beta h)                                                    loss_type = "sigmoid" (DPO)
             = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)           label_smoothing = eps (cDPO)
             = (h - 1 / (2 beta))^2, with length-averaged log-probs        loss_type = "ipo" (Azar et al. 2023)
             + rpo_alpha * NLL(y_w | x) per token                      optional (RPO, Pang et al. 2024; TRL's rpo_alpha)
        one AdamW step
    implicit rewards: beta (log pi(y|x) - log pi_ref(y|x)); logged: chosen, rejected, margin, preference accuracy

The pairs come from preferences.py: a JSONL file, or the task's verifier applied to the starting policy's own
samples. Held-out task accuracy (greedy) is evaluated as in SFT and GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from plainrl.kit import distributed
from plainrl.kit.config import require, require_ranges
from plainrl.kit.errors import ConfigError
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.evaluate import evaluation_due, held_out_accuracy
from plainrl.llm.generate import SamplingParams
from plainrl.llm.policies import build_policy, checkpointed, frozen_copy
from plainrl.llm.preferences import PreferenceConfig, pair_batch, preference_data, sequence_logprob_sums, tokenize_pairs
from plainrl.llm.tasks import epoch_indices

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class Config(PreferenceConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 5e-5, "lora": 5e-5, "full": 5e-7}

    model: str = "tiny"  # the starting policy (and reference): an SFT run folder, smollm2-135m, a HF folder
    total_steps: int = 200  # optimizer steps
    checkpoint_every: int = 50
    batch_size: int = 64  # pairs per step
    weight_decay: float = 0.0
    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid (DPO) | ipo
    label_smoothing: float = 0.0  # eps of conservative DPO (sigmoid loss only)
    rpo_alpha: float = 0.0  # > 0: adds rpo_alpha x the chosen completions' token-mean NLL (Pang et al. 2024; TRL)
    eval_every: int = 25  # steps between held-out task accuracies (0: only at the end)
    eval_n: int = 200
    eval_batch_size: int = 200

    def validate(self) -> None:
        super().validate()
        require_ranges(
            self, at_least_one=("batch_size",), positive=("beta",), non_negative=("rpo_alpha", "weight_decay")
        )
        require(self.loss_type in LOSS_TYPES, f"loss_type = {self.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        require(0 <= self.label_smoothing < 0.5, f"label_smoothing = {self.label_smoothing} must be in [0, 0.5)")


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "batch_size"  # under torchrun each rank takes batch_size / N pairs of every batch


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses (B,) and implicit rewards (chosen (B,), rejected (B,)) from sequence log-probs (B,) each."""
    h = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ConfigError(f"loss_type = {loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


def pair_logprobs(
    model: Any, batch: dict[str, torch.Tensor], loss_type: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log pi(y_w|x), log pi(y_l|x)), (B,) each: summed over tokens, or averaged for IPO (as TRL does); and the
    mean per-token log-prob of y_w (B,), for the optional NLL term."""
    sums, counts = sequence_logprob_sums(model, batch)
    logprobs = sums / counts.clamp(min=1) if loss_type == "ipo" else sums
    chosen, rejected = logprobs.chunk(2)
    return chosen, rejected, (sums / counts.clamp(min=1)).chunk(2)[0]


@torch.no_grad()
def reference_logprobs(reference: Any, tokenized: list, pad_id: int, loss_type: str, batch_size: int) -> torch.Tensor:
    """(n_pairs, 2): log pi_ref of each pair's chosen and rejected completion, computed once before training."""
    device = next(reference.parameters()).device
    rows = []
    for start in range(0, len(tokenized), batch_size):
        batch = pair_batch(tokenized[start : start + batch_size], pad_id, device)
        chosen, rejected, _ = pair_logprobs(reference, batch, loss_type)
        rows.append(torch.stack([chosen, rejected], dim=1))
    return torch.cat(rows)


def train(config: Config, run: Run) -> Any:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    pairs = world.shard(config.batch_size, "batch_size")  # this rank's share of each batch
    task = config.make_task()
    model, tokenizer = build_policy(config, device)
    train_pairs, test_pairs = preference_data(config, task, model, tokenizer, run.dir, device)
    print(f"{len(train_pairs)} training pairs, {len(test_pairs)} held-out pairs (in {run.dir})")
    train_tokens, test_tokens = tokenize_pairs(train_pairs, tokenizer), tokenize_pairs(test_pairs, tokenizer)
    # The reference is the starting policy. Its log-probs never change, so one pass computes them for good.
    reference = frozen_copy(model, config)
    ref_train = reference_logprobs(reference, train_tokens, tokenizer.pad_id, config.loss_type, config.eval_batch_size)
    ref_test = reference_logprobs(reference, test_tokens, tokenizer.pad_id, config.loss_type, config.eval_batch_size)
    del reference
    if config.fsdp:
        distributed.shard_model(model)  # in place
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.resolved_learning_rate(), weight_decay=config.weight_decay)
    eval_params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True, stop_strings=config.stop_strings)

    stateful = checkpointed(optimizer, model=model)
    run.restore(stateful)
    step = run.start_step

    @torch.no_grad()
    def held_out_preference_accuracy() -> float:
        model.eval()
        wins = 0
        for start in range(0, len(test_tokens), config.eval_batch_size):
            batch = pair_batch(test_tokens[start : start + config.eval_batch_size], tokenizer.pad_id, device)
            chosen, rejected, _ = pair_logprobs(model, batch, config.loss_type)
            ref = ref_test[start : start + config.eval_batch_size]
            wins += int(((chosen - ref[:, 0]) > (rejected - ref[:, 1])).sum())
        model.train()
        return wins / max(len(test_tokens), 1)

    while step < config.total_steps:
        indices = epoch_indices(step * config.batch_size, config.batch_size, len(train_tokens), config.seed)[pairs.rows]
        batch = pair_batch([train_tokens[i] for i in indices], tokenizer.pad_id, device)
        chosen, rejected, chosen_token_logprob = pair_logprobs(model, batch, config.loss_type)
        ref = ref_train[indices].to(device)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen, rejected, ref[:, 0], ref[:, 1], config.beta, config.loss_type, config.label_smoothing
        )
        loss = losses.mean() - config.rpo_alpha * chosen_token_logprob.mean()
        optimizer.zero_grad(set_to_none=True)
        (loss / world.size).backward()  # a rank's share: the world's pairs are world.size equal shares
        world.sync_gradients(trainable)  # summed over ranks: the gradient of the whole batch's mean loss
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        step += 1

        metrics = {
            "loss": loss.item(), "grad_norm": float(grad_norm),
            "rewards_chosen": float(chosen_rewards.mean()), "rewards_rejected": float(rejected_rewards.mean()),
            "reward_margin": float((chosen_rewards - rejected_rewards).mean()),
            "preference_accuracy": float((chosen_rewards > rejected_rewards).float().mean()),
            "logprobs_chosen": float(chosen.detach().mean()), "logprobs_rejected": float(rejected.detach().mean()),
        }  # fmt: skip
        if evaluation_due(config, step):
            metrics["accuracy"] = held_out_accuracy(model, tokenizer, task, eval_params, config)
            metrics["held_out_preference_accuracy"] = held_out_preference_accuracy()
        run.log(step, metrics)
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, model):
            break
    run.maybe_checkpoint(step, stateful, final=True)

    return model
