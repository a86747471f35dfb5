"""A trained policy in Hugging Face format, and PEFT adapters both ways: what transformers, vLLM, llama.cpp's
converters and the Hub read.

    plainrl export RUN --out DIR                   the run's policy as a save_pretrained folder
    plainrl export RUN --out DIR --merge-lora      a LoRA run merged into its base model (W + (alpha / r) B A)
    plainrl.export(RUN, DIR, merge_lora=False)     a LoRA run as a PEFT adapter folder (the default for LoRA runs)

    transformers.AutoModelForCausalLM.from_pretrained(DIR)            a full export
    peft.PeftModel.from_pretrained(base, DIR)                         an adapter export on its base model
    --model DIR / load_policy(DIR)                                    an adapter folder, loaded back: base + adapter

What a folder holds: model.safetensors, config.json, generation_config.json (EOS, BOS, pad ids) and the tokenizer
files. The built-in model is written as a LlamaForCausalLM: its layer names are Llama's with `model.` in front, its
RoPE is Llama's (rotate the two halves of each head), so the weights go over unchanged. Its character tokenizer is
written as a `tokenizers` tokenizer: every character one token, the same ids, <bos> in front of a prompt. A model
that came from Hugging Face keeps its own tokenizer files (and chat template). Greedy completions of the export
equal plainrl's token for token (tests/llm/test_export.py).

A PEFT adapter folder holds adapter_config.json (peft_type LORA, r, lora_alpha, target_modules,
base_model_name_or_path) and adapter_model.safetensors with PEFT's names
(base_model.model.<module>.lora_A.weight). Its base model is the run's `model`: a Hugging Face folder is named as
it is; a plainrl run folder or the built-in model is exported beside the adapter, into DIR/base, and named there.
"""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plainrl.kit.errors import ConfigError
from plainrl.llm.hf import HFCausalLM, HFTokenizer
from plainrl.llm.lora import LoRALinear, apply_lora, lora_layers
from plainrl.llm.model import Transformer
from plainrl.llm.tokenizer import SPECIALS, CharTokenizer

ADAPTER_PREFIX = "base_model.model."  # PEFT's names: the PeftModel's base_model (a LoraModel) wraps .model


def export_policy(model: nn.Module, tokenizer: Any, base_model: str, out: Path, merge_lora: bool) -> Path:
    """Write a policy to `out`: merged (or without LoRA layers) as a save_pretrained folder, or its LoRA layers as
    a PEFT adapter on `base_model` (a Hugging Face folder; other bases are exported into out/base)."""
    if not lora_layers(model) or merge_lora:
        return save_pretrained(merged_copy(model), tokenizer, out)
    base = Path(base_model)
    if not (base / "config.json").is_file():  # the built-in model or a plainrl run: export the base weights too
        base = save_pretrained(base_copy(model), tokenizer, out / "base")
    save_peft_adapter(model, out, base.resolve())
    save_tokenizer(tokenizer, out)
    return out


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of the model with every LoRA layer merged into its base weight: W + (alpha / r) B A, as nn.Linear."""
    merged = copy.deepcopy(model)
    for layer in lora_layers(merged):
        layer.merge()
    return without_lora_layers(merged)


def base_copy(model: nn.Module) -> nn.Module:
    """A copy of the base model the LoRA layers were trained on: W alone."""
    base = copy.deepcopy(model)
    for layer in lora_layers(base):
        layer.unmerge()
    return without_lora_layers(base)


def without_lora_layers(model: nn.Module) -> nn.Module:
    """Every LoRALinear replaced by its base nn.Linear (in place); all weights trainable again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.base)
    return model.requires_grad_(True)


def save_pretrained(model: nn.Module, tokenizer: Any, out: Path) -> Path:
    """A transformers folder of a model without LoRA layers: the built-in one as LlamaForCausalLM."""
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, HFCausalLM):
        hf_model = model.hf
    elif isinstance(model, Transformer):
        hf_model = to_hf_llama(model, tokenizer)
    else:
        raise ConfigError(f"cannot export a {type(model).__name__}")
    hf_model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_id, eos_token_id=list(tokenizer.eos_ids), pad_token_id=tokenizer.pad_id
    )
    hf_model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def to_hf_llama(model: Transformer, tokenizer: Any) -> Any:
    """The built-in Transformer as a transformers LlamaForCausalLM with the same weights (fp32, on the CPU)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    if c.attention != "gqa":
        raise ConfigError(
            f"a model with attention = {c.attention!r} has no Llama counterpart in transformers to export to"
        )
    rope: dict[str, Any] = {"rope_theta": c.rope_theta}  # transformers 4; 5 names it in rope_parameters
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        rope = {"rope_parameters": {"rope_theta": c.rope_theta, "rope_type": "default"}}
    config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.hidden_dim, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings,
        **rope, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_ids[0],
        pad_token_id=tokenizer.pad_id,
    )  # fmt: skip
    with torch.device("meta"):
        hf_model = LlamaForCausalLM(config)
    state = {
        (n if n == "lm_head.weight" else "model." + n): t.detach().float().cpu() for n, t in model.state_dict().items()
    }
    hf_model.load_state_dict(state, strict=True, assign=True)
    if c.tie_embeddings:
        hf_model.tie_weights()
    return hf_model.eval()


def save_tokenizer(tokenizer: Any, out: Path) -> None:
    if isinstance(tokenizer, HFTokenizer):
        tokenizer.tokenizer.save_pretrained(out)
    elif isinstance(tokenizer, CharTokenizer):
        char_tokenizer_for_transformers(tokenizer).save_pretrained(out)
    else:
        raise ConfigError(f"cannot export a {type(tokenizer).__name__}")


def char_tokenizer_for_transformers(tokenizer: CharTokenizer) -> Any:
    """The character tokenizer as a transformers fast tokenizer: each character its own token, the same ids,
    <bos> prepended to every encoded text (as CharTokenizer.prompt_ids does), decoding by concatenation."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos = SPECIALS
    backend = Tokenizer(models.WordLevel(dict(tokenizer.ids), unk_token=pad))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    backend.decoder = decoders.Fuse()  # tokens joined without spaces
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad)


def save_peft_adapter(model: nn.Module, out: Path, base_model: Path) -> None:
    """The LoRA layers of `model` as a PEFT adapter folder on `base_model` (its absolute path)."""
    from safetensors.torch import save_file

    layers = {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}
    weights: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        module = hf_module_name(model, name)
        weights[f"{ADAPTER_PREFIX}{module}.lora_A.weight"] = layer.lora_A.detach().float().cpu().contiguous()
        weights[f"{ADAPTER_PREFIX}{module}.lora_B.weight"] = layer.lora_B.detach().float().cpu().contiguous()
    first = next(iter(layers.values()))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_model),
        "r": first.rank, "lora_alpha": first.alpha, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "target_modules": sorted({name.split(".")[-1] for name in layers}), "inference_mode": True,
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "init_lora_weights": True,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))


def hf_module_name(model: nn.Module, name: str) -> str:
    """A layer's name in the transformers model: `model.` + the built-in name, or the wrapped model's own."""
    return name.removeprefix("hf.") if isinstance(model, HFCausalLM) else "model." + name


def is_peft_adapter(folder: str | Path) -> bool:
    path = Path(folder) / "adapter_config.json"
    return path.is_file() and json.loads(path.read_text()).get("peft_type") == "LORA"


def peft_base_model(folder: str | Path) -> str:
    """The base model an adapter folder names: a local folder (nothing is downloaded), else one error line."""
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    base = str(config.get("base_model_name_or_path") or "")
    if not (Path(base) / "config.json").is_file() and not (Path(base) / "config.toml").is_file():
        raise ConfigError(
            f"the adapter {str(folder)!r} is on base model {base!r}, which is not a local model folder (nothing is "
            "downloaded): set base_model_name_or_path in its adapter_config.json to a local copy"
        )
    return base


def merge_peft_adapter(model: nn.Module, folder: str | Path) -> nn.Module:
    """The base `model` with the PEFT LoRA adapter in `folder` merged into its weights (a plain model again)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("use_dora") or config.get("use_rslora") or config.get("bias", "none") != "none":
        raise ConfigError(f"the adapter {str(folder)!r} uses DoRA, rsLoRA or biases: plainrl loads plain LoRA only")
    targets = config["target_modules"]
    targets = [targets] if isinstance(targets, str) else targets
    apply_lora(model, int(config["r"]), float(config["lora_alpha"]), 0.0, tuple(targets))
    names = {hf_module_name(model, n): n for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    device = next(model.parameters()).device
    state = {}
    for key, value in load_file(str(folder / "adapter_model.safetensors")).items():
        module, _, part = key.removeprefix(ADAPTER_PREFIX).rpartition(".lora_")
        matrix = part.split(".")[0]  # "A.weight" or "A.default.weight" -> "A"
        if module not in names or matrix not in ("A", "B"):
            raise ConfigError(f"adapter weight {key!r} names no LoRA layer of its base model")
        state[f"{names[module]}.lora_{matrix}"] = value.to(device)
    missing = {f"{n}.lora_{m}" for n in names.values() for m in "AB"} - set(state)
    if missing:
        raise ConfigError(f"the adapter {str(folder)!r} lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, strict=False)
    return merged_copy(model).eval()
