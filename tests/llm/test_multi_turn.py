"""Multi-turn rollouts: a trajectory's log-probs equal a teacher-forced forward over the whole conversation, the
KV cache kept across turns gives what recomputing each turn from scratch gives, environment tokens get no
gradient, tools are contained, and GRPO learns over conversations (and unlearns with the sign flipped)."""

import time

import pytest
import torch

import plainrl
from plainrl.kit.errors import ConfigError
from plainrl.llm.environments import (
    CalculatorEnvironment,
    Environment,
    GuessNumberEnvironment,
    calculate,
    environment_task,
)
from plainrl.llm.generate import SamplingParams, completion_logprobs, completion_logprobs_entropy, generate
from plainrl.llm.grpo import grpo_loss
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.multi_turn import environment_ids, rollout_conversations
from plainrl.llm.tasks import ArithmeticTask
from plainrl.llm.tokenizer import CharTokenizer, ChatPrompt
from plainrl.llm.tools import ToolBox, parse_tool_call

CHARS = CharTokenizer()


class ReplyEnv(Environment):
    """Replies to every turn with text whose length depends on the turn (so rows' replies differ in length and
    the cache gets holes); ends after 3 model turns; a turn's reward is its number. A vowel ends a model turn, so
    rows end their turns at different steps: the others' slots of those steps are holes in the cache."""

    max_turns = 3
    stop_strings = tuple("aeiouAEIOU")

    def make_task(self):
        return ArithmeticTask(digits=1, n_test=20)

    def reset(self, example):
        self.turn = 0
        return [{"role": "user", "content": example.prompt}]

    def step(self, text):
        self.turn += 1
        return [{"role": "user", "content": "ok" + "x" * (len(text) % 4)}], float(self.turn), self.turn == 3


def char_model(seed=0, device="cpu") -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=CHARS.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64,
                         tie_embeddings=False)  # fmt: skip
    model = Transformer(config).eval().to(device)
    with torch.no_grad():
        model.lm_head.weight.mul_(8)  # peaked enough that some turns end at EOS, others run to max_new_tokens
    return model


def examples(n):
    return ArithmeticTask(digits=1, n_test=20).test[:n]


def test_a_trajectory_holds_model_and_environment_tokens_and_its_logprobs_equal_a_teacher_forced_forward(device):
    model, rows = char_model(device=device), examples(6)
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    conversations = rollout_conversations(model, CHARS, [ReplyEnv() for _ in rows], rows, params,
                                          torch.Generator(device).manual_seed(0))  # fmt: skip
    rollout = conversations.rollout
    assert conversations.turns == [3] * 6 and conversations.returns.tolist() == [6.0] * 6  # 1 + 2 + 3
    real, trained = rollout.completion_real, rollout.completion_mask
    assert bool((trained <= real).all()) and bool((real & ~trained).any())  # environment tokens: real, not trained
    for row, transcript in enumerate(conversations.transcripts):
        assert transcript.count("\nok") == 2  # two replies between three model turns
        env_tokens = rollout.completion_ids[row][real[row] & ~trained[row]].tolist()
        assert CHARS.decode(env_tokens).replace("x", "") == "\nok\n\nok\n"
    forward = completion_logprobs(model, rollout)  # one forward over prompt + every turn, env tokens as context
    torch.testing.assert_close(forward, rollout.logprobs, atol=1e-4, rtol=1e-4)
    turn_lengths = {len(turn) for t in conversations.transcripts for turn in t.split("\n")[::2]}
    assert len(turn_lengths) > 2  # turns end at different steps: holes in the cache


def test_the_cache_kept_across_turns_gives_what_recomputing_each_turn_gives(device):
    model, rows = char_model(device=device), examples(6)
    params = SamplingParams(max_new_tokens=6, greedy=True, stop_strings=ReplyEnv.stop_strings)
    cached = rollout_conversations(model, CHARS, [ReplyEnv() for _ in rows], rows, params)
    assert len({len(t) for t in cached.transcripts}) > 1
    for row, example in enumerate(rows):  # each conversation alone, every turn a fresh generate() from its text
        env, prefix, completion = ReplyEnv(), CHARS.prompt_ids(example.prompt), []
        env.reset(example)
        for _turn in range(env.max_turns):
            out = generate(model, CHARS, [prefix + completion], params)
            turn = out.completion_ids[0][out.completion_mask[0]].tolist()
            completion += turn
            messages, _, done = env.step(CHARS.decode(turn))
            if done:
                break
            completion += environment_ids(CHARS, messages, after_eos=turn[-1] == CHARS.eos_id)
        got = cached.rollout.completion_ids[row][cached.rollout.completion_real[row]].tolist()
        assert got == completion


def test_environment_tokens_get_no_gradient():
    model, rows = char_model(), examples(4)
    conversations = rollout_conversations(model, CHARS, [ReplyEnv() for _ in rows], rows,
                                          SamplingParams(max_new_tokens=5, temperature=1.0),
                                          torch.Generator().manual_seed(1))  # fmt: skip
    rollout = conversations.rollout
    logprobs, _ = completion_logprobs_entropy(model.train(), rollout, torch.arange(4))
    logprobs.retain_grad()
    mask = rollout.completion_mask
    advantages = torch.tensor([1.0, -1.0, 0.5, 2.0])
    loss, _ = grpo_loss(logprobs, logprobs.detach(), advantages, mask, 0.2, 0.2, "token_mean", 5, 0.04,
                        logprobs.detach() - 0.1, "k3", torch.tensor(4.0), mask.sum().float())  # fmt: skip
    loss.backward()
    env_slots = rollout.completion_real & ~mask
    assert bool(env_slots.any())
    assert bool((logprobs.grad[env_slots] == 0).all())  # no gradient reaches an environment token's log-prob
    assert bool((logprobs.grad[mask] != 0).all())  # every model token gets one


def test_tools_are_contained_and_counted():
    def slow(x: str) -> str:
        time.sleep(2)
        return x

    def broken(x: str) -> str:
        raise ZeroDivisionError("division by zero")

    def huge(x: str) -> str:
        return "9" * 10_000

    box = ToolBox([calculate, slow, broken, huge], timeout_s=0.2, max_chars=50)
    assert box.run('{"name": "calculate", "arguments": {"expression": "1234*5678"}}').text == "7006652"
    assert box.run("calculate 12*(3+4)").text == "84"  # the short form
    assert box.run("broken 1").text == "error: ZeroDivisionError: division by zero"
    assert box.run("slow 1").text == "error: slow took longer than 0.2 s"
    assert box.run("huge 1").text == "9" * 50 + " ...[cut]"
    assert box.run("nope 1").outcome == "unknown_tool"
    assert box.run('{"name": 3}').outcome == "bad_call"
    assert box.run("calculate 1/0").outcome == "error"
    assert box.stats.calls == 8
    assert box.stats.outcomes == {"ok": 2, "error": 2, "timeout": 1, "truncated": 1, "unknown_tool": 1, "bad_call": 1}
    assert parse_tool_call("x <tool_call> calculate 2*3 </tool_call> y") == "calculate 2*3"
    assert '"name": "calculate"' in box.describe() and '"expression": {"type": "string"}' in box.describe()


def test_the_built_in_environments_score_turns_as_documented():
    calc = CalculatorEnvironment(digits=4)
    example = calc.make_task().test[0]
    a, b = example.prompt.rstrip("=").split("*")
    assert calc.reset(example) == [{"role": "user", "content": example.prompt}]
    messages, reward, done = calc.step(f"<tool_call>calculate {a}*{b}</tool_call>")
    assert messages == [{"role": "user", "content": f"<tool_response>{int(a) * int(b)}</tool_response>"}]
    assert (reward, done) == (0.0, False)
    assert calc.step(str(int(a) * int(b))) == ([], 1.0, True) and calc.solved

    guess = GuessNumberEnvironment(max_turns=8)
    assert guess.make_task().train[0].target.endswith(".") and "\nhigher\n" in "".join(
        e.target for e in guess.make_task().train[:20]
    )
    guess.reset(guess.make_task().test[0])
    secret = guess.secret
    assert guess.step(str(secret - 1))[0] == [{"role": "user", "content": "higher"}]
    assert guess.step(str(secret + 1))[0] == [{"role": "user", "content": "lower"}]
    assert guess.step("no idea")[1:] == (0.0, False)
    assert guess.step(str(secret)) == ([], 1.0 - 3 / 8, True)  # found on turn 4 of 8


def test_bad_environments_are_one_clear_line():
    with pytest.raises(ConfigError, match="unknown environment 'calculater' \\(did you mean: calculator"):
        environment_task("calculater")
    with pytest.raises(ConfigError, match="bad option in environment 'guess:size=3'"):
        environment_task("guess:size=3")
    with pytest.raises(ConfigError, match="cannot import Nope from tests.helpers"):
        environment_task("tests.helpers:Nope")


class SecondTurnEnv(Environment):
    """Two turns; the reward is the share of 'b's in the model's second turn (the first turn is free). Learning
    it needs credit through a turn of environment tokens."""

    max_turns = 2

    def make_task(self):
        return ArithmeticTask(digits=1, n_test=10)

    def reset(self, example):
        self.turn = 0
        return [{"role": "user", "content": example.prompt}]

    def step(self, text):
        self.turn += 1
        if self.turn == 1:
            return [{"role": "user", "content": "again"}], 0.0, False
        self.solved = text.count("b") >= 2
        return [], text.count("b") / 4, True


@pytest.mark.slow
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["learns", "sign-flipped"])
def test_grpo_learns_over_conversations_and_unlearns_with_the_advantage_sign_flipped(tmp_path, sign, monkeypatch):
    from plainrl.llm import grpo

    if sign < 0:
        original = grpo.group_advantages
        monkeypatch.setattr(grpo, "group_advantages", lambda *a, **k: -original(*a, **k))
    run = plainrl.train("grpo", environment="tests.llm.test_multi_turn:SecondTurnEnv", model="tiny", seed=0,
                        total_steps=30, prompts_per_step=4, group_size=8, max_new_tokens=4, learning_rate=3e-3,
                        beta=0.0, eval_every=0, eval_n=10, progress=False,
                        run_dir=tmp_path / "grpo")  # fmt: skip
    rewards = [row["reward"] for row in run.metrics]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    if sign > 0:
        assert last > first + 0.3, (first, last)
    else:
        assert last < first, (first, last)


@pytest.mark.slow
def test_ppo_llm_learns_over_conversations(tmp_path):
    """PPO's episode is the conversation: the reward comes on turn 2, so credit must cross the environment's reply
    (GAE bootstraps across it)."""
    run = plainrl.train("ppo-llm", environment="tests.llm.test_multi_turn:SecondTurnEnv", model="tiny", seed=0,
                        total_steps=30, prompts_per_step=16, num_minibatches=2, max_new_tokens=4, learning_rate=3e-3,
                        kl_coef=0.0, eval_every=0, eval_n=10, progress=False, run_dir=tmp_path / "ppo")  # fmt: skip
    rewards = [row["reward"] for row in run.metrics]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.3
    assert run.metrics[-1]["turns"] == 2.0


def test_the_python_api_takes_an_environment_class_or_factory_and_refuses_trainers_without_conversations(tmp_path):
    quick = dict(model="tiny", total_steps=1, prompts_per_step=2, group_size=2, max_new_tokens=2, eval_n=2,
                 progress=False)  # fmt: skip
    by_class = plainrl.train("grpo", environment=SecondTurnEnv, run_dir=tmp_path / "class", **quick)
    assert 'environment = "tests.llm.test_multi_turn:SecondTurnEnv"' in (by_class.path / "config.toml").read_text()
    by_factory = plainrl.train("grpo", environment=lambda: ReplyEnv(), run_dir=tmp_path / "factory", **quick)
    assert by_factory.metrics[-1]["turns"] == 3.0  # ReplyEnv's three turns
    with pytest.raises(ConfigError, match="dpo does not train on environments .* these do: .*grpo"):
        plainrl.train("dpo", environment="guess", progress=False)


def test_replies_to_a_chat_model_are_what_its_template_writes_between_two_assistant_turns():
    """The tokens after an assistant turn are the template's own: its end-of-turn text (less the EOS the model
    already wrote), the reply as the template renders it, and the opening of the next assistant turn."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from plainrl.llm.hf import HFTokenizer

    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")  # fmt: skip
    vocab = {c: i for i, c in enumerate(["<unk>", "<eos>", *"abcdefghijklmnopqrstuvwxyz<>|\n 0123456789"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>", chat_template=template)
    tokenizer = HFTokenizer(hf, (1,))
    reply = [{"role": "user", "content": "higher"}]
    assert hf.decode(environment_ids(tokenizer, reply, after_eos=True)) == "\n<|user|>higher<eos>\n<|assistant|>"
    assert hf.decode(environment_ids(tokenizer, reply, after_eos=False)) == "<eos>\n<|user|>higher<eos>\n<|assistant|>"
    # the conversation as the template writes it whole: opening, the model's turn + EOS, the reply's tokens
    opening = [{"role": "user", "content": "guess"}]
    whole = hf.apply_chat_template([*opening, {"role": "assistant", "content": "50"}, *reply], tokenize=False,
                                   add_generation_prompt=True)  # fmt: skip
    pieces = tokenizer.prompt_ids(ChatPrompt(opening)) + tokenizer.encode("50") + [1]
    assert hf.decode(pieces + environment_ids(tokenizer, reply, after_eos=True)) == whole
