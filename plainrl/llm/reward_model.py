"""Reward model (Ouyang et al. 2022, InstructGPT, arXiv 2203.02155): the policy's architecture with a scalar head,
trained on preference pairs with the Bradley-Terry loss.

    r(x, y) = head(h_last)            h_last: the final hidden state at the last token (EOS) of prompt x + completion y
    for step = 1 .. total_steps:
        a batch of pairs (x, y_w, y_l)                          y_w chosen, y_l rejected      preferences.py
        loss = -mean log sigmoid(r(x, y_w) - r(x, y_l))         P(y_w > y_l) = sigmoid(r_w - r_l) (Bradley & Terry 1952)
        one AdamW step
    every eval_every steps: held-out pairwise accuracy = share of pairs with r(x, y_w) > r(x, y_l)

The trunk starts from `model` (an SFT run folder, a Hugging Face model, or tiny), which also samples the verifier
pairs when no `pairs` file is given. PPO (ppo.py) reads a finished run with `load_reward_model(run_dir)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from plainrl.kit import distributed
from plainrl.kit.config import require_ranges
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.evaluate import evaluation_due
from plainrl.llm.generate import positions_from_mask
from plainrl.llm.policies import (
    TrainableWeights,
    build_policy,
    check_model_spec,
    checkpointed,
    load_policy,
    load_tokenizer,
)
from plainrl.llm.preferences import PreferenceConfig, load_pairs, pair_batch, preference_data, tokenize_pairs
from plainrl.llm.tasks import epoch_indices


@dataclass
class Config(PreferenceConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 3e-4, "lora": 1e-4, "full": 1e-5}

    model: str = "tiny"  # the trunk to start from: an SFT run folder, smollm2-135m, a Hugging Face folder
    pair_model: str = ""  # the policy whose samples the verifier turns into pairs; empty: `model`
    total_steps: int = 300  # optimizer steps
    checkpoint_every: int = 100
    batch_size: int = 64  # pairs per step
    weight_decay: float = 0.0
    eval_every: int = 50  # steps between held-out pairwise accuracies (0: only at the end)
    eval_n: int = 100_000  # held-out pairs per evaluation (all of them, up to this many)
    eval_batch_size: int = 256  # pairs per forward when evaluating

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("batch_size",), non_negative=("weight_decay",))
        if self.pair_model:
            check_model_spec(self.pair_model)


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "batch_size"  # under torchrun each rank takes batch_size / N pairs of every batch


class ScalarModel(nn.Module):
    """A language model's trunk with a linear head: one number per position (a reward, or a value in ppo.py)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        hidden_size: int = backbone.hidden_size  # type: ignore[assignment]
        self.head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, L), key_mask (B, L) True on real tokens (None: no padding, or right padding only) -> (B, L)."""
        positions = None if key_mask is None else positions_from_mask(key_mask)
        hidden = self.backbone.hidden_states(ids, positions, key_mask)  # type: ignore[operator]
        return self.head(hidden.float()).squeeze(-1)

    def sequence_scores(self, ids: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The score at each row's last real token, (B,). Any padding side."""
        last = key_mask.long().cumsum(1).argmax(1)  # the first index where the count of real tokens peaks
        return self(ids, key_mask).gather(1, last[:, None]).squeeze(1)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_w - r_l), averaged over pairs."""
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()


def pair_scores(reward_model: ScalarModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen scores (B,), rejected scores (B,)) of a pair_batch: the head at each sequence's EOS."""
    values = reward_model(batch["ids"])  # right padding: no mask needed
    return values.gather(1, batch["last"][:, None]).squeeze(1).chunk(2)


@torch.no_grad()
def pairwise_accuracy(reward_model: ScalarModel, tokenized: list, pad_id: int, batch_size: int) -> float:
    was_training = reward_model.training
    reward_model.eval()
    device = next(reward_model.parameters()).device
    wins = 0
    for start in range(0, len(tokenized), batch_size):
        chosen, rejected = pair_scores(reward_model, pair_batch(tokenized[start : start + batch_size], pad_id, device))
        wins += int((chosen > rejected).sum())
    reward_model.train(was_training)
    return wins / max(len(tokenized), 1)


def load_reward_model(run_dir: str | Path, device: torch.device | str) -> tuple[ScalarModel, Any]:
    """(reward model, tokenizer) of a finished `plainrl reward-model` run, in eval mode and frozen."""
    from plainrl.kit.errors import ConfigError
    from plainrl.kit.run import load_checkpoint_file, read_run_config, saved_config

    if read_run_config(run_dir)["algo"] != "reward-model":
        raise ConfigError(f"reward_model = {str(run_dir)!r} is not a reward-model run folder")
    config = saved_config(run_dir, Config)
    backbone, tokenizer = build_policy(config, device)
    reward_model = ScalarModel(backbone).to(device)
    TrainableWeights(reward_model).load_state_dict(load_checkpoint_file(Path(run_dir), map_location=device)["model"])
    return reward_model.eval().requires_grad_(False), tokenizer


def load_trained(run_dir: Path, device: torch.device | str) -> ScalarModel:
    """`plainrl.load` of a reward-model run: the frozen scorer, reward_model(ids) -> one score per position."""
    return load_reward_model(run_dir, device)[0]


def train(config: Config, run: Run) -> ScalarModel:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    pairs = world.shard(config.batch_size, "batch_size")  # this rank's share of each batch
    task = config.make_task()
    policy, tokenizer = build_policy(config, device)
    sampler = load_policy(config.pair_model, device)[0] if config.pair_model else policy
    train_pairs, test_pairs = preference_data(config, task, sampler, tokenizer, run.dir, device)
    del sampler
    print(f"{len(train_pairs)} training pairs, {len(test_pairs)} held-out pairs (in {run.dir})")
    reward_model = ScalarModel(policy).to(device).train()
    # r_w - r_l cancels the head's bias: its gradient is 0 but for rounding noise, which Adam would blow up to
    # full-size steps. It stays at 0.
    reward_model.head.bias.requires_grad_(False)
    if config.fsdp:
        distributed.shard_model(reward_model)  # in place
    trainable = [p for p in reward_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.resolved_learning_rate(), weight_decay=config.weight_decay)
    train_tokens, test_tokens = tokenize_pairs(train_pairs, tokenizer), tokenize_pairs(test_pairs, tokenizer)

    stateful = checkpointed(optimizer, model=reward_model)
    run.restore(stateful)
    step = run.start_step

    def held_out() -> float:
        return pairwise_accuracy(reward_model, test_tokens[: config.eval_n], tokenizer.pad_id, config.eval_batch_size)

    while step < config.total_steps:
        indices = epoch_indices(step * config.batch_size, config.batch_size, len(train_tokens), config.seed)[pairs.rows]
        batch = pair_batch([train_tokens[i] for i in indices], tokenizer.pad_id, device)
        chosen, rejected = pair_scores(reward_model, batch)
        loss = bradley_terry_loss(chosen, rejected)
        optimizer.zero_grad(set_to_none=True)
        (loss / world.size).backward()  # a rank's share: the world's pairs are world.size equal shares
        world.sync_gradients(trainable)  # summed over ranks: the gradient of the whole batch's mean loss
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        step += 1

        chosen, rejected = chosen.detach(), rejected.detach()
        metrics = {"loss": loss.item(), "grad_norm": float(grad_norm),
                   "train_pairwise_accuracy": float((chosen > rejected).float().mean()),
                   "margin": float((chosen - rejected).mean())}  # fmt: skip
        if evaluation_due(config, step):
            metrics["accuracy"] = held_out()  # pairwise, held out: what curve.png shows
        run.log(step, metrics)
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, reward_model):
            break
    run.maybe_checkpoint(step, stateful, final=True)

    return reward_model


def final_evaluation(config: Config, reward_model: ScalarModel, run_dir: Path, step: int) -> dict[str, Any]:
    """eval.json: pairwise accuracy on the run's held-out pairs (saved in the run folder when it began)."""
    tokenizer = load_tokenizer(config.model)
    test_tokens = tokenize_pairs(load_pairs(run_dir / "pairs_test.jsonl"), tokenizer)[: config.eval_n]
    accuracy = pairwise_accuracy(reward_model, test_tokens, tokenizer.pad_id, config.eval_batch_size)
    return {"pairwise_accuracy": accuracy, "n": len(test_tokens), "step": step}
