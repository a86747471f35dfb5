"""LoRA (Hu et al. 2021, arXiv 2106.09685): train a low-rank update of frozen linear layers.

    y = W x + (alpha / r) * B A dropout(x)        W (out, in) frozen; A (r, in), B (out, r) trained
    A starts random and B at zero, so training starts from exactly the base model.
    merge:   W <- W + (alpha / r) B A            (then inference costs nothing extra)
    unmerge: W <- W - (alpha / r) B A

Works on any model whose target layers are nn.Linear: the built-in Transformer and Hugging Face models
(both name them q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plainrl.kit.errors import ConfigError

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        weight = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=weight.device, dtype=weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale  # (out, in)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def apply_lora(
    model: nn.Module, rank: int, alpha: float = 16.0, dropout: float = 0.0, targets: tuple[str, ...] = ALL_LINEAR
) -> list[str]:
    """Replace every nn.Linear whose name ends with a target by a LoRALinear; freeze everything else.

    Returns the names of the wrapped layers.
    """
    if rank < 1:
        raise ConfigError(f"lora_rank = {rank} must be >= 1")
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.split(".")[-1] in targets
    ]
    if not names:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"no linear layer matches lora targets {list(targets)}; this model has: {linear}")
    for param in model.parameters():
        param.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    return names


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name.split(".")[-1]}


def save_adapters(model: nn.Module, folder: str | Path, weights: dict[str, torch.Tensor] | None = None) -> None:
    """The adapters alone (a few MB at most): adapter.safetensors + adapter_config.json. `weights`: the adapters'
    full values when the model's own are FSDP shards (gathered by the caller)."""
    from safetensors.torch import save_file

    layers = lora_layers(model)
    if not layers:
        raise ConfigError("the model has no LoRA layers to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = lora_state_dict(model) if weights is None else weights
    save_file({k: v.contiguous().cpu() for k, v in weights.items()}, str(folder / "adapter.safetensors"))
    targets = sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, LoRALinear)})
    first = layers[0]
    config = {"rank": first.rank, "alpha": first.alpha, "targets": targets}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))


def load_adapters(model: nn.Module, folder: str | Path) -> dict[str, Any]:
    """Add LoRA layers as saved (if the model has none yet) and load their weights. Returns the adapter config."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    if not lora_layers(model):
        apply_lora(model, config["rank"], config["alpha"], 0.0, tuple(config["targets"]))
    device = next(model.parameters()).device
    weights = {k: v.to(device) for k, v in load_file(str(folder / "adapter.safetensors")).items()}
    missing = set(weights) - set(dict(model.named_parameters()))
    if missing:
        raise ConfigError(f"adapter weights do not fit this model: {sorted(missing)[:3]} ...")
    model.load_state_dict(weights, strict=False)
    return config
