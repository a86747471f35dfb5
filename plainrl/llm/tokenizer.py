"""A character tokenizer for the synthetic tasks: one token per printable ASCII character, plus specials.

Both tokenizer kinds (this one and hf.HFTokenizer) offer the same small interface:

    encode(text) -> list[int]          no special tokens added
    decode(ids) -> str                 special tokens dropped
    render_prompt(user_text) -> str    the text the model sees before its completion (a chat template, or
                                       the text itself for models trained from scratch)
    bos_id, eos_id, pad_id, vocab_size, eos_ids (every id that ends a completion)
"""

from __future__ import annotations

import string

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
