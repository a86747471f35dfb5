"""The rollout engine: batched sampling with a KV cache, returning what RL trainers need.

    left-pad the prompts (B, P); positions count real tokens only, so every prompt starts at position 0
    prefill: one forward over the distinct prompts fills the KV cache (copied to each prompt's rows), keeps the
             last position's logits
    for t = 1 .. max_new_tokens:
        token_t   ~ softmax(logits / temperature), restricted to the top-k / top-p tokens   (argmax if greedy)
        logprob_t = log softmax(logits / temperature)[token_t]      (before the top-k / top-p cut: the policy's
                                                                     log-prob, the one a teacher-forced forward gives)
        a row is done after EOS, after a stop string, or at max_new_tokens; done rows emit padding, masked out
        decode: one forward of the B new tokens against the cache; on a GPU with the built-in model a fixed-shape
                forward replayed as a CUDA graph (graphs.py)

Works with any model offering the interface in model.py (the built-in Transformer, hf.HFCausalLM) and any
tokenizer offering tokenizer.py's interface. generate(..., draft=small_model) hands the work to speculative.py.
The pieces both share (SamplingParams, Rollout, padding, the top-k / top-p cut) live in sampling.py.
Randomness comes only from the `generator` passed in.
"""

from __future__ import annotations

from typing import Any

import torch

from plainrl.kit.distributed import Gathered, Shard, fsdp_modules
from plainrl.llm.graphs import StepGraph, decode_mode
from plainrl.llm.model import Transformer
from plainrl.llm.sampling import (
    Rollout,
    SamplingParams,
    cut_at_stop,
    pad_sequences,
    positions_from_mask,
    sample_next,
)
from plainrl.llm.speculative import speculative_generate


def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    draft: Any = None,
    draft_k: int = 4,
    logits_hook: Any = None,
    shard: Shard | None = None,
    check_every: int | None = None,
    decode: str = "auto",
) -> Rollout:
    """Sample a completion for each prompt (token ids, e.g. tokenizer.prompt_ids(text)). See the module doc.

    With a draft model (same vocabulary), speculative.py samples from the same distribution with the draft
    proposing draft_k tokens per forward of `model`; the log-probs are still `model`'s. logits_hook(t, logits),
    if given, sees the logits (B, V) each completion token t is drawn from (distill.py keeps the target's).
    shard: these prompts are rows [start, stop) of a batch shared by data-parallel ranks (sampling.sample_next).
    An FSDP-sharded model is gathered whole for the call: ranks decode for different numbers of steps.
    check_every: tokens between two looks (a host synchronisation) at whether every row is done; EOS is tracked on
    the device meanwhile, and the steps past the last real token are cut, so the rollout is the same for any
    value. Default: 8 on a GPU (a sync stalls its queue), 1 on the CPU (no stall; decoding past the end costs).
    decode: "dynamic" (attention over the filled cache slots), "static" (the built-in model's fixed-shape forward),
    "graph" (that forward as a CUDA graph); "auto": graph for the built-in model on a GPU, else dynamic. All give
    the same tokens."""
    with Gathered(model), torch.inference_mode():
        if draft is not None:
            return speculative_generate(
                model, draft, tokenizer, prompt_ids, params, draft_k, generator=generator, decode=decode
            )[0]
        device = next(model.parameters()).device
        decode = decode_mode(decode, model, device)
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
        if decode != "dynamic":  # the step's inputs in fixed buffers: the token, its position and cache slot
            step_tokens = torch.zeros((B, 1), dtype=torch.long, device=device)
            slot = torch.full((1,), P, dtype=torch.long, device=device)
            step = StepGraph(
                lambda: model(step_tokens, next_position, key_mask, cache, last_only=True, slots=slot)[:, -1],
                capture=decode == "graph",
            )

        out_ids = torch.full((B, N), tokenizer.pad_id, dtype=torch.long, device=device)
        out_logprobs = torch.zeros((B, N), device=device)
        out_mask = torch.zeros((B, N), dtype=torch.bool, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        reasons = ["length"] * B
        eos_at = torch.full((B,), -1, dtype=torch.long, device=device)  # the step a row emitted EOS (-1: none)
        every = check_every or (8 if device.type == "cuda" else 1)
        for t in range(N):
            if logits_hook is not None:
                logits_hook(t, logits)
            tokens, logprobs = sample_next(logits, params, generator, shard)
            tokens = tokens.masked_fill(done, tokenizer.pad_id)
            out_ids[:, t], out_logprobs[:, t], out_mask[:, t] = tokens, logprobs.masked_fill(done, 0.0), ~done
            hit_eos = torch.isin(tokens, eos) & ~done
            eos_at = torch.where(hit_eos, t, eos_at)
            done |= hit_eos
            if params.stop_strings:
                for row in (~done).nonzero().flatten().tolist():
                    tail = tokenizer.decode(out_ids[row, max(0, t + 1 - stop_window) : t + 1].tolist())
                    if any(stop in tail for stop in params.stop_strings):
                        done[row], reasons[row] = True, "stop"
            if t == N - 1 or (((t + 1) % every == 0 or params.stop_strings) and bool(done.all())):
                break
            key_mask[:, P + t] = True
            if decode == "dynamic":
                logits = model(
                    tokens[:, None], next_position, key_mask[:, : P + t + 1] if padded else None, cache, last_only=True
                )[:, -1]
            else:
                step_tokens.copy_(tokens[:, None])
                logits = step().clone()  # the graph's output tensor is overwritten by the next replay
                slot += 1
            next_position += 1

        steps = int(out_mask.any(dim=0).nonzero().max()) + 1  # up to the last real token: the same for any check_every
        out_ids, out_logprobs, out_mask = out_ids[:, :steps], out_logprobs[:, :steps], out_mask[:, :steps]
        for row in (eos_at >= 0).nonzero().flatten().tolist():
            reasons[row] = "eos"
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
    mask = torch.cat([rollout.prompt_mask, rollout.completion_attention_mask], dim=1)
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
    model: Any, rollout: Rollout, rows: torch.Tensor, temperature: float = 1.0, entropy_gradient: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced log-probs (with gradients) and entropies of the completion tokens of `rows`, (b, N). The
    entropies have gradients only with entropy_gradient (an entropy bonus): that keeps a softmax of (b, N, V)."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.completion_ids[rows]], dim=1)
    mask = torch.cat([rollout.prompt_mask[rows], rollout.completion_attention_mask[rows]], dim=1)
    P = rollout.prompt_ids.shape[1]
    # The shared-prompt path calls the model's parts with a KV cache: not for FSDP (it gathers weights in forward()
    # only) nor for gradient checkpointing (it recomputes blocks without a cache).
    if isinstance(model, Transformer) and not fsdp_modules(model) and not model.gradient_checkpointing:
        logits = model.lm_head(shared_prompt_hidden_states(model, ids, mask, P))
    else:
        logits = model(ids, positions_from_mask(mask), mask)[:, P - 1 : -1]
    logits = logits.float() / temperature  # (b, N, V): position P - 1 + t predicts completion token t
    # log p(token) = logit - logsumexp: backward keeps the logits only, not a second (b, N, V) tensor of log-probs
    # (with a 49k vocabulary each is 200 KB a token)
    normaliser = torch.logsumexp(logits, dim=-1)  # (b, N)
    logprobs = logits.gather(2, rollout.completion_ids[rows][..., None]).squeeze(2) - normaliser
    with torch.set_grad_enabled(entropy_gradient and torch.is_grad_enabled()):
        entropy = normaliser - (logits.softmax(dim=-1) * logits).sum(-1)  # -sum p log p = lse - sum p x
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
