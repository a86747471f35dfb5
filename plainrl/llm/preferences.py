"""Preference data for reward models and DPO: (prompt, chosen, rejected) triples.

    pairs = load_pairs("prefs.jsonl")                       your own {"prompt", "chosen", "rejected"} lines
    pairs = verifier_pairs(model, tokenizer, task, examples, samples_per_prompt=4, params=...)
        sample completions for each prompt; the verifier splits them into correct and incorrect ones;
        each (correct, incorrect) couple becomes a pair, up to min(#correct, #incorrect) per prompt
    batch = pair_batch(tokenize_pairs(pairs, tokenizer), pad_id, device)
        rows 0..B-1 are the chosen sequences, rows B..2B-1 the rejected ones: one forward scores both

A pair's prompt is the user text (the chat template is applied by the tokenizer, as everywhere in plainrl.llm).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from plainrl.kit import distributed
from plainrl.kit.config import require, require_ranges
from plainrl.kit.errors import ConfigError
from plainrl.llm.config import PolicyConfig
from plainrl.llm.generate import SamplingParams, generate, pad_sequences
from plainrl.llm.policies import model_prompt
from plainrl.llm.tasks import SPLIT_SEED, Example, Task, chat_messages, read_jsonl
from plainrl.llm.tokenizer import ChatPrompt


@dataclass
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


@dataclass
class PreferenceConfig(PolicyConfig):
    """Where a reward model's or DPO run's pairs come from (shared fields)."""

    pairs: str = ""  # a {"prompt", "chosen", "rejected"} JSONL file; empty: pairs from the task's verifier
    test_fraction: float = 0.1  # held-out share of a JSONL file's pairs
    pair_prompts: int = 2000  # training prompts sampled for verifier pairs
    pair_test_prompts: int = 500  # held-out prompts sampled for verifier pairs (from the task's test split)
    samples_per_prompt: int = 4
    pair_temperature: float = 1.0
    stop_strings: tuple[str, ...] = ("</answer>",)

    def validate(self) -> None:
        super().validate()
        require(0 < self.test_fraction < 1, f"test_fraction = {self.test_fraction} must be in (0, 1)")
        require_ranges(self, at_least_one=("pair_prompts", "pair_test_prompts"), positive=("pair_temperature",))
        require(self.samples_per_prompt >= 2, f"samples_per_prompt = {self.samples_per_prompt} must be >= 2")
        require(not self.pairs or Path(self.pairs).is_file(), f"pairs = {self.pairs!r}: no such file")


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """{"prompt", "chosen", "rejected"} per line; a clear error names the first bad line."""
    records = read_jsonl(path, ("prompt", "chosen", "rejected"), "preference")
    pairs = [PreferencePair(pair_prompt(r["prompt"], f"{path}:{n}"), str(r["chosen"]), str(r["rejected"]))
             for n, r in records]  # fmt: skip
    if not pairs:
        raise ConfigError(f"preference file {str(path)!r} holds no pairs")
    return pairs


def pair_prompt(value: Any, where: str) -> str:
    """A pair's prompt: text, or chat turns [{"role", "content"}, ...] (a system turn kept for the chat template)."""
    return ChatPrompt(chat_messages(value, where, "prompt")) if isinstance(value, list) else str(value)


def save_pairs(pairs: list[PreferencePair], path: Path) -> None:
    """One JSON line per pair; a prompt with chat turns is written as its list of turns (read back as such)."""
    records = [{**asdict(p), "prompt": list(p.prompt.messages) if isinstance(p.prompt, ChatPrompt) else p.prompt}
               for p in pairs]  # fmt: skip
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def split_pairs(
    pairs: list[PreferencePair], test_fraction: float, seed: int = SPLIT_SEED
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """A fixed seeded (train, test) split of a user's pairs."""
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, round(test_fraction * len(pairs))) if len(pairs) > 1 else 0
    return [pairs[i] for i in order[n_test:]], [pairs[i] for i in order[:n_test]]


def verifier_pairs(
    model: Any,
    tokenizer: Any,
    task: Task,
    examples: list[Example],
    samples_per_prompt: int,
    params: SamplingParams,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> list[PreferencePair]:
    """Pairs (a correct sampled completion, an incorrect one) for each prompt whose samples are mixed."""
    was_training = model.training
    model.eval()
    pairs: list[PreferencePair] = []
    per_batch = max(1, batch_size // samples_per_prompt)
    for start in range(0, len(examples), per_batch):
        chunk = examples[start : start + per_batch]
        prompts = [model_prompt(task, example, tokenizer) for example in chunk]
        prompt_ids = [tokenizer.prompt_ids(p) for p in prompts for _ in range(samples_per_prompt)]
        texts = generate(model, tokenizer, prompt_ids, params, generator).texts
        for i, (example, prompt) in enumerate(zip(chunk, prompts, strict=True)):
            samples = texts[i * samples_per_prompt : (i + 1) * samples_per_prompt]
            verdicts = [task.is_correct(text, example.answer, **example.columns) for text in samples]
            correct = [text for text, ok in zip(samples, verdicts, strict=True) if ok]
            incorrect = [text for text, ok in zip(samples, verdicts, strict=True) if not ok]
            pairs += [PreferencePair(prompt, c, r) for c, r in zip(correct, incorrect, strict=False)]
    model.train(was_training)
    return pairs


def tokenize_pairs(pairs: list[PreferencePair], tokenizer: Any) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt ids, chosen ids + EOS, rejected ids + EOS) per pair."""
    eos = tokenizer.eos_ids[0]
    return [
        (tokenizer.prompt_ids(p.prompt), tokenizer.encode(p.chosen) + [eos], tokenizer.encode(p.rejected) + [eos])
        for p in pairs
    ]


def pair_batch(
    tokenized: list[tuple[list[int], list[int], list[int]]], pad_id: int, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows, right-padded: ids (2B, L), completion_mask (2B, L - 1) True where the next
    token is a completion token, last (2B,) the index of each sequence's last token (its EOS)."""
    sequences = [p + c for p, c, _ in tokenized] + [p + r for p, _, r in tokenized]
    prompt_lengths = [len(p) for p, _, _ in tokenized] * 2
    ids, mask = pad_sequences(sequences, pad_id, "right", device)
    completion_mask = torch.zeros_like(mask)
    for row, (sequence, prompt_length) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        completion_mask[row, prompt_length : len(sequence)] = True
    return {"ids": ids, "completion_mask": completion_mask[:, 1:], "last": mask.sum(1) - 1}


def sequence_logprob_sums(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the completion tokens' log-probs, and their count, per row: (2B,), (2B,). Right padding: real
    tokens never attend to padding, so the plain causal mask suffices."""
    logits = model(batch["ids"])[:, :-1].float()  # (2B, L-1, V): position t predicts token t + 1
    targets = batch["ids"][:, 1:]
    token_logprobs = logits.gather(2, targets[..., None]).squeeze(2) - torch.logsumexp(logits, dim=-1)
    mask = batch["completion_mask"].float()
    return (token_logprobs * mask).sum(1), mask.sum(1)


def preference_data(
    config: PreferenceConfig, task: Task | None, model: Any, tokenizer: Any, run_dir: Path, device: torch.device
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, test) pairs for a run: the user's JSONL (config.pairs) split, or pairs built by the task's verifier
    from `model`'s samples on train and test prompts. Saved in the run folder, and read back on resume."""
    train_file, test_file = run_dir / "pairs_train.jsonl", run_dir / "pairs_test.jsonl"
    world = distributed.world()
    saved = None
    if world.is_main and train_file.is_file() and test_file.is_file():
        saved = load_pairs(train_file), load_pairs(test_file)
    saved = world.broadcast_object(saved)  # under torchrun: rank 0 alone reads its run folder
    if saved is not None:
        return saved
    if config.pairs:
        train, test = split_pairs(load_pairs(config.pairs), config.test_fraction)
    else:
        assert task is not None
        params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.pair_temperature,
                                stop_strings=config.stop_strings)  # fmt: skip
        generator = torch.Generator(device=device).manual_seed(config.seed)
        train = verifier_pairs(model, tokenizer, task, task.train[: config.pair_prompts], config.samples_per_prompt,
                               params, generator=generator)  # fmt: skip
        test = verifier_pairs(model, tokenizer, task, task.test[: config.pair_test_prompts], config.samples_per_prompt,
                              params,
                              generator=generator)  # fmt: skip
    if len(train) < 2:
        raise ConfigError(
            f"only {len(train)} training preference pairs: the sampling policy's completions are all correct or all "
            "wrong; raise pair_prompts, samples_per_prompt or pair_temperature, or give pairs = FILE.jsonl"
        )
    if world.is_main:  # every rank made the same pairs (same seed); rank 0 writes the folder
        save_pairs(train, train_file)
        save_pairs(test, test_file)
    return train, test
