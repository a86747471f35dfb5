"""Tasks: a prompt generator and a verifier, with fixed seeded train/test splits.

    task = make_task("arithmetic")                      2-digit addition; "arithmetic:digits=3,ops=+-*"
    task = make_task("countdown")                       reach a target with the given numbers (TinyZero)
    task = make_task("data/my.jsonl")                   your own {"prompt": ..., "answer": ...} lines
    task.train, task.test                               lists of Example(prompt, answer, target, columns)
    task.extract_answer(completion) -> str | None      what the completion answers
    task.is_correct(completion, answer, **columns) -> bool     columns: the example's extra fields

A prompt is the bare question ("12+34="), which models trained from scratch read as is; `chat_prompt` adds the
instruction a chat model needs (answer inside <answer></answer>). `target` is the completion SFT imitates.
The split seed is the task's own (not the run's), so every run and every evaluation sees the same test split.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import operator
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from plainrl.kit.errors import ConfigError, did_you_mean

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
NUMBER = re.compile(r"[-+]?\s*\d[\d,]*(?:\.\d+)?")
SPLIT_SEED = 1234


@dataclass
class Example:
    prompt: str
    answer: str
    target: str  # the completion SFT trains on
    columns: dict[str, Any] = field(default_factory=dict)  # extra dataset columns, for TRL-style rewards
    line: int = 0  # its line in a .jsonl file (0: not from a file)


def tagged_answer(completion: str) -> str | None:
    """The text inside the last <answer>...</answer>, stripped; None without the tag."""
    found = ANSWER_TAG.findall(completion)
    return found[-1].strip() if found else None


def parse_number(text: str) -> float | None:
    """'  - 1,234 ' -> -1234.0; None unless the whole text is one number."""
    cleaned = text.strip().replace(",", "").replace(" ", "")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def last_number(text: str) -> str | None:
    """The last number written in the text ('so 3 + 4 = 7.' -> '7'), or None."""
    found = NUMBER.findall(text)
    return found[-1].replace(" ", "") if found else None


class Task:
    name = "task"
    instruction = "Put the final answer inside <answer></answer>."

    def __init__(self, train: list[Example], test: list[Example]) -> None:
        self.train, self.test = train, test

    def chat_prompt(self, example: Example) -> str:
        return f"{example.prompt}\n{self.instruction}"

    def extract_answer(self, completion: str) -> str | None:
        return tagged_answer(completion)

    def is_correct(self, completion: str, answer: str, **columns: Any) -> bool:
        extracted = self.extract_answer(completion)
        return extracted is not None and answers_match(extracted, answer)


def answers_match(extracted: str, answer: str) -> bool:
    """Numerically equal when both are numbers, else equal after trimming spaces and case."""
    a, b = parse_number(extracted), parse_number(answer)
    if a is not None and b is not None:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))
    return extracted.strip().lower() == answer.strip().lower()


class ArithmeticTask(Task):
    """a OP b with `digits`-digit operands; OP drawn from `ops` (any of + - *). Prompt '12+34=', target '46'.

    `max_operand=N` replaces the digit count with operands in [0, N]: a difficulty between 1 and 2 digits
    ('arithmetic:max_operand=30' mixes 1- and 2-digit sums).

    The answer is the tagged one if there is a tag, else the last number in the completion (strict=False), so
    both a bare '46' and 'so the sum is <answer>46</answer>' count.
    """

    name = "arithmetic"
    instruction = "Give only the final number, inside <answer></answer>."
    OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}

    def __init__(
        self,
        digits: int = 2,
        ops: str = "+",
        n_test: int = 500,
        strict: bool = False,
        max_operand: int | None = None,
        seed: int = SPLIT_SEED,
    ):
        if digits < 1 or digits > 9:
            raise ConfigError(f"arithmetic digits = {digits} must be in [1, 9]")
        if not ops or any(op not in self.OPS for op in ops):
            raise ConfigError(f"arithmetic ops = {ops!r} must be made of + - *")
        if max_operand is not None and not 1 <= max_operand < 10**9:
            raise ConfigError(f"arithmetic max_operand = {max_operand} must be in [1, 999999999]")
        self.digits, self.ops, self.strict = digits, ops, strict
        low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits  # operands in [low, high)
        if max_operand is not None:
            low, high = 0, max_operand + 1
        rng = random.Random(seed)
        if (high - low) ** 2 * len(ops) <= 200_000:  # small spaces: shuffle all problems, split without overlap
            problems = list(itertools.product(range(low, high), ops, range(low, high)))
            rng.shuffle(problems)
        else:  # large spaces: draw distinct problems
            seen: set[tuple[int, str, int]] = set()
            while len(seen) < n_test + 100_000:
                seen.add((rng.randrange(low, high), rng.choice(ops), rng.randrange(low, high)))
            problems = sorted(seen)
            rng.shuffle(problems)
        if n_test >= len(problems):
            raise ConfigError(f"arithmetic n_test = {n_test} leaves no training problems ({len(problems)} in all)")
        examples = [self.example(a, op, b) for a, op, b in problems]
        super().__init__(train=examples[n_test:], test=examples[:n_test])

    def example(self, a: int, op: str, b: int) -> Example:
        answer = str(self.OPS[op](a, b))
        return Example(prompt=f"{a}{op}{b}=", answer=answer, target=answer)

    def chat_prompt(self, example: Example) -> str:
        a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)=", example.prompt).groups()  # type: ignore[union-attr]
        return f"What is {a} {op} {b}? {self.instruction}"

    def extract_answer(self, completion: str) -> str | None:
        tagged = tagged_answer(completion)
        if tagged is not None or self.strict:
            return tagged
        return last_number(completion)


class CountdownTask(Task):
    """Reach `target` with + - * / and each of the given numbers once (TinyZero's Countdown).

    Every problem is built from a random expression over its numbers, so each has a solution (the SFT target).
    The answer is the equation inside <answer></answer>; it is correct if it uses exactly the given numbers and
    evaluates to the target.
    """

    name = "countdown"
    instruction = (
        "Using each of the numbers exactly once, with + - * / and parentheses, write an equation that equals the "
        "target. Put the equation inside <answer></answer>, for example <answer>(1 + 2) * 3</answer>."
    )

    def __init__(
        self, numbers: int = 3, max_number: int = 50, n_test: int = 500, n_train: int = 20_000, seed: int = SPLIT_SEED
    ):
        if not 2 <= numbers <= 6:
            raise ConfigError(f"countdown numbers = {numbers} must be in [2, 6]")
        rng = random.Random(seed)
        seen: set[str] = set()
        examples: list[Example] = []
        while len(examples) < n_test + n_train:
            values = [rng.randint(1, max_number) for _ in range(numbers)]
            expression = random_expression(values, rng)
            target = evaluate_expression(expression)
            if target is None or target != int(target) or not 0 < target <= 1000:
                continue
            prompt = f"numbers {sorted(values)} target {int(target)}:"
            if prompt in seen:
                continue
            seen.add(prompt)
            columns = {"numbers": sorted(values), "target": int(target)}
            examples.append(Example(prompt, str(int(target)), f"<answer>{expression}</answer>", columns))
        super().__init__(train=examples[n_test:], test=examples[:n_test])

    def chat_prompt(self, example: Example) -> str:
        numbers, target = example.columns["numbers"], example.columns["target"]
        return f"Numbers: {numbers}. Target: {target}. {self.instruction}"

    def is_correct(self, completion: str, answer: str, numbers: list[int] | None = None, **columns: Any) -> bool:
        """Correct if the tagged equation uses exactly `numbers` and equals `answer` (the target)."""
        equation = (tagged_answer(completion) or "").split("=")[0]  # '(1 + 2) * 3 = 9' counts as '(1 + 2) * 3'
        if not equation.strip():
            return False
        value = evaluate_expression(equation)
        used = [int(n) for n in re.findall(r"\d+", equation)]
        if numbers is not None and Counter(used) != Counter(numbers):
            return False
        return value is not None and abs(value - float(answer)) < 1e-6


def random_expression(values: list[int], rng: random.Random) -> str:
    """Combine the numbers in random order with random operators into one parenthesised expression."""
    terms = [str(v) for v in values]
    rng.shuffle(terms)
    while len(terms) > 1:
        i = rng.randrange(len(terms) - 1)
        op = rng.choice("+-*/")
        combined = f"{terms[i]} {op} {terms[i + 1]}"
        terms[i : i + 2] = [combined if len(terms) == 2 else f"({combined})"]
    return terms[0]


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate_expression(text: str) -> float | None:
    """The value of an arithmetic expression of numbers, + - * / and parentheses; None for anything else."""
    if len(text) > 200 or not re.fullmatch(r"[\d\s+\-*/().]+", text):
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError("not arithmetic")

    try:
        return value(tree.body)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def read_jsonl(path: str | Path, keys: tuple[str, ...], what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for each line of a JSONL file (blank lines skipped), every record holding `keys`;
    else one clear error naming the line. JSON only: reading data never runs code from it."""
    if not Path(path).is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number} is not valid JSON: {err}") from None
        if record is not None and (not isinstance(record, dict) or any(k not in record for k in keys)):
            raise ConfigError(f"{path}:{number} is not a JSON object with {', '.join(keys)}")
        if record is not None:
            records.append((number, record))
    return records


class JsonlTask(Task):
    """Lines of {"prompt": ..., "answer": ..., other columns...}; a seeded `test_fraction` is held out.

    Correct means: the tagged answer (or, without a tag, the whole completion) matches the answer, numerically
    when both are numbers. `target`, if a line has one, is the SFT completion; else the answer itself.
    """

    name = "jsonl"

    def __init__(self, path: str | Path, test_fraction: float = 0.1, seed: int = SPLIT_SEED) -> None:
        examples = []
        for number, row in read_jsonl(path, ("prompt", "answer"), "task"):
            columns = {k: v for k, v in row.items() if k not in ("prompt", "answer", "target")}
            answer = str(row["answer"])
            examples.append(Example(str(row["prompt"]), answer, str(row.get("target", answer)), columns, number))
        if len(examples) < 2:
            raise ConfigError(f"task file {str(path)!r} needs at least 2 examples")
        random.Random(seed).shuffle(examples)
        n_test = max(1, round(len(examples) * test_fraction))
        super().__init__(train=examples[n_test:], test=examples[:n_test])

    def extract_answer(self, completion: str) -> str | None:
        tagged = tagged_answer(completion)
        return tagged if tagged is not None else completion.strip()


TASKS: dict[str, type[Task]] = {"arithmetic": ArithmeticTask, "countdown": CountdownTask}
PYTHON_TASKS: dict[str, Task] = {}  # Task objects given to plainrl.train in this process, by their config name


def make_task(spec: str) -> Task:
    """'arithmetic', 'arithmetic:digits=3,ops=+-*', 'countdown:numbers=4', or a path to a .jsonl file."""
    if spec in PYTHON_TASKS:
        return PYTHON_TASKS[spec]
    if spec.startswith("python:"):
        raise ConfigError(f"task {spec!r} was a Task object of another Python process: pass task= again")
    name, _, options = spec.partition(":")
    if name.endswith(".jsonl") or (name not in TASKS and Path(name).suffix):
        kwargs = parse_options(options, spec)
        return JsonlTask(name, **kwargs)
    if name not in TASKS:
        raise ConfigError(
            f"unknown task {name!r}{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}, or a .jsonl file"
        )
    try:
        return TASKS[name](**parse_options(options, spec))
    except TypeError as err:
        raise ConfigError(f"bad option in task {spec!r}: {err}") from None


def check_alphabet(task: Task, tokenizer: Any, spec: str) -> None:
    """A character the tokenizer cannot write (the built-in one knows printable ASCII) stops the run before it starts,
    naming the example (the line, in a .jsonl file) and the character."""
    alphabet = getattr(tokenizer, "ids", None)
    if alphabet is None:  # Hugging Face tokenizers cover every character
        return
    for split, examples in (("train", task.train), ("test", task.test)):
        for index, example in enumerate(examples):
            for text in (example.prompt, example.target):
                bad = next((c for c in text if c not in alphabet), None)
                if bad is not None:
                    where = f"line {example.line}" if example.line else f"{split} example {index + 1}"
                    raise ConfigError(
                        f"task {spec!r}, {where}: character {bad!r} is outside the built-in tokenizer's alphabet "
                        "(printable ASCII and newline); use a Hugging Face model or remove it"
                    )


def parse_options(options: str, spec: str) -> dict[str, Any]:
    """'digits=3,ops=+-*' -> {'digits': 3, 'ops': '+-*'} (integers and floats converted)."""
    out: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"task option {item!r} in {spec!r} is not key=value")
        value: Any = raw
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        out[key.strip()] = value
    return out


def epoch_indices(start: int, count: int, n_examples: int, seed: int) -> torch.Tensor:
    """Indices start .. start + count - 1 of a dataset read in epochs, each a permutation seeded by (seed, epoch):
    any batch of any step can be recomputed, so a resumed run reads the same data as an uninterrupted one."""
    indices: list[int] = []
    while len(indices) < count:
        epoch, offset = divmod(start + len(indices), n_examples)
        order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        indices += order[offset : offset + count - len(indices)].tolist()
    return torch.tensor(indices)
