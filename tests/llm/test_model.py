"""The decoder's pieces against hand-written references: RoPE, KV cache, GQA. Tests taking `device` run where
`pytest --device` says."""

import math

import torch
import torch.nn.functional as F

from plainrl.llm.model import ModelConfig, Transformer, apply_rope, rope_cos_sin

CONFIG = ModelConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=64)


def test_rope_dot_product_depends_only_on_offset():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> float:
        cos_m, sin_m = rope_cos_sin(torch.tensor([[m]]), 16, 10_000.0)
        cos_n, sin_n = rope_cos_sin(torch.tensor([[n]]), 16, 10_000.0)
        return float((apply_rope(q, cos_m, sin_m) * apply_rope(k, cos_n, sin_n)).sum())

    for offset in (0, 1, 5, 17):
        assert math.isclose(score(3 + offset, 3), score(40 + offset, 40), rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(score(4, 3), score(9, 3), rel_tol=1e-3)  # different offsets, different scores
    norm = float(apply_rope(q, *rope_cos_sin(torch.tensor([[7]]), 16, 10_000.0)).norm())
    assert math.isclose(norm, float(q.norm()), rel_tol=1e-5)  # a rotation keeps lengths


def test_cached_decoding_equals_full_forward(device):
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval().to(device)
    tokens = torch.randint(0, 50, (2, 12), device=device)
    full = model(tokens)
    cache = model.new_cache(2, 12)
    pieces = [model(tokens[:, :5], cache=cache)]  # a prefill of 5, then one token at a time
    pieces += [model(tokens[:, t : t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


def test_left_padding_does_not_change_a_row(device):
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval().to(device)
    tokens = torch.randint(3, 50, (1, 6), device=device)
    alone = model(tokens)[0, -1]
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long, device=device), tokens], dim=1)
    mask = torch.tensor([[False] * 3 + [True] * 6], device=device)
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    torch.testing.assert_close(model(padded, positions, mask)[0, -1], alone, atol=1e-5, rtol=1e-4)


def reference_mha(x, attn, cos, sin):
    """softmax(q k^T / sqrt(d) + causal) v with every head its own k, v: plain multi-head attention."""
    B, T, _ = x.shape
    H, d = attn.n_heads, attn.head_dim
    q = apply_rope(attn.q_proj(x).view(B, T, H, d).transpose(1, 2), cos, sin)
    k = apply_rope(attn.k_proj(x).view(B, T, H, d).transpose(1, 2), cos, sin)
    v = attn.v_proj(x).view(B, T, H, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return attn.o_proj((F.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, H * d))


def test_gqa_with_as_many_kv_heads_as_heads_is_plain_mha():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, n_kv_heads=4, hidden_dim=64)
    attn = Transformer(config).layers[0].self_attn
    x = torch.randn(2, 7, 32)
    cos, sin = rope_cos_sin(torch.arange(7).expand(2, 7), config.head_dim, config.rope_theta)
    torch.testing.assert_close(attn(x, cos, sin, None, None), reference_mha(x, attn, cos, sin), atol=1e-5, rtol=1e-4)


def test_gqa_equals_mha_with_each_kv_head_repeated_for_its_group(device):
    torch.manual_seed(0)
    gqa = Transformer(CONFIG).eval()  # 4 query heads share 2 kv heads
    mha = Transformer(ModelConfig(**{**CONFIG.to_dict(), "n_kv_heads": 4})).eval()
    state = gqa.state_dict()
    d = CONFIG.head_dim
    for name in list(state):
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # (2*d, dim) -> (4*d, dim): kv head h serves q 2h, 2h+1
            state[name] = state[name].view(2, d, -1).repeat_interleave(2, dim=0).reshape(4 * d, -1)
    mha.load_state_dict(state)
    gqa, mha = gqa.to(device), mha.to(device)
    tokens = torch.randint(0, 50, (2, 9), device=device)
    torch.testing.assert_close(gqa(tokens), mha(tokens), atol=1e-5, rtol=1e-4)


def test_tied_embeddings_share_one_tensor():
    model = Transformer(CONFIG)
    assert model.lm_head.weight is model.embed_tokens.weight


def test_gradient_checkpointing_gives_the_same_gradients_and_skips_cached_forwards(device):
    torch.manual_seed(0)
    model = Transformer(CONFIG).train().to(device)
    tokens = torch.randint(0, 50, (3, 10), device=device)

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        model(tokens).float().logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    calls = []
    model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    plain = gradients()
    assert len(calls) == 1
    model.set_gradient_checkpointing(True)
    recomputed = gradients()
    assert len(calls) == 3  # the block ran again in backward: it was checkpointed
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    cache = model.new_cache(3, 10)  # decoding with a cache is never checkpointed (nothing to recompute for)
    torch.testing.assert_close(model(tokens, cache=cache), model(tokens), atol=1e-5, rtol=1e-4)
