"""Verifiers on tricky strings; rewards of every kind; failing reward functions are contained."""

import math
import time

import pytest

from plainrl.kit.errors import ConfigError
from plainrl.llm.rewards import Reward, RewardSet, accuracy_reward, format_reward
from plainrl.llm.tasks import ArithmeticTask, CountdownTask, make_task, parse_number


@pytest.mark.parametrize(
    "completion, answer, correct",
    [
        ("46", "46", True),
        ("  46 ", "46", True),
        ("<answer> 46 </answer>", "46", True),
        ("12 + 34 = 46", "46", True),  # several numbers: the last one counts
        ("46 is wrong, it is 47", "46", False),
        ("<answer>46</answer> but maybe 47", "46", True),  # the tag wins over later numbers
        ("<answer>45</answer><answer>46</answer>", "46", True),  # the last tag
        ("-4", "-4", True),
        ("- 4", "-4", True),
        ("<answer>+4</answer>", "4", True),
        ("4", "-4", False),
        ("1,234", "1234", True),
        ("46.0", "46", True),
        ("no number here", "46", False),
        ("", "46", False),
        ("<answer></answer>", "46", False),
        ("<answer>forty-six</answer>", "46", False),
    ],
)
def test_arithmetic_verifier(completion, answer, correct):
    assert ArithmeticTask().is_correct(completion, answer) is correct


def test_strict_arithmetic_needs_the_tag():
    task = ArithmeticTask(strict=True)
    assert not task.is_correct("46", "46")
    assert task.is_correct("so <answer>46</answer>", "46")


def test_countdown_verifier():
    task = CountdownTask(n_test=5, n_train=5)
    numbers = [3, 5, 7]
    assert task.is_correct("<answer>(3 + 5) * 7</answer>", "56", numbers=numbers)
    assert task.is_correct("<think>hm</think><answer>7*(5+3) = 56</answer>", "56", numbers=numbers)
    assert not task.is_correct("<answer>(3 + 5) * 7</answer>", "57", numbers=numbers)  # wrong value
    assert not task.is_correct("<answer>8 * 7</answer>", "56", numbers=numbers)  # numbers not the given ones
    assert not task.is_correct("<answer>(3 + 5) * 7 * 7</answer>", "392", numbers=numbers)  # 7 used twice
    assert not task.is_correct("(3 + 5) * 7", "56", numbers=numbers)  # no answer tag
    assert not task.is_correct("<answer>__import__('os')</answer>", "56", numbers=numbers)
    assert not task.is_correct("<answer>3 / 0 + 5 + 7</answer>", "56", numbers=numbers)
    assert all(task.is_correct(e.target, e.answer, **e.columns) for e in task.test)


def test_splits_are_fixed_and_disjoint():
    a, b = make_task("arithmetic"), make_task("arithmetic")
    assert [e.prompt for e in a.test] == [e.prompt for e in b.test]
    assert not {e.prompt for e in a.test} & {e.prompt for e in a.train}
    assert len(a.test) == 500 and len(a.train) == 90 * 90 - 500
    three = make_task("arithmetic:digits=3,ops=+-*,n_test=50")
    assert len(three.test) == 50 and {e.prompt[3] for e in three.test} <= set("+-*")
    small = make_task("arithmetic:max_operand=30,n_test=200")  # operands 0..30: 31 * 31 sums, 1- and 2-digit
    operands = [int(x) for e in small.test + small.train for x in e.prompt[:-1].split("+")]
    assert len(small.test) == 200 and len(small.train) == 31 * 31 - 200 and set(operands) == set(range(31))


def test_jsonl_task(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(f'{{"prompt": "q{i}", "answer": "{i}", "level": {i % 3}}}' for i in range(20)))
    task = make_task(str(path))
    assert len(task.test) == 2 and len(task.train) == 18
    assert task.test[0].columns.keys() == {"level"}
    assert task.is_correct(f"<answer>{task.test[0].answer}</answer>", task.test[0].answer)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("arithmetc", "did you mean: arithmetic"),
        ("arithmetic:digits=0", "digits"),
        ("arithmetic:max_operand=0", "max_operand"),
    ],
)
def test_bad_task_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_task(spec)


def test_parse_number():
    assert parse_number(" - 1,234 ") == -1234.0 and parse_number("1e400") is None and parse_number("x") is None


def test_format_reward():
    fmt = format_reward()
    assert fmt("", "<think>a</think> <answer>4</answer>", "4") == 1.0
    assert fmt("", "<think>a\nb</think>\n<answer>4</answer>\n", "4") == 1.0
    assert fmt("", "<answer>4</answer>", "4") == 0.0
    assert fmt("", "<think>a</think><answer>4</answer> extra", "4") == 0.0
    assert format_reward(r"\d+")("", "42", "") == 1.0


def test_weighted_sum_with_per_sample_and_trl_style_functions():
    task = ArithmeticTask()

    def length_penalty(prompt, completion, answer):  # per sample
        return -0.01 * len(completion)

    def level_bonus(prompts, completions, level, **kwargs):  # TRL style, reads a dataset column
        return [None if lv == 0 else float(lv) for lv in level]

    rewards = RewardSet(
        [
            Reward(accuracy_reward(task), 1.0),
            Reward(format_reward(), 0.5),
            Reward(length_penalty),
            Reward(level_bonus, 2.0),
        ]
    )
    completions = ["<think>x</think><answer>3</answer>", "4"]
    scores = rewards.score(["1+2=", "2+2="], completions, ["3", "5"], [{"level": 0}, {"level": 1}])
    assert scores.parts["accuracy"].tolist() == [1.0, 0.0]
    assert scores.parts["format"].tolist() == [1.0, 0.0]
    assert scores.parts["level_bonus"].tolist() == [0.0, 1.0]
    expected = [1.0 + 0.5 - 0.01 * len(completions[0]), -0.01 + 2.0]
    assert scores.total.tolist() == pytest.approx(expected)
    assert scores.failures == {"accuracy": 0, "format": 0, "length_penalty": 0, "level_bonus": 0}


def test_raising_nan_and_hanging_rewards_are_contained():
    def raises(prompt, completion, answer):
        if completion == "boom":
            raise RuntimeError("boom")
        return 1.0

    def nan(prompt, completion, answer):
        return math.nan if completion == "boom" else "not a number" if completion == "x" else 1.0

    def hangs(prompt, completion, answer):
        if completion == "boom":
            time.sleep(30)
        return 1.0

    def bad_batch(prompts, completions, **kwargs):
        return [1.0]  # wrong length

    rewards = RewardSet([Reward(raises), Reward(nan), Reward(hangs), Reward(bad_batch)], timeout_s=0.2, max_timeouts=2)
    start = time.perf_counter()
    scores = rewards.score(["p"] * 3, ["ok", "boom", "x"], ["a"] * 3)
    assert time.perf_counter() - start < 5
    assert scores.parts["raises"].tolist() == [1.0, 0.0, 1.0]
    assert scores.parts["nan"].tolist() == [1.0, 0.0, 0.0]
    assert scores.parts["hangs"].tolist() == [1.0, 0.0, 1.0]
    assert scores.failures == {"raises": 1, "nan": 2, "hangs": 1, "bad_batch": 3}
    assert all(math.isfinite(v) for v in scores.metrics().values())
    with pytest.warns(UserWarning, match="switched off"):
        rewards.score(["p"], ["boom"], ["a"])  # a second time-out switches `hangs` off
    off = rewards.score(["p"], ["ok"], ["a"])
    assert off.parts["hangs"].tolist() == [0.0] and off.failures["hangs"] == 1
    assert rewards.failures_total["hangs"] == 3
