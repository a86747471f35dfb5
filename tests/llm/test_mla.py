"""Multi-head latent attention (DeepSeek-V2) in the built-in model: what its cache holds, cached decoding against the
full forward, a hand-written reference of one layer, and the cache sizes of MHA, GQA, MQA and MLA."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from plainrl.llm.generate import SamplingParams, completion_logprobs, generate
from plainrl.llm.model import ModelConfig, Transformer, apply_rope, rope_cos_sin
from plainrl.llm.tokenizer import CharTokenizer

MLA = ModelConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=64, attention="mla", kv_latent_dim=12,
                  rope_dim=6)  # fmt: skip


def test_the_cache_keeps_the_latent_and_the_rope_key_only():
    model = Transformer(MLA)
    cache = model.new_cache(batch_size=3, max_len=10)
    assert [tuple(t.shape) for t in (cache.keys[0], cache.values[0])] == [(3, 1, 10, 12), (3, 1, 10, 6)]
    assert cache.bytes_per_token() == (12 + 6) * 2 * 4  # (latent + rope) x layers x fp32 bytes, per row
    gqa = Transformer(dataclasses.replace(MLA, attention="gqa", n_kv_heads=2)).new_cache(3, 10)
    assert gqa.bytes_per_token() == 2 * (2 * 8) * 2 * 4  # keys and values: n_kv_heads x head_dim each


def test_cached_decoding_equals_the_full_forward(device):
    torch.manual_seed(0)
    model = Transformer(MLA).eval().to(device)
    tokens = torch.randint(0, 50, (2, 12), device=device)
    full = model(tokens)
    cache = model.new_cache(2, 12)
    pieces = [model(tokens[:, :5], cache=cache)] + [model(tokens[:, t : t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


def test_the_rollout_engine_runs_mla_in_every_decode_mode(device):
    chars = CharTokenizer()
    torch.manual_seed(1)
    model = Transformer(dataclasses.replace(MLA, vocab_size=chars.vocab_size)).eval().to(device)
    prompts = [chars.prompt_ids(p) for p in ("12+34=", "1+2=", "99*99=")]
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    rollouts = {mode: generate(model, chars, prompts, params, torch.Generator(device).manual_seed(0), decode=mode)
                for mode in ("dynamic", "static")}  # fmt: skip
    assert torch.equal(rollouts["dynamic"].completion_ids, rollouts["static"].completion_ids)
    forward = completion_logprobs(model, rollouts["dynamic"])  # padded prompts, teacher-forced
    torch.testing.assert_close(forward, rollouts["dynamic"].logprobs, atol=1e-4, rtol=1e-4)


def test_one_layer_against_a_hand_written_reference():
    """softmax([q_C; q_R] . [W_UK c; RoPE(W_KR x)] / sqrt(d + r)) W_UV c, causal, head by head."""
    torch.manual_seed(0)
    attn = Transformer(MLA).layers[0].self_attn
    x = torch.randn(1, 5, 32)
    cos, sin = rope_cos_sin(torch.arange(5)[None], 6, 10_000.0)
    c = attn.kv_norm(attn.kv_down_proj(x))  # (1, 5, 12)
    k_rope = apply_rope(attn.k_rope_proj(x)[:, None], cos, sin)[:, 0]  # (1, 5, 6)
    heads = []
    for h in range(4):
        rows = slice(8 * h, 8 * h + 8)
        q_c = x @ attn.q_proj.weight[rows].T
        q_r = apply_rope((x @ attn.q_rope_proj.weight[6 * h : 6 * h + 6].T)[:, None], cos, sin)[:, 0]
        k_c, v = c @ attn.k_up_proj.weight[rows].T, c @ attn.v_up_proj.weight[rows].T
        scores = (q_c @ k_c.transpose(1, 2) + q_r @ k_rope.transpose(1, 2)) / math.sqrt(8 + 6)
        scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
        heads.append(F.softmax(scores, -1) @ v)
    want = attn.o_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x, cos, sin, None, None), want, atol=1e-5, rtol=1e-4)


def cache_bytes(attention: str, n_kv_heads: int) -> int:
    """Per token, bf16, for SmolLM2-135M's shape (30 layers, 9 heads of 64); MLA as DeepSeek-V2 sizes it: a latent
    of 4 head_dims and a RoPE key of half a head_dim."""
    config = ModelConfig(vocab_size=8, dim=576, n_layers=30, n_heads=9, n_kv_heads=n_kv_heads, hidden_dim=8,
                         attention=attention, kv_latent_dim=256, rope_dim=32)  # fmt: skip
    with torch.device("meta"):
        cache = Transformer(config).new_cache(1, 1)
    return cache.bytes_per_token() // 2  # fp32 on meta; bf16 is half


@pytest.mark.parametrize(
    "attention, n_kv_heads, expected",
    [("gqa", 9, 2 * 9 * 64 * 30 * 2), ("gqa", 3, 2 * 3 * 64 * 30 * 2), ("gqa", 1, 2 * 1 * 64 * 30 * 2),
     ("mla", 9, (256 + 32) * 30 * 2)],
    ids=["MHA", "GQA-3", "MQA", "MLA"],
)  # fmt: skip
def test_cache_sizes_of_mha_gqa_mqa_and_mla_as_docs_llm_md_gives_them(attention, n_kv_heads, expected):
    assert cache_bytes(attention, n_kv_heads) == expected
