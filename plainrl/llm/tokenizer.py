"""A character tokenizer for the synthetic tasks: one token per printable ASCII character, plus specials.

Both tokenizer kinds (this one and hf.HFTokenizer) offer the same small interface:

    encode(text) -> list[int]          no special tokens added
    decode(ids) -> str                 special tokens dropped
    render_prompt(user_text) -> str    the text the model sees before its completion (a chat template, or
                                       the text itself for models trained from scratch)
    bos_id, eos_id, pad_id, vocab_size, eos_ids (every id that ends a completion)

A prompt is a str: the user's text, or a ChatPrompt (several turns: a system turn, earlier user and assistant
turns). A ChatPrompt *is* its plain-text rendering, the turns' contents one per line, which is what this tokenizer
(and any model without a chat template) reads; a chat tokenizer renders its `messages` with the template instead.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": text}, as in TRL's chat rows


class ChatPrompt(str):
    """A prompt of chat turns; as a str, their contents one per line (system text, then user text, ...)."""

    messages: tuple[Message, ...]

    def __new__(cls, messages: Sequence[Message]) -> ChatPrompt:
        prompt = super().__new__(cls, "\n".join(m["content"] for m in messages))
        prompt.messages = tuple(dict(m) for m in messages)
        return prompt

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles (torchrun's broadcasts) keep the turns
        return ChatPrompt, ([dict(m) for m in self.messages],)


SPECIALS = ("<pad>", "<bos>", "<eos>")
CHARACTERS = string.printable[:95] + "\n"  # digits, letters, punctuation, space; then newline


class CharTokenizer:
    def __init__(self) -> None:
        self.vocab = list(SPECIALS) + list(CHARACTERS)
        self.ids = {token: i for i, token in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.eos_ids = (self.eos_id,)
        self.chat = False  # no chat template: prompts are used as they are
        self.vocab_size = len(self.vocab)

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.ids or c in SPECIALS})
        if unknown:
            raise ValueError(f"characters outside the tokenizer's alphabet: {unknown!r}")
        return [self.ids[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids if i >= len(SPECIALS))

    def render_prompt(self, user_text: str) -> str:
        return user_text

    def prompt_ids(self, user_text: str) -> list[int]:
        """The token ids a completion follows: <bos> and the prompt."""
        return [self.bos_id, *self.encode(self.render_prompt(user_text))]
