"""Environments a language model acts in over several turns, read like Gymnasium's Env: one conversation each.

    env = make_environment("calculator")                 or "guess", "countdown", "module:Class", a class, a factory
    task = env.make_task()                               its problems, with fixed train/test splits (tasks.py)
    messages = env.reset(example)                        the opening turns (the question, the rules, the tools)
    messages, reward, done = env.step(assistant_text)    the model's turn in; the reply, this turn's reward
    env.solved                                           True once the problem is solved (held-out success rate)

A message is {"role": "user" | "system" | ..., "content": text}. `max_turns` caps the model's turns;
`stop_strings` end a model turn besides EOS (a tool call ends at </tool_call>). `chat` is set by the rollout
engine before reset: True for a model with a chat template (it can read a system turn with the rules), False for
a model trained here, which reads the bare turns as text (multi_turn.py). Rewards may come on any turn; a
trajectory's return is their sum.

Built in:
    calculator   4-digit multiplication with a `calculate` tool: calling it beats mental arithmetic
    guess        guess a number from 1 to 100; each wrong guess is answered "higher" or "lower"; fewer turns
                 score more
    countdown    Countdown (tasks.py) with a `check` tool that evaluates an expression and says which numbers it used
"""

from __future__ import annotations

import functools
import importlib
import random
import re
from typing import Any

from plainrl.kit.errors import ConfigError, did_you_mean
from plainrl.llm.tasks import (
    SPLIT_SEED,
    ArithmeticTask,
    CountdownTask,
    Example,
    Task,
    evaluate_expression,
    parse_options,
)
from plainrl.llm.tokenizer import Message
from plainrl.llm.tools import CALL_END, ToolBox, parse_tool_call, tool_response


class Environment:
    """The interface (see the module doc); subclass it, or bring any class with these methods."""

    max_turns: int = 4
    stop_strings: tuple[str, ...] = ()
    chat: bool = False  # set by the rollout engine: does the model read chat turns (a chat template)?
    solved: bool = False

    def make_task(self) -> Task:
        raise NotImplementedError

    def reset(self, example: Example) -> list[Message]:
        raise NotImplementedError

    def step(self, assistant_text: str) -> tuple[list[Message], float, bool]:
        raise NotImplementedError


class ToolEnvironment(Environment):
    """A question answered with the help of tools: a turn with a <tool_call> gets the tool's result back; a turn
    without one is the final answer, scored by the task's verifier (1 or 0). `tool_stats` counts the calls."""

    stop_strings = (CALL_END,)
    max_turns = 3

    def __init__(self, task: Task, tools: ToolBox) -> None:
        self.task, self.tools = task, tools
        self.example: Example | None = None

    def make_task(self) -> Task:
        return self.task

    def reset(self, example: Example) -> list[Message]:
        self.example, self.solved = example, False
        if not self.chat:
            return [{"role": "user", "content": example.prompt}]
        return [{"role": "system", "content": self.tools.describe()},
                {"role": "user", "content": self.task.chat_prompt(example)}]  # fmt: skip

    def step(self, assistant_text: str) -> tuple[list[Message], float, bool]:
        assert self.example is not None, "reset() first"
        call = parse_tool_call(assistant_text)
        if call is not None:
            return [{"role": "user", "content": tool_response(self.tools.run(call))}], 0.0, False
        self.solved = self.task.is_correct(assistant_text, self.example.answer, **self.example.columns)
        return [], float(self.solved), True


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses."""
    value = evaluate_expression(expression)
    if value is None:
        raise ValueError(f"not an arithmetic expression: {expression!r}")
    return str(int(value)) if value == int(value) else f"{value:.6g}"


class CalculatorEnvironment(ToolEnvironment):
    """a * b with `digits`-digit operands and a calculator tool. A model trained here answers '1234*5678=' with
    '<tool_call>calculate 1234*5678</tool_call>', reads '\n<tool_response>7006652</tool_response>\n', then writes
    '7006652'. The task's SFT targets show that transcript for a `tool_fraction` of the training problems and the
    bare answer for the rest, so SFT teaches the format without making it the habit: RL then finds that the tool
    pays (docs/multi_turn.md)."""

    def __init__(self, digits: int = 4, ops: str = "*", n_test: int = 200, tool_fraction: float = 0.2) -> None:
        super().__init__(calculator_task(digits, ops, n_test, tool_fraction), ToolBox([calculate]))


@functools.cache
def calculator_task(digits: int, ops: str, n_test: int, tool_fraction: float) -> Task:
    """Built once per setting (a rollout makes an environment per conversation, and they share it)."""
    if not 0 <= tool_fraction <= 1:
        raise ConfigError(f"calculator tool_fraction = {tool_fraction} must be in [0, 1]")
    task = ArithmeticTask(digits=digits, ops=ops, n_test=n_test)
    rng = random.Random(SPLIT_SEED)
    for example in task.train:
        if rng.random() < tool_fraction:
            expression = example.prompt.rstrip("=")
            example.target = (f"<tool_call>calculate {expression}</tool_call>\n"
                              f"<tool_response>{example.answer}</tool_response>\n{example.answer}")  # fmt: skip
    return task


class CountdownEnvironment(ToolEnvironment):
    """Countdown (tasks.CountdownTask) with a `check` tool: the value of an expression and the numbers it uses."""

    max_turns = 4

    def __init__(self, numbers: int = 3, n_test: int = 200) -> None:
        super().__init__(countdown_task(numbers, n_test), ToolBox([check]))


def check(expression: str) -> str:
    """The value of an arithmetic expression, and the numbers it uses."""
    value = evaluate_expression(expression)
    used = sorted(int(n) for n in re.findall(r"\d+", expression))
    return f"value {value if value is None else f'{value:g}'}, numbers {used}"


@functools.cache
def countdown_task(numbers: int, n_test: int) -> Task:
    return CountdownTask(numbers=numbers, n_test=n_test)


class GuessTask(Task):
    """Secret numbers from 1 to `high` (the answer); the prompt is the same for all. A training example's SFT
    target is a transcript of a player who guesses at random among the numbers still possible ("37.\nhigher\n
    62.\nlower\n ... 48."): the game's format, and a strategy RL can improve on (binary search)."""

    name = "guess"

    def __init__(self, high: int = 100, n_test: int = 200, n_train: int = 10_000, seed: int = SPLIT_SEED) -> None:
        rng = random.Random(seed)
        prompt = f"Guess my number from 1 to {high}."
        examples = []
        for _ in range(n_test + n_train):
            secret, low, top, lines = rng.randint(1, high), 1, high, []
            while True:
                guess = rng.randint(low, top)
                lines.append(f"{guess}.")
                if guess == secret:
                    break
                low, top = (guess + 1, top) if guess < secret else (low, guess - 1)
                lines.append(f"\n{'higher' if guess < secret else 'lower'}\n")
            examples.append(Example(prompt, str(secret), "".join(lines)))
        super().__init__(train=examples[n_test:], test=examples[:n_test])


class GuessNumberEnvironment(Environment):
    """Guess the secret; each wrong guess gets "higher" or "lower". A guess is a number followed by "." (which ends
    the turn). Finding it on turn t scores 1 - (t - 1) / max_turns: fewer turns, more reward (binary search needs
    at most 7 turns for 1..100)."""

    stop_strings = (".",)

    def __init__(self, high: int = 100, max_turns: int = 10, n_test: int = 200) -> None:
        self.high, self.max_turns, self.n_test = high, max_turns, n_test
        self.secret, self.turn = 0, 0

    def make_task(self) -> Task:
        return guess_task(self.high, self.n_test)

    def reset(self, example: Example) -> list[Message]:
        self.secret, self.turn, self.solved = int(example.answer), 0, False
        return [{"role": "user", "content": example.prompt}]

    def step(self, assistant_text: str) -> tuple[list[Message], float, bool]:
        self.turn += 1
        numbers = re.findall(r"\d+", assistant_text)
        if not numbers:
            return [{"role": "user", "content": "a number"}], 0.0, False
        value = int(numbers[-1])
        if value == self.secret:
            self.solved = True
            return [], 1.0 - (self.turn - 1) / self.max_turns, True
        return [{"role": "user", "content": "higher" if value < self.secret else "lower"}], 0.0, False


@functools.cache
def guess_task(high: int, n_test: int) -> Task:
    return GuessTask(high, n_test)


ENVIRONMENTS: dict[str, type] = {
    "calculator": CalculatorEnvironment,
    "guess": GuessNumberEnvironment,
    "countdown": CountdownEnvironment,
}
PYTHON_ENVIRONMENTS: dict[str, Any] = {}  # classes or factories given to plainrl.train in this process, by name


def environment_factory(spec: str) -> Any:
    """A zero-argument callable making one environment: "calculator", "guess:high=50", "module:Class[:opts]"."""
    if spec in PYTHON_ENVIRONMENTS:
        return PYTHON_ENVIRONMENTS[spec]
    name, _, options = spec.partition(":")
    if name in ENVIRONMENTS:
        cls, kwargs = ENVIRONMENTS[name], parse_options(options, spec)
    elif "." in name and options:  # module:Class
        module_name, class_name = name, options.split(":")[0]
        kwargs = parse_options(options.partition(":")[2], spec)
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"environment {spec!r}: cannot import {class_name} from {module_name}: {err}") from None
    else:
        raise ConfigError(
            f"unknown environment {name!r}{did_you_mean(name, ENVIRONMENTS)}; environments: "
            f"{', '.join(ENVIRONMENTS)}, or module:Class"
        )
    try:
        cls(**kwargs)  # fail now, in one line, on a bad option
    except TypeError as err:
        raise ConfigError(f"bad option in environment {spec!r}: {err}") from None
    return lambda: cls(**kwargs)


def environment_task(spec: str) -> Task:
    """The task of an environment spec, with `task.environment` set to the factory of its environments: what
    trainers and evaluations get as the run's task (they then run conversations, multi_turn.py)."""
    factory = environment_factory(spec)
    env = factory()
    missing = [m for m in ("reset", "step", "make_task") if not callable(getattr(env, m, None))]
    if missing:
        raise ConfigError(f"environment {spec!r} lacks {', '.join(missing)} (see plainrl/llm/environments.py)")
    task = env.make_task()
    task.environment = factory
    return task
