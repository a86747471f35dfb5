"""Speculative sampling is exact: greedy output equals the target's greedy output, and sampled tokens follow the
target's joint distribution (a chi-square test that a wrong residual fails). The module's models run where
`pytest --device` says."""

import itertools
from types import SimpleNamespace

import pytest
import torch

import plainrl
from plainrl.kit.errors import PlainRLError
from plainrl.llm import speculative
from plainrl.llm.generate import SamplingParams, completion_logprobs, generate
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.speculative import choose_k, distribution, speculative_generate
from plainrl.llm.tokenizer import CharTokenizer

TOKENIZER = CharTokenizer()
PROMPTS = [TOKENIZER.prompt_ids(p) for p in ("12+34=", "1+2=", "99*99=", "7-8=", "5")]


def char_model(seed: int, dim: int = 32, n_layers: int = 2) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=TOKENIZER.vocab_size, dim=dim, n_layers=n_layers, n_heads=4, n_kv_heads=2,
                         hidden_dim=2 * dim, tie_embeddings=False)  # fmt: skip
    model = Transformer(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # peaked distributions: greedy paths that mean something
    return model


def noisy_copy(model: Transformer, scale: float, seed: int = 1) -> Transformer:
    """A draft that agrees with the target often but not always."""
    torch.manual_seed(seed)
    draft = Transformer(model.config).eval()
    draft.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(scale * p.std() * torch.randn_like(p))
    return draft


TARGET = char_model(0)
DRAFTS = {
    "close": noisy_copy(TARGET, 0.1),
    "same": TARGET,
    "unrelated": char_model(5, dim=16, n_layers=1),
}


@pytest.fixture(autouse=True)
def models_on_device(device):
    for model in (TARGET, *DRAFTS.values()):
        model.to(device)


@pytest.mark.parametrize("draft_name", list(DRAFTS))
@pytest.mark.parametrize("k", [1, 3, 6])
def test_greedy_equals_the_targets_greedy_output(draft_name, k):
    params = SamplingParams(max_new_tokens=20, greedy=True)
    reference = generate(TARGET, TOKENIZER, PROMPTS, params)
    rollout, stats = speculative_generate(TARGET, DRAFTS[draft_name], TOKENIZER, PROMPTS, params, k=k)
    assert rollout.completion_ids.tolist() == reference.completion_ids.tolist()
    assert rollout.completion_mask.tolist() == reference.completion_mask.tolist()
    assert rollout.finish_reasons == reference.finish_reasons and rollout.texts == reference.texts
    torch.testing.assert_close(rollout.logprobs, reference.logprobs, atol=1e-4, rtol=1e-4)
    if draft_name == "same":
        assert stats.acceptance_rate == 1.0
    if draft_name == "close":
        assert 0.2 < stats.acceptance_rate < 1.0  # both the accept and the reject paths ran


def test_fixed_shape_decoding_and_its_cuda_graphs_give_the_tokens_of_dynamic_decoding(device):
    """decode="static" (and "graph" on a GPU): the draft's steps and the K+1-token verify pass with fixed shapes,
    rejected slots masked instead of cut, give the same tokens as dynamic decoding, greedy and sampled."""
    modes = ["static"] + (["graph"] if device.type == "cuda" else [])
    for params in (SamplingParams(max_new_tokens=20, greedy=True), SamplingParams(max_new_tokens=20, temperature=1.0)):

        def run(mode: str, params: SamplingParams = params):
            generator = torch.Generator(device).manual_seed(7)  # K = 3, then fewer near max_new_tokens: 3 shapes
            return speculative_generate(TARGET, DRAFTS["close"], TOKENIZER, PROMPTS, params, 3, generator=generator,
                                        decode=mode)  # fmt: skip

        want, want_stats = run("dynamic")
        assert 0.2 < want_stats.acceptance_rate < 1.0  # rounds with rejections: slots masked and rewritten
        for mode in modes:
            got, stats = run(mode)
            assert got.completion_ids.tolist() == want.completion_ids.tolist(), mode
            assert got.finish_reasons == want.finish_reasons and stats.accepted == want_stats.accepted
            torch.testing.assert_close(got.logprobs, want.logprobs, atol=1e-5, rtol=1e-5)


def test_greedy_with_eos_stop_strings_and_adaptive_k():
    tokens = generate(TARGET, TOKENIZER, PROMPTS[:1], SamplingParams(max_new_tokens=12, greedy=True))
    tokens = tokens.completion_ids[0].tolist()
    tokenizer = CharTokenizer()
    tokenizer.eos_ids = (tokens[5],)  # the greedy path now ends at its sixth token
    stop = TOKENIZER.decode(tokens[2:4])
    for tok, params in [
        (tokenizer, SamplingParams(max_new_tokens=12, greedy=True)),
        (TOKENIZER, SamplingParams(max_new_tokens=12, greedy=True, stop_strings=(stop,))),
    ]:
        reference = generate(TARGET, tok, PROMPTS, params)
        rollout, _ = speculative_generate(TARGET, DRAFTS["close"], tok, PROMPTS, params, k=4, adaptive=True)
        assert rollout.completion_ids.tolist() == reference.completion_ids.tolist()
        assert rollout.finish_reasons == reference.finish_reasons and rollout.texts == reference.texts
    assert set(reference.finish_reasons) >= {"stop"}


def test_engine_with_a_draft_returns_the_targets_logprobs(device):
    params = SamplingParams(max_new_tokens=12, temperature=0.8, top_k=30, top_p=0.95)
    generator = torch.Generator(device).manual_seed(0)
    rollout = generate(TARGET, TOKENIZER, PROMPTS, params, generator, draft=DRAFTS["close"])
    assert rollout.completion_mask.any()
    forward = completion_logprobs(TARGET, rollout, params.temperature)
    torch.testing.assert_close(forward, rollout.logprobs, atol=1e-4, rtol=1e-4)


def test_bad_drafts_are_refused():
    small_vocab = Transformer(ModelConfig(vocab_size=10, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=16))
    params = SamplingParams(max_new_tokens=4)
    with pytest.raises(PlainRLError, match="vocabulary"):
        speculative_generate(TARGET, small_vocab, TOKENIZER, PROMPTS, params)
    with pytest.raises(PlainRLError, match="k = 0"):
        speculative_generate(TARGET, TARGET, TOKENIZER, PROMPTS, params, k=0)


def test_adaptive_k_grows_with_acceptance_and_shrinks_with_draft_cost():
    assert choose_k(0.95, 0.05, 10) > choose_k(0.6, 0.05, 10) > choose_k(0.1, 0.05, 10) == 1
    assert choose_k(0.9, 0.5, 10) < choose_k(0.9, 0.05, 10)


# Exactness in distribution: a 4-token vocabulary, 3 new tokens, 64 joint outcomes.
VOCAB, NEW = 4, 3


def tiny_vocab_model(seed: int, dim: int) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB, dim=dim, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=2 * dim,
                         tie_embeddings=False)  # fmt: skip
    model = Transformer(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.15)  # far from uniform, and the two models far from each other
    return model


def target_joint(model: Transformer, prompt: list[int], params: SamplingParams) -> torch.Tensor:
    """P(t1, t2, t3 | prompt) under the target's sampling distribution, exactly, by full forwards."""
    joint = torch.zeros((VOCAB,) * NEW)
    with torch.no_grad():
        for outcome in itertools.product(range(VOCAB), repeat=NEW):
            ids = torch.tensor([prompt + list(outcome)])
            probs = distribution(model(ids)[0, len(prompt) - 1 : -1], params)  # (NEW, V)
            joint[outcome] = probs[torch.arange(NEW), torch.tensor(outcome)].prod()
    return joint


def chi_square_p_value(target: Transformer, draft: Transformer, params: SamplingParams, k: int, n: int) -> float:
    prompt = [1, 2, 3, 0, 2]
    tokenizer = SimpleNamespace(pad_id=0, eos_ids=(), decode=lambda ids: "")
    rollout, stats = speculative_generate(target, draft, tokenizer, [prompt] * n, params, k=k,
                                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert 0.1 < stats.acceptance_rate < 0.9  # both the accept and the residual paths are exercised
    codes = (rollout.completion_ids * torch.tensor([VOCAB**2, VOCAB, 1])).sum(dim=1)
    observed = torch.bincount(codes, minlength=VOCAB**NEW).double()
    expected = target_joint(target, prompt, params).flatten().double() * n
    cells = expected > 0
    assert observed[~cells].sum() == 0  # nothing outside the target's top-k / top-p support
    statistic = ((observed[cells] - expected[cells]) ** 2 / expected[cells]).sum()
    degrees = int(cells.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(degrees / 2), statistic / 2))


@pytest.mark.parametrize(
    "params, k",
    [(SamplingParams(max_new_tokens=NEW, ignore_eos=True), 2),
     (SamplingParams(max_new_tokens=NEW, ignore_eos=True, temperature=0.7, top_k=3, top_p=0.9), 3)],
)  # fmt: skip
def test_sampled_tokens_follow_the_targets_joint_distribution(params, k, monkeypatch):
    target, draft = tiny_vocab_model(0, 16), tiny_vocab_model(1, 8)
    assert chi_square_p_value(target, draft, params, k, n=10_000) > 1e-3
    monkeypatch.setattr(speculative, "residual", lambda p, q: p)  # the classic bug: resample from p on rejection
    assert chi_square_p_value(target, draft, params, k, n=10_000) < 1e-6


def test_generate_command_prints_text_speed_and_acceptance():
    from typer.testing import CliRunner

    from plainrl.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["generate", "--model", "tiny", "--draft", "tiny", "--prompt", "12+34=",
                                 "--max-new-tokens", "6", "--greedy"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--- 12+34=" in result.output and "tokens/s, acceptance rate" in result.output
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompt", "x", "--temperature", "0"])
    assert result.exit_code == 2 and "--temperature 0.0 must be > 0" in result.output


def test_distill_draft_leaves_a_run_folder_that_loads_as_a_draft(tmp_path, device):
    from plainrl.llm.policies import load_policy

    settings = [
        "n_samples=16",
        "sample_batch_size=8",
        "max_new_tokens=6",
        "batch_size=4",
        "warmup_steps=1",
        "draft_dim=16",
        "draft_n_layers=1",
        "draft_n_heads=2",
        "draft_n_kv_heads=1",
        "draft_hidden_dim=32",
    ]
    run_dir = plainrl.train("distill", task="arithmetic", model="tiny", total_steps=2, set_items=settings,
                            run_dir=tmp_path / "draft", progress=False).path  # fmt: skip
    draft, tokenizer = load_policy(str(run_dir), device)
    assert draft.config.dim == 16 and tokenizer.vocab_size == TOKENIZER.vocab_size
    assert (run_dir / "samples.pt").is_file() and len((run_dir / "metrics.csv").read_text().splitlines()) == 3
    assert plainrl.evaluate(run_dir) == {"step": 2, "samples": 16}  # eval.json: how far the draft trained
    params = SamplingParams(max_new_tokens=8, greedy=True)
    reference = generate(TARGET, TOKENIZER, PROMPTS, params)
    assert generate(TARGET, TOKENIZER, PROMPTS, params, draft=draft).completion_ids.tolist() == (
        reference.completion_ids.tolist()
    )
