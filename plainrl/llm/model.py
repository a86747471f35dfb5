"""A LLaMA-style decoder written out: RMSNorm, rotary positions (RoPE), grouped-query attention, SwiGLU, KV cache.

    x = embed(tokens)                                       (B, T, dim)
    for each layer:
        x = x + attention(rms_norm(x))                      q, k rotated by RoPE; k, v shared by groups of q heads
        x = x + mlp(rms_norm(x))                            down(silu(gate(x)) * up(x))
    logits = rms_norm(x) @ embed.weight.T                   tied embeddings (or a separate lm_head)

The same class runs the tiny models trained from scratch and Llama-architecture Hugging Face checkpoints such as
SmolLM2 (hf.py copies their weights in): the layer names (q_proj, ..., down_proj) and the RoPE convention
(rotate the two halves of each head) are Hugging Face's, so weights and LoRA target names carry over unchanged.

The interface every policy model offers (hf.py wraps other Hugging Face models in it):

    logits = model(tokens, positions, key_mask, cache, last_only)
        tokens    (B, T) token ids
        positions (B, T) RoPE positions (left-padded rows start later); default 0..T-1 after the cache
        key_mask  (B, S) True where a key slot holds a real token, S = tokens in the cache + T; default all True
        cache     model.new_cache(batch_size, max_len) or None; the new keys and values are appended to it
        last_only logits of the last position only, (B, 1, V): what decoding needs, at a fraction of the cost

The built-in model also decodes with fixed shapes, which is what a CUDA graph needs (graphs.py):

    logits = model(tokens, positions, key_mask, cache, last_only, slots=slots)
        slots     (T,) a device tensor: the cache slots the T tokens are written to; key_mask is then (B, max_len)
                  over the whole cache and attention reads all of it (masked), so no shape depends on the step.
                  cache.length is left to the caller: a replayed graph runs kernels, not Python.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelConfig:
    vocab_size: int = 128
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2  # n_heads / n_kv_heads query heads share each key/value head (GQA); == n_heads is MHA
    hidden_dim: int = 384  # SwiGLU width
    max_seq_len: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    attention: str = "gqa"  # gqa (n_kv_heads key/value heads; = n_heads: MHA, 1: MQA) | mla (DeepSeek-V2's latent)
    kv_latent_dim: int = 32  # mla: the latent c_KV each token's keys and values are rebuilt from
    rope_dim: int = 16  # mla: the decoupled RoPE key, shared by the heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def rope_width(self) -> int:
        """How many dimensions of a head RoPE rotates: all of them, or MLA's decoupled rope_dim."""
        return self.rope_dim if self.attention == "mla" else self.head_dim

    def cache_entries(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """What the KV cache keeps per token and layer, as (heads, width) for its two tensors: keys and values
        (GQA), or the latent c_KV and the RoPE key (MLA)."""
        if self.attention == "mla":
            return (1, self.kv_latent_dim), (1, self.rope_dim)
        return (self.n_kv_heads, self.head_dim), (self.n_kv_heads, self.head_dim)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without the mean subtraction and the bias."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles position * theta^(-2i/head_dim), each (B, 1, T, head_dim)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq  # (B, T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # the same angle for dimension i and i + head_dim/2
    return angles.cos()[:, None].to(dtype), angles.sin()[:, None].to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + d/2]) of x (B, H, T, d) by its angle. Then q_m . k_n depends on m - n only."""
    half = x.shape[-1] // 2
    rotated_half = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated_half * sin


class KVCache:
    """Keys and values of every layer, preallocated: (B, n_kv_heads, max_len, head_dim) each; for MLA the latent
    (B, 1, max_len, kv_latent_dim) in `keys` and the RoPE key (B, 1, max_len, rope_dim) in `values`.

    Rows advance in lock-step (prompts are left-padded), so one `length` says how many slots are filled.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device: torch.device, dtype: torch.dtype):
        (key_heads, key_width), (value_heads, value_width) = config.cache_entries()
        key_shape, value_shape = (
            (batch_size, key_heads, max_len, key_width),
            (batch_size, value_heads, max_len, value_width),
        )
        self.keys = [torch.zeros(key_shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.zeros(value_shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.length = 0  # slots filled by earlier forward calls
        self.max_len = max_len

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_kv, T, d) after the filled slots; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} tokens > max_len = {self.max_len}")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def bytes_per_token(self) -> int:
        """Cache memory per token, over all layers."""
        return sum(t[0, :, 0].numel() * t.element_size() for t in (*self.keys, *self.values))

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Write k, v (B, n_kv, T, d) into the slots `slots` (T,); return the whole cache (B, n_kv, max_len, d)."""
        self.keys[layer].index_copy_(2, slots, k)
        self.values[layer].index_copy_(2, slots, v)
        return self.keys[layer], self.values[layer]

    def select(self, rows: torch.Tensor, max_len: int | None = None) -> KVCache:
        """A cache whose row i is this cache's row rows[i] (with room for max_len tokens, default the same): one
        prefill of a prompt serves all its copies. Differentiable: gradients reach the rows it copied."""
        picked = copy.copy(self)
        picked.max_len = max_len or self.max_len

        def take(t: torch.Tensor) -> torch.Tensor:
            filled = t[rows, :, : self.length]
            return torch.cat(
                [filled, filled.new_zeros(filled.shape[:2] + (picked.max_len - self.length,) + filled.shape[3:])], 2
            )

        picked.keys, picked.values = [take(k) for k in self.keys], [take(v) for v in self.values]
        return picked


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, d)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None and slots is not None:  # fixed shapes: the whole cache, the mask says which count
            k, v = cache.write(self.layer_index, slots, k, v)  # (B, H_kv, max_len, d)
        elif cache is not None:
            k, v = cache.append(self.layer_index, k, v)  # (B, H_kv, S, d): the past and these T tokens
        # softmax(q k^T / sqrt(d) + mask) v; mask None means plain causal over these T tokens. With GQA each
        # key/value head serves n_heads / n_kv_heads consecutive query heads (enable_gqa: without copying k, v).
        grouped = self.n_kv_heads != self.n_heads
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and T > 1, enable_gqa=grouped
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class LatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section 2.1): keys and values are rebuilt from a
    small latent per token, so the cache keeps the latent and one RoPE key instead of every head's keys and values.

        c_KV = W_DKV x                     (kv_latent_dim)          cached
        k_C  = W_UK c_KV,  v = W_UV c_KV   (n_heads x head_dim)     rebuilt from the cache at every step
        k_R  = RoPE(W_KR x)                (rope_dim, one for all heads: RoPE cannot be absorbed into W_UK)  cached
        q_C  = W_Q x,  q_R = RoPE(W_QR x)  (n_heads x head_dim, n_heads x rope_dim)
        head h: softmax([q_C; q_R]_h . [k_C; k_R]_h / sqrt(head_dim + rope_dim)) v_h

    Written plainly: k_C and v are up-projected from the cached latents each step (the paper's inference absorbs
    W_UK into the query and W_UV into the output instead; the same numbers, fewer FLOPs).
    """

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_heads, self.head_dim, self.rope_dim = config.n_heads, config.head_dim, config.rope_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=False)
        self.q_rope_proj = nn.Linear(config.dim, config.n_heads * self.rope_dim, bias=False)
        self.kv_down_proj = nn.Linear(config.dim, config.kv_latent_dim, bias=False)
        self.kv_norm = RMSNorm(config.kv_latent_dim, config.norm_eps)
        self.k_up_proj = nn.Linear(config.kv_latent_dim, config.n_heads * self.head_dim, bias=False)
        self.v_up_proj = nn.Linear(config.kv_latent_dim, config.n_heads * self.head_dim, bias=False)
        self.k_rope_proj = nn.Linear(config.dim, self.rope_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)

    def forward(self, x, cos, sin, mask, cache, slots=None) -> torch.Tensor:
        B, T, _ = x.shape
        H, d, r = self.n_heads, self.head_dim, self.rope_dim
        q = self.q_proj(x).view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        q_rope = apply_rope(self.q_rope_proj(x).view(B, T, H, r).transpose(1, 2), cos, sin)  # cos, sin: r wide
        latent = self.kv_norm(self.kv_down_proj(x))[:, None]  # (B, 1, T, kv_latent_dim)
        k_rope = apply_rope(self.k_rope_proj(x)[:, None], cos, sin)  # (B, 1, T, r)
        if cache is not None and slots is not None:
            latent, k_rope = cache.write(self.layer_index, slots, latent, k_rope)  # the whole cache
        elif cache is not None:
            latent, k_rope = cache.append(self.layer_index, latent, k_rope)  # (B, 1, S, .): the past and these T
        S = latent.shape[2]
        k = self.k_up_proj(latent[:, 0]).view(B, S, H, d).transpose(1, 2)  # (B, H, S, d)
        v = self.v_up_proj(latent[:, 0]).view(B, S, H, d).transpose(1, 2)
        q = torch.cat([q, q_rope], dim=-1)  # (B, H, T, d + r)
        k = torch.cat([k, k_rope.expand(B, H, S, r)], dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, H * d))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.down_proj = nn.Linear(config.hidden_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = (LatentAttention if config.attention == "mla" else Attention)(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, cache, slots=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, slots)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList([Block(config, i) for i in range(config.n_layers)])
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.gradient_checkpointing = False  # set_gradient_checkpointing
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2's scaled init of the projections into the residual
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Keep only each block's input for backward and recompute the block there: activation memory of one block
        instead of all, for about one more forward. Applies to forwards without a KV cache."""
        self.gradient_checkpointing = on

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        weight = self.embed_tokens.weight
        return KVCache(self.config, batch_size, max_len, weight.device, weight.dtype)

    @property
    def hidden_size(self) -> int:
        return self.config.dim

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V), or (B, 1, V) with last_only. See the module docstring for the arguments."""
        hidden = self.hidden_states(tokens, positions, key_mask, cache, slots)
        return self.lm_head(hidden[:, -1:] if last_only else hidden)

    def hidden_states(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final normalised hidden states (B, T, dim): what lm_head reads, and what scalar heads
        (reward model, value function) read."""
        if slots is not None:
            return self.fixed_shape_hidden_states(tokens, positions, key_mask, cache, slots)
        B, T = tokens.shape
        past = cache.length if cache is not None else 0
        if positions is None:
            positions = torch.arange(past, past + T, device=tokens.device).expand(B, T)
        cos, sin = rope_cos_sin(
            positions, self.config.rope_width, self.config.rope_theta, self.embed_tokens.weight.dtype
        )
        mask = None
        if key_mask is not None or (past > 0 and T > 1):  # otherwise SDPA's causal flag (or nothing) does it
            mask = attention_mask(key_mask, B, T, past, tokens.device)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            if self.gradient_checkpointing and cache is None and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, None, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache)
        if cache is not None:
            cache.length += T
        return self.norm(x)

    def fixed_shape_hidden_states(self, tokens, positions, key_mask, cache, slots) -> torch.Tensor:
        """hidden_states with the tokens written to cache slots `slots` (T,) and attention over the whole cache:
        query i sees slot j if key_mask[b, j] (B, max_len) and j <= slots[i] (and always itself)."""
        cos, sin = rope_cos_sin(
            positions, self.config.rope_width, self.config.rope_theta, self.embed_tokens.weight.dtype
        )
        all_slots = torch.arange(cache.max_len, device=tokens.device)
        causal = all_slots[None, :] <= slots[:, None]  # (T, max_len)
        mask = (key_mask[:, None, :] & causal) | (all_slots[None, :] == slots[:, None])  # (B, T, max_len)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask[:, None], cache, slots)
        return self.norm(x)


def attention_mask(key_mask: torch.Tensor | None, B: int, T: int, past: int, device: torch.device) -> torch.Tensor:
    """(B, 1, T, past + T) bool: query i (slot past + i) sees key slot j if j <= past + i and slot j is real.

    A query always sees itself, so a padding query has a finite (if meaningless) output instead of NaN.
    """
    slots = torch.arange(past + T, device=device)
    query_slots = slots[past:, None]  # (T, 1)
    allowed = slots[None, :] <= query_slots  # (T, S) causal
    if key_mask is not None:
        allowed = (allowed & key_mask[:, None, :]) | (slots[None, :] == query_slots)  # (B, T, S)
    return allowed.expand(B, T, past + T)[:, None]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() lists a tied weight once
