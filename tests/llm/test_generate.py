"""The rollout engine: log-probs equal a teacher-forced forward, padding, stops, sampling filters.
Tests taking `device` run where `pytest --device` says (tests/conftest.py)."""

import pytest
import torch

from plainrl.llm.generate import (
    SamplingParams,
    completion_logprobs,
    completion_logprobs_entropy,
    generate,
    pad_sequences,
    sample_next,
)
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.tokenizer import CharTokenizer

TOKENIZER = CharTokenizer()


def tiny_model(seed: int = 0, device: torch.device | str = "cpu") -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=TOKENIZER.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64)
    return Transformer(config).eval().to(device)


PROMPTS = [TOKENIZER.prompt_ids(p) for p in ("12+34=", "1+2=", "99*99=", "7-8=")]


def test_engine_logprobs_equal_a_teacher_forced_forward(device):
    model = tiny_model(device=device)
    for params in (
        SamplingParams(max_new_tokens=12, temperature=0.7, top_k=20, top_p=0.9),
        SamplingParams(max_new_tokens=12, greedy=True),
    ):
        rollout = generate(model, TOKENIZER, PROMPTS, params, torch.Generator(device).manual_seed(1))
        temperature = 1.0 if params.greedy else params.temperature
        forward = completion_logprobs(model, rollout, temperature)
        assert rollout.completion_mask.any()
        torch.testing.assert_close(forward, rollout.logprobs, atol=1e-4, rtol=1e-4)


def test_trainer_logprobs_share_each_prompt_and_equal_the_full_forward_with_its_gradients(device):
    model = tiny_model(device=device)
    prompts = [p for p in PROMPTS for _ in range(3)]  # each prompt 3 times, as GRPO groups are
    rollout = generate(
        model,
        TOKENIZER,
        prompts,
        SamplingParams(max_new_tokens=12, temperature=0.8),
        torch.Generator(device).manual_seed(2),
    )
    rows = torch.tensor([5, 0, 11, 3, 4, 9], device=device)
    weights = torch.randn(len(rows), rollout.completion_ids.shape[1], device=device)
    logprobs, entropy = completion_logprobs_entropy(model, rollout, rows, temperature=0.8)
    grads = torch.autograd.grad((logprobs * weights).sum(), list(model.parameters()))
    full = completion_logprobs(model, rollout, 0.8)[rows]  # whole rows, each with its own copy of the prompt
    full_grads = torch.autograd.grad((full * weights).sum(), list(model.parameters()))
    torch.testing.assert_close(logprobs, full, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert bool((entropy[rollout.completion_mask[rows]] > 0).all())
    torch.testing.assert_close(logprobs, rollout.logprobs[rows], atol=1e-4, rtol=1e-4)  # the shared prefill too


def test_batched_greedy_equals_one_prompt_at_a_time(device):
    model = tiny_model(device=device)
    params = SamplingParams(max_new_tokens=10, greedy=True)
    batched = generate(model, TOKENIZER, PROMPTS, params)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(model, TOKENIZER, [prompt], params)
        n = int(alone.completion_mask.sum())
        assert batched.completion_ids[row, :n].tolist() == alone.completion_ids[0, :n].tolist()
        # and equal to argmax of a full forward, token by token (no cache)
        ids = list(prompt)
        for token in alone.completion_ids[0, :n].tolist():
            assert int(model(torch.tensor([ids], device=device))[0, -1].argmax()) == token
            ids.append(token)


def test_eos_and_stop_strings_end_rows_and_mask_what_follows(device):
    model = tiny_model(device=device)
    params = SamplingParams(max_new_tokens=8, temperature=1.5)

    def run(tokenizer=TOKENIZER, **changes):
        rollout = generate(model, tokenizer, PROMPTS[:1], SamplingParams(**{**params.__dict__, **changes}),
                           torch.Generator(device).manual_seed(0))  # fmt: skip
        return rollout

    first = run()
    tokens = first.completion_ids[0].tolist()
    cut = next(i for i in range(2, 8) if tokens[i] not in tokens[:i])  # a token that first appears at `cut`
    tokenizer = CharTokenizer()
    tokenizer.eos_ids = (tokens[cut],)  # same draws, now that token is an EOS: the row must end there
    rollout = run(tokenizer)
    assert rollout.finish_reasons == ["eos"]
    assert rollout.completion_ids[0].tolist() == tokens[: cut + 1]
    assert rollout.completion_mask[0].tolist() == [True] * (cut + 1)
    stop = TOKENIZER.decode(tokens[cut - 1 : cut + 1])
    stopped = run(stop_strings=(stop,))
    assert stopped.finish_reasons == ["stop"] and stopped.texts[0].endswith(stop)
    ignoring = run(tokenizer, ignore_eos=True)
    assert ignoring.completion_mask.sum() == 8 and ignoring.finish_reasons == ["length"]


def test_padding_left_and_right():
    ids, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[True] * 3, [False, False, True]]
    ids, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True] * 3, [True, False, False]]


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    tokens, _ = sample_next(logits, SamplingParams(top_k=2), g)
    assert set(tokens.tolist()) == {0, 1}
    tokens, _ = sample_next(logits, SamplingParams(top_p=0.7), g)  # 0.5 + 0.3 >= 0.7: the first two
    assert set(tokens.tolist()) == {0, 1}
    tokens, logprobs = sample_next(logits, SamplingParams(temperature=1.0), g)
    assert set(tokens.tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(logprobs, logits[torch.arange(2000), tokens])
    frequency = (tokens == 0).float().mean()
    assert 0.45 < frequency < 0.55


def test_same_generator_seed_same_samples(device):
    model = tiny_model(device=device)
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    a = generate(model, TOKENIZER, PROMPTS, params, torch.Generator(device).manual_seed(3))
    b = generate(model, TOKENIZER, PROMPTS, params, torch.Generator(device).manual_seed(3))
    assert torch.equal(a.completion_ids, b.completion_ids)


def test_looking_for_finished_rows_every_8_tokens_gives_the_same_rollout(device):
    model = tiny_model(device=device)
    for params in (SamplingParams(max_new_tokens=12, temperature=1.0), SamplingParams(max_new_tokens=12, greedy=True)):
        first = generate(model, TOKENIZER, PROMPTS, params, torch.Generator(device).manual_seed(4))
        tokenizer = CharTokenizer()
        tokenizer.eos_ids = tuple(set(first.completion_ids[:, 2].tolist()))  # every row ends by its 3rd token
        each, eighth = (
            generate(model, tokenizer, PROMPTS, params, torch.Generator(device).manual_seed(4), check_every=every)
            for every in (1, 8)
        )
        assert set(each.finish_reasons) == {"eos"} and each.completion_ids.shape[1] <= 3  # all done early
        assert torch.equal(each.completion_ids, eighth.completion_ids)
        assert torch.equal(each.completion_mask, eighth.completion_mask)
        torch.testing.assert_close(each.logprobs, eighth.logprobs, atol=0, rtol=0)
        assert each.texts == eighth.texts and each.finish_reasons == eighth.finish_reasons


def test_fixed_shape_decoding_and_its_cuda_graph_give_the_tokens_of_dynamic_decoding(device):
    """decode="static" (and "graph" on a GPU, which replays the same fixed-shape step) equals decoding over the
    filled slots: greedy token for token; sampling with the same generator the same tokens, log-probs to rounding.
    Prompts of unequal length (left padding, masked keys) and repeated prompts (a prefill copied to rows)."""
    model = tiny_model(device=device)
    prompts = PROMPTS + PROMPTS[:2]
    modes = ["static"] + (["graph"] if device.type == "cuda" else [])
    for params in (SamplingParams(max_new_tokens=12, greedy=True), SamplingParams(max_new_tokens=12, temperature=1.0)):
        want = generate(model, TOKENIZER, prompts, params, torch.Generator(device).manual_seed(5), decode="dynamic")
        assert want.completion_mask.sum() > 30  # most rows decode past a few tokens
        for mode in modes:
            got = generate(model, TOKENIZER, prompts, params, torch.Generator(device).manual_seed(5), decode=mode)
            assert torch.equal(got.completion_ids, want.completion_ids), mode
            assert torch.equal(got.completion_mask, want.completion_mask), mode
            torch.testing.assert_close(got.logprobs, want.logprobs, atol=1e-5, rtol=1e-5)


def test_a_decode_mode_that_cannot_run_is_one_clear_error():
    from plainrl.kit.errors import ConfigError

    model = tiny_model()
    for mode, message in (("fast", "is not one of auto, dynamic, static, graph"), ("graph", "needs a CUDA device")):
        with pytest.raises(ConfigError, match=message):
            generate(model, TOKENIZER, PROMPTS, SamplingParams(max_new_tokens=2), decode=mode)
