"""Multi-turn rollouts: a batch of conversations between the model and environments (environments.py), decoded
with one KV cache that lives across turns.

    prefill the opening turns (the environments' reset) of every conversation
    for turn = 1 .. max_turns:
        the model's turn: sample token by token (as generate.py does) until EOS, a stop string or max_new_tokens;
                          a conversation already over emits nothing (its slots are masked out)
        env.step(turn text) -> reply, reward, done                         for each conversation still going
        the replies' tokens go into the cache in one forward (left-padded per row, padding masked out)
    trajectory = opening prompt, then model tokens and environment tokens interleaved

The trajectory comes back as a Rollout whose completion is everything after the opening prompt: completion_mask
is True on the model's tokens only (what the loss, the KL term and the entropy see), completion_real on every real
token (what attention sees), so a teacher-forced forward over the trajectory gives the log-probs the sampler had
(tests/llm/test_multi_turn.py) and no environment token gets a gradient. Rows advance in lock-step: a row that
ended its turn early leaves holes in the cache, masked out; RoPE positions count real tokens only, so the holes
change nothing.

How environment messages become tokens: a model with a chat template reads them as its template writes them (the
text between the model's last token and the next assistant turn, taken from the template itself); a model trained
here reads each message's content on a line of its own: "\\n" + content ... + "\\n".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from plainrl.kit.distributed import Shard
from plainrl.llm.sampling import Rollout, SamplingParams, cut_at_stop, pad_sequences, positions_from_mask, sample_next
from plainrl.llm.tokenizer import ChatPrompt, Message


@dataclass
class Conversations:
    """A batch of multi-turn trajectories (see the module doc)."""

    rollout: Rollout
    returns: torch.Tensor  # (B,) the sum of each conversation's turn rewards
    turn_rewards: list[list[float]]  # per conversation, one reward per model turn
    turn_ends: list[list[int]]  # per conversation, the completion index of each model turn's last token
    solved: list[bool]  # env.solved at the end
    transcripts: list[str] = field(default_factory=list)  # the conversation after the prompt, as text

    @property
    def turns(self) -> list[int]:
        return [len(r) for r in self.turn_rewards]


def environment_ids(tokenizer: Any, messages: list[Message], after_eos: bool) -> list[int]:
    """The tokens of environment messages that follow a model turn (which ended with EOS if after_eos)."""
    if not messages:
        return []
    if not getattr(tokenizer, "chat", False):
        return tokenizer.encode("".join("\n" + m["content"] for m in messages) + "\n")
    # Take the template's own text: render a dummy exchange, then the same with the messages after it; what the
    # template writes after the assistant's content (e.g. "<|im_end|>\n") comes first, less the EOS already there.
    template = tokenizer.tokenizer.apply_chat_template
    exchange = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ASSISTANT_TEXT"}]
    before = template(exchange, tokenize=False)
    after = template(exchange + messages, tokenize=False, add_generation_prompt=True)
    tail = before[before.rindex("ASSISTANT_TEXT") + len("ASSISTANT_TEXT") :]
    eos_text = tokenizer.tokenizer.decode([tokenizer.eos_id])
    if after_eos and tail.startswith(eos_text):
        tail = tail[len(eos_text) :]
    return tokenizer.encode(tail + after[len(before) :])


@torch.inference_mode()
def rollout_conversations(
    model: Any,
    tokenizer: Any,
    envs: list[Any],
    examples: list[Any],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    max_env_tokens: int = 64,
    shard: Shard | None = None,
) -> Conversations:
    """One conversation per environment, env i reset with examples[i] (see the module doc). params.max_new_tokens
    caps each model turn; max_env_tokens each reply (longer ones are cut)."""
    device = next(model.parameters()).device
    B = len(envs)
    for env in envs:
        env.chat = bool(getattr(tokenizer, "chat", False))
    openings = [env.reset(example) for env, example in zip(envs, examples, strict=True)]
    ids, mask = pad_sequences([tokenizer.prompt_ids(ChatPrompt(m)) for m in openings], tokenizer.pad_id, "left", device)
    P, N = ids.shape[1], params.max_new_tokens
    max_turns = max(env.max_turns for env in envs)
    stop_strings = tuple(
        sorted({s for env in envs for s in getattr(env, "stop_strings", ())} | set(params.stop_strings))
    )
    eos = torch.tensor([] if params.ignore_eos else list(tokenizer.eos_ids), dtype=torch.long, device=device)

    max_len = P + max_turns * N + (max_turns - 1) * max_env_tokens
    cache = model.new_cache(B, max_len)
    key_mask = torch.zeros((B, max_len), dtype=torch.bool, device=device)
    key_mask[:, :P] = mask
    positions = positions_from_mask(mask)
    logits = model(ids, positions, key_mask[:, :P], cache, last_only=True)[:, -1]  # (B, V)
    filled, next_position = P, positions[:, -1:] + 1  # slots used; each row's next RoPE position (B, 1)

    tokens_so_far: list[list[int]] = [[] for _ in range(B)]  # the completion: model and environment tokens
    trained: list[list[bool]] = [[] for _ in range(B)]
    logprobs_so_far: list[list[float]] = [[] for _ in range(B)]
    turn_rewards: list[list[float]] = [[] for _ in range(B)]
    turn_ends: list[list[int]] = [[] for _ in range(B)]
    going = [True] * B
    for turn in range(max_turns):
        # The model's turn, for every conversation still going.
        done = torch.tensor([not g for g in going], device=device)
        steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        ended_with_eos = torch.zeros(B, dtype=torch.bool, device=device)
        for _ in range(N):
            tokens, logprobs = sample_next(logits, params, generator, shard)
            emitted = ~done
            tokens = tokens.masked_fill(done, tokenizer.pad_id)
            steps.append((tokens, logprobs, emitted))
            hit_eos = torch.isin(tokens, eos) & emitted
            ended_with_eos |= hit_eos
            done = done | hit_eos
            if stop_strings:
                window = torch.stack([s[0] for s in steps[-16:]], dim=1)
                for row in (emitted & ~done).nonzero().flatten().tolist():
                    if any(s in tokenizer.decode(window[row].tolist()) for s in stop_strings):
                        done[row] = True
            key_mask[:, filled] = emitted
            step_logits = model(tokens[:, None], next_position, key_mask[:, : filled + 1], cache, last_only=True)
            logits = torch.where(emitted[:, None], step_logits[:, -1], logits)
            next_position = next_position + emitted[:, None].long()
            filled += 1
            if bool(done.all()):
                break
        turn_tokens = torch.stack([s[0] for s in steps], dim=1).tolist()
        turn_logprobs = torch.stack([s[1] for s in steps], dim=1).tolist()
        turn_emitted = torch.stack([s[2] for s in steps], dim=1).tolist()
        after_eos = ended_with_eos.tolist()

        # The environments' replies, and their tokens into the cache.
        replies: list[list[int]] = [[] for _ in range(B)]
        for row in range(B):
            if not going[row]:
                continue
            own = [tok for tok, real in zip(turn_tokens[row], turn_emitted[row], strict=True) if real]
            own_logprobs = [lp for lp, real in zip(turn_logprobs[row], turn_emitted[row], strict=True) if real]
            tokens_so_far[row] += own
            trained[row] += [True] * len(own)
            logprobs_so_far[row] += own_logprobs
            turn_ends[row].append(len(tokens_so_far[row]) - 1)
            messages, reward, finished = envs[row].step(cut_at_stop(tokenizer.decode(own), stop_strings))
            turn_rewards[row].append(float(reward))
            if finished or turn == max_turns - 1:
                going[row] = False
                continue
            replies[row] = environment_ids(tokenizer, list(messages), after_eos[row])[:max_env_tokens]
            tokens_so_far[row] += replies[row]
            trained[row] += [False] * len(replies[row])
            logprobs_so_far[row] += [0.0] * len(replies[row])
        if not any(going):
            break
        if any(replies):
            reply_ids, reply_mask = pad_sequences(replies, tokenizer.pad_id, "left", device)
            L = reply_ids.shape[1]
            key_mask[:, filled : filled + L] = reply_mask
            reply_positions = next_position + reply_mask.long().cumsum(dim=1) - 1
            reply_logits = model(reply_ids, reply_positions, key_mask[:, : filled + L], cache, last_only=True)[:, -1]
            logits = torch.where(reply_mask.any(dim=1)[:, None], reply_logits, logits)
            next_position = next_position + reply_mask.sum(dim=1, keepdim=True)
            filled += L

    completion_ids, real = pad_sequences(tokens_so_far, tokenizer.pad_id, "right", device)
    width = completion_ids.shape[1]
    completion_mask = torch.tensor([t + [False] * (width - len(t)) for t in trained], device=device)
    completion_logprobs = torch.tensor([lp + [0.0] * (width - len(lp)) for lp in logprobs_so_far], device=device)
    transcripts = [tokenizer.decode(t) for t in tokens_so_far]
    completion_mask, completion_logprobs = completion_mask.reshape(B, width), completion_logprobs.reshape(B, width)
    rollout = Rollout(ids, mask, completion_ids, completion_mask, completion_logprobs, transcripts, ["turns"] * B,
                      completion_real=real)  # fmt: skip
    returns = torch.tensor([sum(r) for r in turn_rewards])
    return Conversations(rollout, returns, turn_rewards, turn_ends, [bool(e.solved) for e in envs], transcripts)


def conversation_metrics(conversations: Conversations, envs: list[Any]) -> dict[str, float]:
    """For run.log: mean model turns, the share solved, and tool calls by outcome (environments with a ToolBox)."""
    metrics = {
        "turns": sum(conversations.turns) / max(len(envs), 1),
        "solved": sum(conversations.solved) / max(len(envs), 1),
    }
    boxes = [env.tools for env in envs if hasattr(env, "tools")]
    if boxes:
        metrics["tool_calls"] = sum(box.stats.calls for box in boxes) / len(envs)
        outcomes = {name for box in boxes for name in box.stats.outcomes}
        for name in sorted(outcomes):
            metrics[f"tool_calls/{name}"] = sum(box.stats.outcomes.get(name, 0) for box in boxes) / len(envs)
    return metrics
