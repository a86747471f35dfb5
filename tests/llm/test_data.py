"""Your data as a task: file formats, column mapping, chat rows and system prompts, '####' answers, verifiers, and
the offline gsm task (tasks.py, gsm_problems.py)."""

import copy
import json
import pickle
import re
import string
import threading

import pytest

from plainrl.kit.errors import ConfigError
from plainrl.llm.config import TaskConfig
from plainrl.llm.gsm_problems import GSM_TEMPLATES
from plainrl.llm.policies import model_prompt
from plainrl.llm.preferences import PreferencePair, load_pairs, save_pairs
from plainrl.llm.tasks import answers_match, hash_answer, make_task, tidy_number
from plainrl.llm.tokenizer import CharTokenizer, ChatPrompt

ROWS = [{"question": f"What is {i} + {i}?", "solution": f"{i} + {i} = {2 * i}\n#### {2 * i}", "level": i % 3}
        for i in range(20)]  # fmt: skip
SYSTEM = "You are terse, exact, and kind."  # commas: why system_prompt is a config field too
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def tiny_chat_tokenizer():
    """An HFTokenizer over a character-level transformers tokenizer with a chat template, built in-process."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from plainrl.llm.hf import HFTokenizer

    vocab = {c: i for i, c in enumerate(["<unk>", "<eos>", *string.printable])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>",
                                 chat_template=CHAT_TEMPLATE)  # fmt: skip
    return HFTokenizer(hf, (1,))


def write(path, rows, kind):
    """ROWS-like rows as a file or folder of the given kind."""
    if kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "disk":
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("kind, name", [("json", "d.json"), ("jsonl", "d.jsonl"), ("parquet", "d.parquet"),
                                        ("disk", "saved")])  # fmt: skip
def test_each_format_with_column_mapping(tmp_path, kind, name):
    spec = write(tmp_path / name, ROWS, kind) + ":prompt_column=question,answer_column=solution,test_fraction=0.2"
    task = make_task(spec)
    assert len(task.test) == 4 and len(task.train) == 16
    assert {e.prompt for e in task.train + task.test} == {r["question"] for r in ROWS}
    example = next(e for e in task.train if e.prompt == "What is 7 + 7?")
    assert example.answer == "14" and example.target == "7 + 7 = 14\n#### 14"  # '####' answers; the text is the target
    assert example.columns == {"level": 1}
    assert example.line == (8 if kind == "jsonl" else 0)
    assert task.is_correct("7 + 7 = 14\n#### 14", example.answer) and not task.is_correct("#### 15", "14")
    assert [e.prompt for e in make_task(spec).test] == [e.prompt for e in task.test]  # the split is fixed


def test_config_fields_reach_the_task_and_spec_options_win(tmp_path):
    path = write(tmp_path / "d.parquet", ROWS, "parquet")
    config = TaskConfig(task=path, prompt_column="question", answer_column="solution", system_prompt=SYSTEM)
    task = config.make_task()
    assert isinstance(task.train[0].prompt, ChatPrompt) and task.train[0].prompt.messages[0]["content"] == SYSTEM
    assert len(make_task(path + ":test_fraction=0.5", prompt_column="question", answer_column="solution").test) == 10
    swapped = make_task(path + ":prompt_column=solution,answer_column=question", prompt_column="nope")
    assert "####" in swapped.train[0].prompt and swapped.train[0].answer.startswith("What is")


def test_dataset_dict_splits_are_used_as_they_are(tmp_path):
    import datasets

    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_list(ROWS[:15]), test=datasets.Dataset.from_list(ROWS[15:])
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    task = make_task(str(tmp_path / "dd"), prompt_column="question", answer_column="solution")
    assert [e.prompt for e in task.test] == [r["question"] for r in ROWS[15:]]
    assert [e.prompt for e in task.train] == [r["question"] for r in ROWS[:15]]  # no shuffle, no hold-out
    train_only = datasets.DatasetDict(train=datasets.Dataset.from_list(ROWS))
    train_only.save_to_disk(str(tmp_path / "train_only"))
    assert len(make_task(f"{tmp_path / 'train_only'}:prompt_column=question,answer_column=solution").test) == 2
    datasets.DatasetDict(validation=datasets.Dataset.from_list(ROWS)).save_to_disk(str(tmp_path / "val"))
    with pytest.raises(ConfigError, match=r"has splits validation; it needs a 'train' split"):
        make_task(str(tmp_path / "val"))


def chat_rows():
    """TRL's conversational rows: a `messages` column; some with a system turn, some with an assistant answer."""
    rows = []
    for i in range(10):
        turns = [
            {"role": "user", "content": f"{i} + 1?"},
            {"role": "assistant", "content": f"It is {i + 1}.\n#### {i + 1}"},
        ]
        if i == 0:
            turns.insert(0, {"role": "system", "content": "Own system turn."})
        rows.append({"messages": turns, "id": i})
    return rows


def test_chat_rows_and_a_system_prompt_reach_the_chat_template(tmp_path):
    path = write(tmp_path / "chat.jsonl", chat_rows(), "jsonl")
    task = make_task(path, system_prompt=SYSTEM)  # no `prompt` column: `messages` is used; no answer column needed
    examples = {e.columns["id"]: e for e in task.train + task.test}
    three = examples[3]
    assert three.target == "It is 4.\n#### 4" and three.answer == "4"  # the assistant turn: the target and answer
    assert three.prompt.messages == ({"role": "system", "content": SYSTEM}, {"role": "user", "content": "3 + 1?"})
    assert examples[0].prompt.messages[0]["content"] == "Own system turn."  # a row's own system turn is kept
    with_target = [{**row, "target": "#### 9"} for row in chat_rows()]
    assert make_task(write(tmp_path / "t.json", with_target, "json")).train[0].target == "#### 9"
    chat = tiny_chat_tokenizer()
    rendered = chat.render_prompt(model_prompt(task, three, chat))
    assert rendered == f"<system>{SYSTEM}\n<user>3 + 1?\n<assistant>"
    assert chat.prompt_ids(model_prompt(task, three, chat)) == chat.encode(rendered)
    plain = CharTokenizer()  # no chat template: the turns as plain text, one per line
    assert plain.render_prompt(model_prompt(task, three, plain)) == f"{SYSTEM}\n3 + 1?"
    assert task.is_correct("It is 4.\n#### 4", three.answer) and task.is_correct("<answer>4</answer>", three.answer)


def test_a_system_prompt_on_text_rows_replaces_the_answer_instruction(tmp_path):
    path = write(tmp_path / "d.json", ROWS, "json")
    chat = tiny_chat_tokenizer()
    bare = make_task(path, prompt_column="question", answer_column="solution")
    example = bare.train[0]
    assert chat.render_prompt(model_prompt(bare, example, chat)) == (
        f"<user>{example.prompt}\nPut the final answer inside <answer></answer>.\n<assistant>"
    )
    with_system = make_task(path, prompt_column="question", answer_column="solution", system_prompt=SYSTEM)
    example = with_system.train[0]
    question = example.prompt.messages[1]["content"]
    assert (
        chat.render_prompt(model_prompt(with_system, example, chat))
        == f"<system>{SYSTEM}\n<user>{question}\n<assistant>"
    )
    assert model_prompt(with_system, example, CharTokenizer()) == f"{SYSTEM}\n{question}"


def test_chat_prompts_survive_copies_pickles_and_preference_files(tmp_path):
    prompt = ChatPrompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}])
    assert prompt == f"{SYSTEM}\nHi"
    assert copy.deepcopy(prompt).messages == pickle.loads(pickle.dumps(prompt)).messages == prompt.messages
    save_pairs([PreferencePair(prompt, "a", "b"), PreferencePair("plain", "c", "d")], tmp_path / "pairs.jsonl")
    loaded = load_pairs(tmp_path / "pairs.jsonl")
    assert loaded[0].prompt.messages == prompt.messages and loaded[1].prompt == "plain"


def test_hash_answers_and_tidy_numbers():
    assert hash_answer("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72") == "72"
    assert hash_answer("so it costs $1,234.\n#### $1,234.") == "1234"
    assert hash_answer("#### -5\nThe end") == "-5" and hash_answer("#### 2.50") == "2.50"
    assert hash_answer("#### Paris") == "Paris" and hash_answer("####") == "" and hash_answer("42") is None
    assert hash_answer("first #### 1, then #### 2") == "2"  # the last one
    assert tidy_number(" $3,000. ") == "3000" and tidy_number("Paris.") == "Paris."
    assert answers_match("$1,234.", "1234") and answers_match("72.0", "72") and not answers_match("71", "72")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: make_task(str(p / "none.jsonl")), r"task file '.*none.jsonl' does not exist"),
        (lambda p: make_task("openai/gsm8k"), r"'openai/gsm8k' does not exist \(a Hugging Face hub name is not downlo"),
        (lambda p: make_task(write(p / "d.csv", [], "json")), r"d.csv': unknown format '.csv'; use .json \(an array"),
        (lambda p: make_task(write(p / "d.json", [], "json")), r"d.json' needs at least 2 examples \(it has 0\)"),
        (lambda p: make_task(write(p / "d.json", {"a": 1}, "json")), r"d.json' is not a JSON array of objects"),
        (
            lambda p: make_task(str(p / "d.json"), prompt_column="question"),
            r"d.json row 1 has no column 'answer' "
            r"\(its columns: question, solution, level\); set answer_column to the one to use",
        ),
        (
            lambda p: make_task(str(p / "d.json")),
            r"d.json row 1 has no column 'prompt' \(its columns: question, "
            r"solution, level\); set prompt_column",
        ),
        (lambda p: make_task(str(p / "d.jsonl")), r"d.jsonl:1 has no column 'prompt'"),
        (
            lambda p: make_task(str(p / "d.parquet") + ":answer_column=x,prompt_column=question"),
            r"d.parquet row 1 has no column 'x'",
        ),
        (lambda p: make_task(write(p / "bad.parquet", [], "json")), r"bad.parquet' is not a readable Parquet file: "),
        (lambda p: make_task(str(p / "bin.jsonl")), r"bin.jsonl' is not text \(UTF-8\)"),
        (lambda p: make_task(str(p / "cut.json")), r"cut.json' is not valid JSON: Unterminated string"),
        (lambda p: make_task(str(p / "cut.jsonl")), r"cut.jsonl:2 is not valid JSON: Unterminated string"),
        (lambda p: make_task(str(p)), r"is not a dataset written by save_to_disk \("),
        (lambda p: make_task(str(p / "d.json") + ":verifier=sympy"), r"verifier = 'sympy' is not one of exact, math_"),
        (lambda p: make_task(str(p / "d.json") + ":colour=red"), r"bad option in task .*colour"),
        (lambda p: make_task(str(p / "d.json") + ":test_fraction=1"), r"test_fraction = 1 must be in \(0, 1\)"),
        (lambda p: make_task("gsm", system_prompt="Hi"), r"system_prompt = 'Hi' is for data files; task 'gsm' writes"),
        (
            lambda p: make_task(write(p / "c.json", [{"prompt": [{"role": "user"}], "answer": 1}] * 2, "json")),
            r"c.json row 1: 'prompt' holds \"\{'role': 'user'\}\", not a chat turn",
        ),
        (
            lambda p: make_task(write(p / "c.json", [{"prompt": [{"role": "assistant", "content": "x"}]}] * 2, "json")),
            r"c.json row 1: the chat turns in 'prompt' must end with a user turn",
        ),
        (
            lambda p: make_task(write(p / "c.json", [{"prompt": {"a": 1}, "answer": 1}] * 2, "json")),
            r"c.json row 1: 'prompt' is a dict; a prompt is text or a list of",
        ),
    ],
)
def test_one_line_errors(tmp_path, make, message):
    write(tmp_path / "d.json", ROWS, "json")
    write(tmp_path / "d.jsonl", ROWS, "jsonl")
    write(tmp_path / "d.parquet", ROWS, "parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "cut.json").write_text('[{"prompt": "a", "ans')
    (tmp_path / "cut.jsonl").write_text('{"prompt": "a", "answer": 1}\n{"prompt": "b", "ans\n')
    with pytest.raises(ConfigError, match=message) as caught:
        make(tmp_path)
    assert "\n" not in str(caught.value)


def test_math_verify_without_the_package_says_how_to_get_it(tmp_path, monkeypatch):
    import importlib.util

    path = write(tmp_path / "d.json", ROWS, "json")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the math-verify package: pip install 'plainrl\[math\]'"):
        make_task(path + ":verifier=math_verify,prompt_column=question,answer_column=solution")


def test_math_verify_verifier(tmp_path):
    pytest.importorskip("math_verify")
    rows = [{"prompt": f"q{i}", "answer": "\\frac{1}{2}"} for i in range(4)]
    task = make_task(write(tmp_path / "d.json", rows, "json") + ":verifier=math_verify")
    assert task.is_correct("<answer>0.5</answer>", "\\frac{1}{2}") and task.is_correct("so $\\boxed{1/2}$", "0.5")
    assert task.is_correct("#### 1/2", "0.5") and not task.is_correct("<answer>0.6</answer>", "\\frac{1}{2}")
    verdicts: list[bool] = []  # in a worker thread (a reward call): no signal-based timeouts there
    worker = threading.Thread(target=lambda: verdicts.append(task.is_correct("#### 0.5", "\\frac{1}{2}")))
    worker.start()
    worker.join()
    assert verdicts == [True]
    exact = make_task(str(tmp_path / "d.json"))
    assert not exact.is_correct("<answer>0.5</answer>", "\\frac{1}{2}")


def test_gsm_task_splits_answers_and_verifier():
    task, again = make_task("gsm"), make_task("gsm:n_test=50,n_train=500")
    assert len(task.test) == 200 and len(task.train) == 10_000
    assert [e.prompt for e in task.test[:50]] == [e.prompt for e in again.test]  # the same seeded problems
    assert not {e.prompt for e in task.test} & {e.prompt for e in task.train}
    assert {e.columns["template"] for e in task.train} == set(range(len(GSM_TEMPLATES)))
    for example in task.train + task.test:
        steps = example.target.splitlines()[:-1]
        assert 2 <= len(steps) <= 4 and example.target.endswith(f"\n#### {example.answer}")
        assert task.is_correct(example.target, example.answer)
        assert int(example.answer) >= 0 and all(
            32 <= ord(c) < 127 or c == "\n" for c in example.prompt + example.target
        )
    by_hand = {  # recomputed from the question's numbers
        "Museum tickets cost $": lambda n: n[0] * n[2] + n[1] * n[3],  # adult, child prices; adults, children
        "has saved $": lambda n: (n[2] - n[0]) // n[1],  # saved, weekly, price
        "notebooks for $": lambda n: n[4] - (n[0] * n[1] + n[2] * n[3]),  # notebooks, price, pens, price, bill
    }
    checked = 0
    for example in task.test:
        for marker, answer in by_hand.items():
            if marker in example.prompt:
                numbers = [int(x) for x in re.findall(r"\d+", example.prompt)]
                assert int(example.answer) == answer(numbers), example.prompt
                checked += 1
    assert checked >= 10
    first = task.test[0]
    assert first.prompt.startswith("Museum tickets cost $8 for adults and $3 for children.")
    assert task.chat_prompt(first).endswith("End with the final number on its own line after ####, like: #### <number>")
    answer = first.answer
    assert task.is_correct(f"Some working.\n#### {answer}", answer) and task.is_correct(
        f"<answer>{answer}</answer>", answer
    )
    assert task.is_correct(f"so it is {answer} dollars", answer) and not task.is_correct("#### 0", answer)
    strict = make_task("gsm:n_test=5,n_train=5,strict=true")
    assert not strict.is_correct(f"so it is {strict.test[0].answer}", strict.test[0].answer)
