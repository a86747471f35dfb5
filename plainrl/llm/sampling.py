"""The low-level pieces of sampling, shared by generate.py and speculative.py: the sampling parameters, the
Rollout a batch of completions comes back as, padding and positions, the top-k / top-p cut, one sampling step, and
the stop-string cut. It imports neither generate.py nor speculative.py (generate -> speculative -> sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from plainrl.kit.distributed import Shard


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0  # keep the smallest set of tokens whose probabilities sum to >= top_p
    top_k: int = 0  # 0: no top-k cut
    greedy: bool = False  # argmax; log-probs are then those of the untempered distribution
    stop_strings: tuple[str, ...] = ()  # a completion ends once its text contains one (kept in the text)
    ignore_eos: bool = False  # always run max_new_tokens (benchmarks)


@dataclass
class Rollout:
    """A batch of completions. Tensors are (B, N) with N = the longest completion, padded with pad_id."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P) True on real prompt tokens
    completion_ids: torch.Tensor  # (B, N)
    completion_mask: torch.Tensor  # (B, N) True on generated tokens, the EOS that ended a row included
    logprobs: torch.Tensor  # (B, N) log-prob of each generated token, 0 where the mask is False
    texts: list[str] = field(default_factory=list)  # decoded completions, cut after a stop string
    finish_reasons: list[str] = field(default_factory=list)  # "eos", "stop" or "length"
    # (B, N) True on every real token: the model's and, in a multi-turn trajectory (multi_turn.py), the
    # environment's, which attention sees but the loss does not. None: the completion_mask.
    completion_real: torch.Tensor | None = None

    @property
    def completion_attention_mask(self) -> torch.Tensor:
        return self.completion_mask if self.completion_real is None else self.completion_real


def pad_sequences(
    sequences: list[list[int]], pad_id: int, side: str = "left", device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (ids, mask), each (B, L) with L = the longest; padding on the left or the right."""
    if side not in ("left", "right"):
        raise ValueError(f"side = {side!r} is not left or right")
    longest = max(len(s) for s in sequences)
    padded, real = [], []
    for seq in sequences:  # lists first, one tensor at the end: fast for thousands of rows
        fill = longest - len(seq)
        padded.append([pad_id] * fill + list(seq) if side == "left" else list(seq) + [pad_id] * fill)
        real.append([False] * fill + [True] * len(seq) if side == "left" else [True] * len(seq) + [False] * fill)
    ids = torch.tensor(padded, dtype=torch.long).reshape(len(sequences), longest)
    mask = torch.tensor(real, dtype=torch.bool).reshape(len(sequences), longest)
    return ids.to(device), mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """RoPE positions that skip padding: (B, L) mask -> 0, 1, 2, ... over each row's real tokens."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None, shard: Shard | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from logits (B, V): (tokens (B,), their log-probs (B,)).

    Inverse-CDF sampling: row b takes the first token whose cumulative probability exceeds its uniform u_b. `shard`
    says which rows of a global batch these are (data-parallel ranks); the u of all rows are drawn and each rank
    keeps its own, so a row's sample does not depend on how the batch is split."""
    logits = logits.float()
    if params.greedy or params.temperature == 0:
        tokens = logits.argmax(dim=-1)
        return tokens, F.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)
    scaled = logits / params.temperature
    logprobs = F.log_softmax(scaled, dim=-1)
    cumulative = filter_logits(scaled, params).softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    shard = shard or Shard(0, len(logits), len(logits))
    u = shard.uniform(generator, logits.device) * cumulative[:, -1]  # (B,); x the total: rounding-safe
    # side="right": the first token with cumulative > u, so a token of probability 0 is never drawn
    tokens = torch.searchsorted(cumulative, u[:, None], side="right").squeeze(1).clamp(max=logits.shape[-1] - 1)
    return tokens, logprobs.gather(1, tokens[:, None]).squeeze(1)


def filter_logits(scaled: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Tempered logits (..., V) with the tokens outside the top-k / top-p set at -inf."""
    filtered = scaled
    if params.top_k > 0:
        kth_largest = torch.topk(scaled, min(params.top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
        filtered = filtered.masked_fill(scaled < kth_largest, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the tokens ranked above
        drop_sorted = mass_before >= params.top_p  # the top token always stays (mass_before = 0)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    return filtered


def cut_at_stop(text: str, stop_strings: tuple[str, ...]) -> str:
    """The text up to and including the first stop string (a token may carry characters past it)."""
    ends = [text.find(stop) + len(stop) for stop in stop_strings if stop in text]
    return text[: min(ends)] if ends else text


def select_rollouts(parts: list[tuple[Rollout, list[int]]], pad_id: int) -> Rollout:
    """The rows `rows` of each rollout, in one Rollout: prompts left-padded and completions right-padded to the
    longest (DAPO's dynamic sampling keeps the groups it wants from several draws)."""
    P = max(r.prompt_ids.shape[1] for r, _ in parts)
    N = max(r.completion_ids.shape[1] for r, _ in parts)

    def widen(t: torch.Tensor, rows: list[int], width: int, fill: float | int | bool, left: bool) -> torch.Tensor:
        t = t[rows]
        pad = (width - t.shape[1], 0) if left else (0, width - t.shape[1])
        return F.pad(t, pad, value=fill)

    def cat(name: str, width: int, fill: float | int | bool, left: bool) -> torch.Tensor:
        return torch.cat([widen(getattr(r, name), rows, width, fill, left) for r, rows in parts])

    real = None
    if any(r.completion_real is not None for r, _ in parts):
        real = torch.cat([widen(r.completion_attention_mask, rows, N, False, False) for r, rows in parts])
    return Rollout(cat("prompt_ids", P, pad_id, True), cat("prompt_mask", P, False, True),
                   cat("completion_ids", N, pad_id, False), cat("completion_mask", N, False, False),
                   cat("logprobs", N, 0.0, False), [r.texts[i] for r, rows in parts for i in rows],
                   [r.finish_reasons[i] for r, rows in parts for i in rows], real)  # fmt: skip
