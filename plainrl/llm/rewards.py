"""Rewards: accuracy, format, weighted sums, and safe calling of whatever reward functions users bring.

Two kinds of function can be a reward:
    per sample    f(prompt, completion, answer) -> float
    batch (TRL)   f(prompts, completions, **columns) -> list[float | None]     columns: answer=[...], and every
                                                                                extra dataset column, as lists
The kind is read from the signature (a **kwargs parameter, or plural `prompts`/`completions`, means batch);
Reward(kind=...) says it explicitly. A None from a batch function means "does not apply" and scores 0.

    rewards = RewardSet([Reward(accuracy_reward(task), weight=1.0), Reward(format_reward(), weight=0.1)])
    scores = rewards.score(prompts, completions, answers, columns)
    scores.total          (B,) weighted sum            scores.parts  {name: (B,) unweighted}
    scores.failures       {name: calls that raised, returned NaN/inf/a non-number, or ran past the time limit}

A failing call scores 0 for its samples and never stops training. A call past `timeout_s` is abandoned: Python
cannot kill a thread, so it keeps running in the background (a daemon thread); after `max_timeouts` abandoned
calls a reward is switched off (scores 0, counted as failures) so hung threads cannot pile up.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from plainrl.kit.config import require
from plainrl.kit.errors import ConfigError
from plainrl.llm.tasks import Task

R1_FORMAT = r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"  # DeepSeek-R1-Zero's template


def accuracy_reward(task: Task) -> Callable[..., list[float]]:
    """1.0 if the task's verifier accepts the completion, else 0.0 (a batch function: it needs the columns)."""

    def accuracy(prompts: list[str], completions: list[str], answer: list[str], **columns: list[Any]) -> list[float]:
        return [
            float(task.is_correct(completion, answer[i], **{k: v[i] for k, v in columns.items()}))
            for i, completion in enumerate(completions)
        ]

    return accuracy


def format_reward(pattern: str = R1_FORMAT) -> Callable[[str, str, str], float]:
    """1.0 if the whole completion matches `pattern` (default: <think>...</think><answer>...</answer>)."""
    compiled = re.compile(pattern, re.DOTALL)

    def format_(prompt: str, completion: str, answer: str) -> float:
        return 1.0 if compiled.fullmatch(completion) else 0.0

    return format_


def is_batch_function(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    names = {p.name for p in parameters}
    return any(p.kind is p.VAR_KEYWORD for p in parameters) or bool({"prompts", "completions"} & names)


@dataclass
class Reward:
    fn: Callable[..., Any]
    weight: float = 1.0
    name: str = ""  # default: the function's name
    kind: str = "auto"  # auto | sample | batch

    def __post_init__(self) -> None:
        self.name = self.name or getattr(self.fn, "__name__", "reward").strip("_")
        if self.kind not in ("auto", "sample", "batch"):
            raise ValueError(f"Reward kind = {self.kind!r} is not auto, sample or batch")
        if self.kind == "auto":
            self.kind = "batch" if is_batch_function(self.fn) else "sample"


@dataclass
class RewardScores:
    total: torch.Tensor  # (B,)
    parts: dict[str, torch.Tensor]  # name -> (B,) before weighting
    failures: dict[str, int]  # name -> failed calls in this batch

    def metrics(self) -> dict[str, float]:
        """For run.log: reward, reward/NAME, reward_failures/NAME."""
        out = {"reward": float(self.total.mean())}
        out.update({f"reward/{name}": float(part.mean()) for name, part in self.parts.items()})
        out.update({f"reward_failures/{name}": float(count) for name, count in self.failures.items()})
        return out


_FAILED = object()


def call_with_timeout(fn: Callable[..., Any], args: tuple, kwargs: dict, timeout_s: float | None) -> Any:
    """fn(*args, **kwargs); raises what fn raises, or TimeoutError past timeout_s (fn is then left running)."""
    if not timeout_s:
        return fn(*args, **kwargs)
    box: dict[str, Any] = {"result": _FAILED}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"took longer than {timeout_s} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def as_score(value: Any) -> float | None:
    """A finite float, 0.0 for None (batch functions' 'does not apply'); None means the value is bad."""
    if value is None:
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class RewardSet:
    rewards: list[Reward]
    timeout_s: float | None = 5.0  # per call (one sample, or one batch for batch functions); None: no limit
    max_timeouts: int = 3  # abandoned calls after which a reward is switched off
    timeouts: dict[str, int] = field(default_factory=dict)
    failures_total: dict[str, int] = field(default_factory=dict)

    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        answers: Sequence[str],
        columns: Sequence[dict[str, Any]] | None = None,
    ) -> RewardScores:
        B = len(completions)
        rows = list(columns) if columns is not None else [{} for _ in range(B)]
        column_lists = {key: [row.get(key) for row in rows] for key in (rows[0] if rows else {})}
        parts: dict[str, torch.Tensor] = {}
        failures: dict[str, int] = {}
        total = torch.zeros(B)
        for reward in self.rewards:
            scores, failed = self._score_one(reward, list(prompts), list(completions), list(answers), column_lists)
            parts[reward.name] = torch.tensor(scores, dtype=torch.float32)
            failures[reward.name] = failed
            self.failures_total[reward.name] = self.failures_total.get(reward.name, 0) + failed
            total += reward.weight * parts[reward.name]
        return RewardScores(total, parts, failures)

    def _score_one(
        self, reward: Reward, prompts: list[str], completions: list[str], answers: list[str], columns: dict[str, list]
    ) -> tuple[list[float], int]:
        B = len(completions)
        if self.timeouts.get(reward.name, 0) >= self.max_timeouts:
            return [0.0] * B, B  # switched off: every sample is a failure
        if reward.kind == "batch":
            values = self._call(reward, (prompts, completions), {**columns, "answer": answers})
            if not isinstance(values, list | tuple) or len(values) != B:
                return [0.0] * B, B
            scores = [as_score(v) for v in values]
        else:
            samples = zip(prompts, completions, answers, strict=True)
            scores = [as_score(self._call(reward, (p, c, a), {})) for p, c, a in samples]
        failed = sum(s is None for s in scores)
        return [0.0 if s is None else s for s in scores], failed

    def _call(self, reward: Reward, args: tuple, kwargs: dict) -> Any:
        """The function's value, or None when it raised or timed out (None then counts as a failure)."""
        try:
            value = call_with_timeout(reward.fn, args, kwargs, self.timeout_s)
        except TimeoutError:
            self.timeouts[reward.name] = self.timeouts.get(reward.name, 0) + 1
            if self.timeouts[reward.name] == self.max_timeouts:
                warnings.warn(f"reward {reward.name!r} timed out {self.max_timeouts} times: switched off", stacklevel=2)
            return _FAILED
        except Exception:  # noqa: BLE001 - a user's reward must never stop training
            return _FAILED
        return value


def check_reward_fields(rewards: Sequence[str], reward_weights: Sequence[float]) -> None:
    """The config check of every trainer that scores samples with named rewards (GRPO, PPO)."""
    require(len(rewards) >= 1, 'rewards must name at least one reward, e.g. ["accuracy"]')
    require(
        not reward_weights or len(reward_weights) == len(rewards),
        f"reward_weights = {list(reward_weights)} must have one weight per reward ({len(rewards)})",
    )


PYTHON_REWARDS: dict[str, Callable[..., Any]] = {}  # functions given to plainrl.train in this process, by config name


def rewards_by_name(
    names: Sequence[str], weights: Sequence[float], task: Task, timeout_s: float | None = 5.0
) -> RewardSet:
    """accuracy | format | module:function (yours), weighted (empty weights: all 1) -> a RewardSet."""
    weights = weights or [1.0] * len(names)
    rewards = []
    for name, weight in zip(names, weights, strict=True):
        if name == "accuracy":
            rewards.append(Reward(accuracy_reward(task), weight, "accuracy"))
        elif name == "format":
            rewards.append(Reward(format_reward(), weight, "format"))
        elif name in PYTHON_REWARDS:
            rewards.append(Reward(PYTHON_REWARDS[name], weight, name.removeprefix("python:")))
        elif name.startswith("python:"):
            raise ConfigError(f"reward {name!r} was a function of another Python process: pass rewards= again")
        elif ":" in name:
            module_name, _, attr = name.partition(":")
            try:
                fn = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as err:
                raise ConfigError(f"reward {name!r} cannot be loaded: {err}") from None
            rewards.append(Reward(fn, weight, attr))
        else:
            raise ConfigError(f"reward {name!r} is not accuracy, format or module:function")
    return RewardSet(rewards, timeout_s=timeout_s)
