"""The rollout engine: batched sampling with a KV cache, returning what RL trainers need.

    left-pad the prompts (B, P); positions count real tokens only, so every prompt starts at position 0
    prefill: one forward over the distinct prompts fills the KV cache (copied to each prompt's rows), keeps the
             last position's logits
    for t = 1 .. max_new_tokens:
        token_t   ~ softmax(logits / temperature), restricted to the top-k / top-p tokens   (argmax if greedy)
        logprob_t = log softmax(logits / temperature)[token_t]      (before the top-k / top-p cut: the policy's
                                                                     log-prob, the one a teacher-forced forward gives)
        a row is done after EOS, after a stop string, or at max_new_tokens; done rows emit padding, masked out
        decode: one forward of the B new tokens against the cache

Works with any model offering the interface in model.py (the built-in Transformer, hf.HFCausalLM) and any
tokenizer offering tokenizer.py's interface. generate(..., draft=small_model) hands the work to speculative.py.
Randomness comes only from the `generator` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from plainrl.llm.model import Transformer


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
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from logits (B, V): (tokens (B,), their log-probs (B,))."""
    logits = logits.float()
    if params.greedy or params.temperature == 0:
        tokens = logits.argmax(dim=-1)
        return tokens, F.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)
    scaled = logits / params.temperature
    logprobs = F.log_softmax(scaled, dim=-1)
    filtered = filter_logits(scaled, params)
    tokens = torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)
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


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    draft: Any = None,
    draft_k: int = 4,
    logits_hook: Any = None,
) -> Rollout:
    """Sample a completion for each prompt (token ids, e.g. tokenizer.prompt_ids(text)). See the module doc.

    With a draft model (same vocabulary), speculative.py samples from the same distribution with the draft
    proposing draft_k tokens per forward of `model`; the log-probs are still `model`'s. logits_hook(t, logits),
    if given, sees the logits (B, V) each completion token t is drawn from (distill.py keeps the target's)."""
    if draft is not None:
        from plainrl.llm.speculative import speculative_generate

        return speculative_generate(model, draft, tokenizer, prompt_ids, params, draft_k, generator=generator)[0]
    device = next(model.parameters()).device
    ids, mask = pad_sequences(prompt_ids, tokenizer.pad_id, "left", device)
    B, P = ids.shape
    N = params.max_new_tokens
    eos = torch.tensor([] if params.ignore_eos else list(tokenizer.eos_ids), dtype=torch.long, device=device)
    stop_window = max((len(s) for s in params.stop_strings), default=0) + 8  # tokens decoded to look for a stop

    # Equal-length prompts need no mask at all: the model then takes its faster plain-causal path.
    padded = not bool(mask.all())
    key_mask = torch.zeros((B, P + N), dtype=torch.bool, device=device)
    key_mask[:, :P] = mask
    positions = positions_from_mask(mask)
    # Prefill each distinct prompt once (GRPO repeats every prompt G times), then copy its cache rows.
    first, copies = distinct_rows(prompt_ids, device)
    cache = model.new_cache(len(first), P + N)
    if not hasattr(cache, "select"):  # a cache that cannot copy rows (hf.HFCausalLM's): prefill every row
        first = copies = torch.arange(B, device=device)
        cache = model.new_cache(B, P + N)
    logits = model(ids[first], positions[first], key_mask[first, :P] if padded else None, cache, last_only=True)
    logits = logits[copies, -1]
    if len(first) < B:
        cache = cache.select(copies)
    next_position = positions[:, -1:] + 1  # (B, 1)

    out_ids = torch.full((B, N), tokenizer.pad_id, dtype=torch.long, device=device)
    out_logprobs = torch.zeros((B, N), device=device)
    out_mask = torch.zeros((B, N), dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    reasons = ["length"] * B
    steps = 0
    for t in range(N):
        if logits_hook is not None:
            logits_hook(t, logits)
        tokens, logprobs = sample_next(logits, params, generator)
        tokens = tokens.masked_fill(done, tokenizer.pad_id)
        out_ids[:, t], out_logprobs[:, t], out_mask[:, t] = tokens, logprobs.masked_fill(done, 0.0), ~done
        steps = t + 1
        hit_eos = torch.isin(tokens, eos) & ~done
        for row in hit_eos.nonzero().flatten().tolist():
            reasons[row] = "eos"
        done |= hit_eos
        if params.stop_strings:
            for row in (~done).nonzero().flatten().tolist():
                tail = tokenizer.decode(out_ids[row, max(0, t + 1 - stop_window) : t + 1].tolist())
                if any(stop in tail for stop in params.stop_strings):
                    done[row], reasons[row] = True, "stop"
        if t == N - 1 or bool(done.all()):
            break
        key_mask[:, P + t] = True
        logits = model(
            tokens[:, None], next_position, key_mask[:, : P + t + 1] if padded else None, cache, last_only=True
        )[:, -1]
        next_position = next_position + 1

    out_ids, out_logprobs, out_mask = out_ids[:, :steps], out_logprobs[:, :steps], out_mask[:, :steps]
    texts = [
        cut_at_stop(tokenizer.decode(out_ids[row][out_mask[row]].tolist()), params.stop_strings) for row in range(B)
    ]
    return Rollout(ids, mask, out_ids, out_mask, out_logprobs, texts, reasons)


def distinct_rows(sequences: list[list[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, copies): the first row of each distinct sequence, and for every row the index of its sequence
    in `first`, so that rows = first[copies]."""
    index: dict[tuple[int, ...], int] = {}
    copies = [index.setdefault(tuple(seq), len(index)) for seq in sequences]
    first = [copies.index(i) for i in range(len(index))]
    return torch.tensor(first, device=device), torch.tensor(copies, device=device)


def cut_at_stop(text: str, stop_strings: tuple[str, ...]) -> str:
    """The text up to and including the first stop string (a token may carry characters past it)."""
    ends = [text.find(stop) + len(stop) for stop in stop_strings if stop in text]
    return text[: min(ends)] if ends else text


def sequence_logprobs(model: Any, ids: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs: ids, mask (B, L), any padding side -> (B, L - 1): log p(ids[:, t+1] | ids[:, :t+1]).

    This is the differentiable forward RL trainers use for the policy's log-probs of sampled completions.
    """
    logits = model(ids, positions_from_mask(mask), mask)[:, :-1].float() / temperature
    targets = ids[:, 1:]
    return logits.gather(2, targets[..., None]).squeeze(2) - torch.logsumexp(logits, dim=-1)


def completion_logprobs(model: Any, rollout: Rollout, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of a rollout's completion tokens under `model` (with gradients), (B, N), 0 where masked."""
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1)
    P = rollout.prompt_ids.shape[1]
    logprobs = sequence_logprobs(model, ids, mask, temperature)[:, P - 1 :]  # predictions of completion tokens
    return logprobs.masked_fill(~rollout.completion_mask, 0.0)


def shared_prompt_hidden_states(model: Any, ids: torch.Tensor, mask: torch.Tensor, P: int) -> torch.Tensor:
    """The hidden states (b, N, dim) that predict the completion tokens, ids[:, P:], with gradients, computing each
    distinct prompt ids[:, :P] once: a forward over the distinct prompts fills a KV cache, which is copied to every
    row of that prompt, then one forward over the completion tokens reads it. The prompt is causal (it never sees
    the completion), so this equals the forward over whole rows; gradients through the shared prompt add up over
    its rows. With G completions per prompt this skips (G - 1) / G of the prompt's forward and backward, and the
    vocabulary projection runs on completion positions only.
    """
    positions = positions_from_mask(mask)
    first, copies = distinct_rows(torch.cat([ids[:, :P], mask[:, :P]], dim=1).tolist(), ids.device)
    cache = model.new_cache(len(first), P)
    prompt_hidden = model.hidden_states(ids[first, :P], positions[first, :P], mask[first, :P], cache)
    cache = cache.select(copies, max_len=ids.shape[1])
    completion_hidden = model.hidden_states(ids[:, P:], positions[:, P:], mask, cache)
    return torch.cat([prompt_hidden[copies, -1:], completion_hidden[:, :-1]], dim=1)


def completion_logprobs_entropy(
    model: Any, rollout: Rollout, rows: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log-probs (with gradients) and entropies (without) of the completion tokens of `rows`, (b, N)."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.completion_ids[rows]], dim=1)
    mask = torch.cat([rollout.prompt_mask[rows], rollout.completion_mask[rows]], dim=1)
    P = rollout.prompt_ids.shape[1]
    if isinstance(model, Transformer):
        logits = model.lm_head(shared_prompt_hidden_states(model, ids, mask, P))
    else:
        logits = model(ids, positions_from_mask(mask), mask)[:, P - 1 : -1]
    logits = logits.float() / temperature  # (b, N, V): position P - 1 + t predicts completion token t
    log_probs_all = logits.log_softmax(dim=-1)  # (b, N, V)
    logprobs = log_probs_all.gather(2, rollout.completion_ids[rows][..., None]).squeeze(2)
    with torch.no_grad():
        entropy = -(log_probs_all.exp() * log_probs_all).sum(-1)
    completion_mask = rollout.completion_mask[rows]
    return logprobs.masked_fill(~completion_mask, 0.0), entropy.masked_fill(~completion_mask, 0.0)


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    params: SamplingParams,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Completions for user prompts (rendered by the tokenizer, e.g. a chat template), in batches."""
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [tokenizer.prompt_ids(p) for p in prompts[start : start + batch_size]]
        texts += generate(model, tokenizer, chunk, params, generator).texts
    return texts
