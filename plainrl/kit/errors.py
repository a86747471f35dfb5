"""Errors that the CLI reports as one clear line (never a traceback)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlainRLError(Exception):
    """A user-facing error: bad input, a missing run, a non-finite loss."""


class ConfigError(PlainRLError):
    """A bad configuration value, key or file."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for close matches of `word`, or '' when nothing is close."""
    choices = list(choices)
    matches = difflib.get_close_matches(word, choices, n=n, cutoff=0.6)
    if not matches:  # fall back to case-insensitive substring matches: "cartpole" -> "CartPole-v1"
        matches = [c for c in choices if word.lower() in c.lower()][:n]
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
