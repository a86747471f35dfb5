"""Speculative sampling (Chen et al. 2023, arXiv 2302.01318): a cheap draft model proposes K tokens, the target
scores all of them in one forward pass, and a rejection rule keeps the output distributed exactly as the target's.

    p, q: the target's and the draft's next-token distributions, both after the same temperature, top-k, top-p
    x: the sequence so far (prompt, then accepted tokens)
    repeat until max_new_tokens, EOS or a stop string:
        for i = 1 .. K:                                          K draft steps, cheap
            q_i = q(. | x, d_1 .. d_{i-1});  d_i ~ q_i
        p_i = p(. | x, d_1 .. d_{i-1})  for i = 1 .. K+1         ONE target forward over the K+1 positions
        for i = 1 .. K:
            r ~ Uniform(0, 1)
            if r < min(1, p_i(d_i) / q_i(d_i)):  accept d_i      (append it to x)
            else:  t ~ norm(max(0, p_i - q_i)); append t; stop    the residual: the mass q under-proposes
        if all K were accepted:  t ~ p_{K+1}; append t            the bonus token
        roll both KV caches back to x: the slots of rejected drafts are dropped

Each round emits between 1 and K+1 tokens for one target forward. Accepting d with probability min(1, p/q) and
otherwise drawing from the residual gives P(token = v) = min(p(v), q(v)) + max(0, p(v) - q(v)) = p(v): the
target's distribution, whatever the draft. Greedy decoding is the limit where p and q are one-hot at their argmax:
d_i is accepted iff it is the target's argmax, and the residual is the target's argmax, so the output is token for
token the target's greedy output.

Batched: every row runs the same K draft steps and one target forward; rows accept different numbers of tokens.
The caches advance in lock-step, so a row's rejected slots are masked out of attention (the key mask) and each
cache's length is rolled back to the last slot any row still uses (batch 1: exactly the accepted prefix). RoPE
positions count each row's real tokens, so holes change nothing. The draft writes d_1 .. d_{K-1} only; when a row
accepts all K, d_K goes into the draft together with the next round's first token.

K is fixed, or (adaptive=True) re-chosen each round from the running acceptance rate a and the measured cost c of
a draft step relative to a target forward: K = argmax_k E[tokens per round] / (1 + c k), with
E[tokens per round] = (1 - a^(k+1)) / (1 - a).

    rollout, stats = speculative_generate(target, draft, tokenizer, prompt_ids, params, k=4, generator=g)
    rollout: sampling.Rollout, log-probs from the target;  stats.acceptance_rate: accepted / proposed drafts
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from plainrl.kit.errors import PlainRLError
from plainrl.llm.graphs import StepGraph, decode_mode
from plainrl.llm.sampling import Rollout, SamplingParams, cut_at_stop, filter_logits, pad_sequences


@dataclass
class SpeculativeStats:
    rounds: int = 0  # target forwards after the prefill
    row_rounds: int = 0  # sum over rounds of the rows still generating
    proposed: int = 0  # draft tokens proposed to rows still generating
    accepted: int = 0  # of those, accepted
    emitted: int = 0  # tokens kept in the completions
    k_sum: int = 0  # sum of K over rounds (adaptive K: k_sum / rounds is the mean)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.proposed, 1)

    @property
    def tokens_per_round(self) -> float:
        """Tokens a row gets per target forward (1 without a draft)."""
        return self.emitted / max(self.row_rounds, 1)


def distribution(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The sampling distribution (..., V) of logits: tempered and cut to top-k / top-p; one-hot argmax if greedy.
    p and q both go through this, so the target distribution that speculative sampling preserves is this one."""
    logits = logits.float()
    if params.greedy or params.temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    return filter_logits(logits / params.temperature, params).softmax(dim=-1)


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where a rejected draft's replacement is drawn from. p where p <= q everywhere, which
    happens only through rounding, since a rejection needs p(d) < q(d)."""
    excess = (p - q).clamp(min=0)
    total = excess.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, excess / total.clamp(min=1e-30), p)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw from each distribution of probs (..., V): (...)."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def truncate(cache: Any, length: int) -> None:
    """Roll a KV cache back to its first `length` slots (model.KVCache, or hf.HFCache's DynamicCache)."""
    if hasattr(cache, "hf_cache"):
        cache.hf_cache.crop(length)
    cache.length = length


class Cached:
    """A model with its KV cache and which of the cache's slots hold real tokens, row by row. decode (graphs.py):
    "dynamic" attends over the filled slots; "static" and "graph" run the fixed-shape forward, one StepGraph per
    number of tokens T (the draft's steps: T = 1 or 2; the verify pass: T = K + 1)."""

    def __init__(self, model: Any, batch_size: int, max_len: int, device: torch.device, decode: str) -> None:
        self.model = model
        self.cache = model.new_cache(batch_size, max_len)
        self.real = torch.zeros((batch_size, max_len), dtype=torch.bool, device=device)
        self.decode = decode_mode(decode, model, device)
        self.steps: dict[tuple[int, bool], tuple[StepGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, real: torch.Tensor, last_only: bool):
        """Logits of `tokens` (B, T) at `positions`; `real` (B, T) False for padding and placeholders."""
        start, end = self.cache.length, self.cache.length + tokens.shape[1]
        self.real[:, start:end] = real
        if self.decode == "dynamic":
            key_mask = self.real[:, :end]
            return self.model(tokens, positions, None if bool(key_mask.all()) else key_mask, self.cache, last_only)
        shape = (tokens.shape[1], last_only)
        if shape not in self.steps:
            step_tokens, step_positions = torch.zeros_like(tokens), torch.zeros_like(positions)
            slots = torch.zeros(tokens.shape[1], dtype=torch.long, device=tokens.device)
            step = StepGraph(
                lambda: self.model(step_tokens, step_positions, self.real, self.cache, last_only, slots=slots),
                capture=self.decode == "graph",
            )
            self.steps[shape] = (step, step_tokens, step_positions, slots)
        step, step_tokens, step_positions, slots = self.steps[shape]
        step_tokens.copy_(tokens)
        step_positions.copy_(positions)
        slots.copy_(torch.arange(start, end, device=tokens.device))
        self.cache.length = end  # the fixed-shape forward leaves the length to its caller
        return step().clone()  # a graph's output tensor is overwritten by its next replay

    def keep(self, start: int, keep: torch.Tensor) -> None:
        """Of the slots from `start` on, keep those where `keep` (B, T) is True; drop the trailing unused slots."""
        self.real[:, start : start + keep.shape[1]] &= keep
        used = self.real[:, : self.cache.length].any(dim=0).nonzero()
        truncate(self.cache, int(used[-1]) + 1 if len(used) else 0)


def choose_k(acceptance: float, cost: float, k_max: int) -> int:
    """The K in 1..k_max with the most expected tokens per unit of time: (1 - a^(K+1)) / (1 - a) / (1 + c K)."""
    a = min(max(acceptance, 0.01), 0.99)
    return max(range(1, k_max + 1), key=lambda k: (1 - a ** (k + 1)) / (1 - a) / (1 + cost * k))


@torch.inference_mode()
def speculative_generate(
    target: Any,
    draft: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    k: int = 4,
    adaptive: bool = False,
    generator: torch.Generator | None = None,
    decode: str = "auto",
) -> tuple[Rollout, SpeculativeStats]:
    """Completions distributed as generate(target, ...)'s, with the draft proposing k tokens per target forward.
    decode: as generate()'s, for each model (auto: CUDA graphs for built-in models on a GPU)."""
    if k < 1:
        raise PlainRLError(f"k = {k} draft tokens must be >= 1")
    if draft.vocab_size != target.vocab_size:
        raise PlainRLError(f"the draft's vocabulary ({draft.vocab_size}) is not the target's ({target.vocab_size})")
    device = next(target.parameters()).device
    ids, mask = pad_sequences(prompt_ids, tokenizer.pad_id, "left", device)
    B, P = ids.shape
    N = params.max_new_tokens
    eos_ids = set() if params.ignore_eos else set(tokenizer.eos_ids)
    stop_window = max((len(s) for s in params.stop_strings), default=0) + 8
    temperature = 1.0 if params.greedy or params.temperature == 0 else params.temperature

    # Each round writes at most k+1 slots and gives every unfinished row at least one token; with one row the
    # caches hold the sequence exactly, with more a row's rejected slots may stay behind as holes.
    max_len = P + (N + k + 2 if B == 1 else N * (k + 1) + 2)
    tgt, drf = Cached(target, B, max_len, device, decode), Cached(draft, B, max_len, device, decode)
    length = mask.sum(dim=1)  # (B,) real tokens so far: the last one, `pending`, is in neither cache yet
    if P > 1:  # prefill with all but the last prompt column (left padding: the last column is always real)
        positions = (mask[:, :-1].long().cumsum(dim=1) - 1).clamp(min=0)
        tgt.forward(ids[:, :-1], positions, mask[:, :-1], last_only=True)
        drf.forward(ids[:, :-1], positions, mask[:, :-1], last_only=True)
    pending = ids[:, -1:]  # (B, 1) the target's next input
    draft_pending, draft_real = ids[:, -1:], torch.ones((B, 1), dtype=torch.bool, device=device)

    completions: list[list[int]] = [[] for _ in range(B)]
    completion_logprobs: list[list[float]] = [[] for _ in range(B)]
    done = [False] * B
    reasons = ["length"] * B
    stats = SpeculativeStats()
    draft_seconds, target_seconds = 0.0, 0.0
    k_now = k
    while not all(done):
        active = [row for row in range(B) if not done[row]]
        k_round = max(1, min(k_now, max(N - len(completions[row]) for row in active) - 1))

        # 1. The draft proposes k_round tokens, one step each.
        started = time.perf_counter()
        arange = torch.arange(k_round + 1, device=device)
        inputs, real = draft_pending, draft_real
        positions = length[:, None] - inputs.shape[1] + arange[: inputs.shape[1]]
        draft_start = drf.cache.length
        drafts, q = [], []
        for i in range(k_round):
            logits = drf.forward(inputs, positions, real, last_only=True)[:, -1]
            q.append(distribution(logits, params))
            drafts.append(sample(q[-1], generator))
            inputs, real, positions = drafts[-1][:, None], real[:, -1:], length[:, None] + i
        draft_tokens, q_all = torch.stack(drafts, dim=1), torch.stack(q, dim=1)  # (B, K), (B, K, V)
        draft_seconds += (time.perf_counter() - started) / k_round

        # 2. The target scores the pending token and the K drafts in one forward: p_1 .. p_{K+1}.
        started = time.perf_counter()
        target_start = tgt.cache.length
        verify = torch.cat([pending, draft_tokens], dim=1)  # (B, K+1)
        logits = tgt.forward(verify, length[:, None] - 1 + arange, torch.ones_like(verify, dtype=torch.bool), False)
        p_all = distribution(logits, params)  # (B, K+1, V)
        target_seconds += time.perf_counter() - started

        # 3. Accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), up to the first rejection.
        p_draft = p_all[:, :k_round].gather(2, draft_tokens[..., None]).squeeze(2)
        q_draft = q_all.gather(2, draft_tokens[..., None]).squeeze(2)
        r = torch.rand(p_draft.shape, generator=generator, device=device)
        accepted = (r < p_draft / q_draft).long().cumprod(dim=1).sum(dim=1)  # (B,) n = leading accepts

        # 4. The next token: from the residual at the first rejection, or the bonus token from p_{K+1}.
        rows = torch.arange(B, device=device)
        p_next = p_all[rows, accepted]
        q_next = torch.cat([q_all, torch.zeros_like(q_all[:, :1])], dim=1)[rows, accepted]
        all_accepted = accepted == k_round
        next_token = sample(torch.where(all_accepted[:, None], p_next, residual(p_next, q_next)), generator)

        # 5. Emitted tokens d_1 .. d_n, t with the target's log-probs; roll the caches back to them.
        emitted = torch.cat([draft_tokens, draft_tokens[:, :1]], dim=1).scatter(
            1, accepted[:, None], next_token[:, None]
        )
        logprobs = F.log_softmax(logits.float() / temperature, dim=-1).gather(2, emitted[..., None]).squeeze(2)
        kept = arange[None, :] <= accepted[:, None]  # (B, K+1): pending, d_1 .. d_n
        tgt.keep(target_start, kept)
        drf.keep(draft_start, torch.cat([draft_real, kept[:, 1:k_round]], dim=1))
        length = length + accepted + 1
        pending = next_token[:, None]
        if bool(all_accepted.any()):  # d_K never went through the draft: it goes in before t where accepted
            draft_pending = torch.stack([draft_tokens[:, -1], next_token], dim=1)
            draft_real = torch.stack([all_accepted, torch.ones_like(all_accepted)], dim=1)
        else:
            draft_pending, draft_real = pending, torch.ones((B, 1), dtype=torch.bool, device=device)

        stats.rounds += 1
        stats.row_rounds += len(active)
        stats.k_sum += k_round
        stats.proposed += k_round * len(active)
        stats.accepted += int(accepted[active].sum())
        tokens, n_emitted, lp = emitted.tolist(), (accepted + 1).tolist(), logprobs.tolist()
        for row in active:
            for token, logprob in zip(tokens[row][: n_emitted[row]], lp[row], strict=False):
                completions[row].append(token)
                completion_logprobs[row].append(logprob)
                stats.emitted += 1
                if token in eos_ids:
                    done[row], reasons[row] = True, "eos"
                elif params.stop_strings:
                    tail = tokenizer.decode(completions[row][-stop_window:])
                    if any(stop in tail for stop in params.stop_strings):
                        done[row], reasons[row] = True, "stop"
                if len(completions[row]) == N:
                    done[row] = True
                if done[row]:
                    break
        if adaptive:
            k_now = choose_k(stats.acceptance_rate, draft_seconds / target_seconds, k)

    out_ids, out_mask = pad_sequences(completions, tokenizer.pad_id, "right", device)
    width = out_ids.shape[1]
    out_logprobs = torch.tensor([v + [0.0] * (width - len(v)) for v in completion_logprobs], device=device)
    texts = [cut_at_stop(tokenizer.decode(c), params.stop_strings) for c in completions]
    return Rollout(ids, mask, out_ids, out_mask, out_logprobs, texts, reasons), stats
