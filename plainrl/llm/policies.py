"""Policies by name: loading, the trainable weights checkpoints hold, and `Policy`, what `plainrl.load` gives for
an LLM run.

model, tokenizer = load_policy("tiny", device)             the built-in decoder, randomly initialised
model, tokenizer = load_policy("smollm2-135m", device)     SmolLM2-135M-Instruct (hf.py)
model, tokenizer = load_policy("path/to/hf_folder", ...)   any local Hugging Face causal LM
model, tokenizer = load_policy("runs/sft_...", device)     the trained policy of a plainrl LLM run
model, tokenizer = load_policy("path/to/peft_adapter", ...)  a PEFT LoRA adapter merged into its (local) base model

policy = Policy.load("runs/grpo_...")                      the same, with generate():
policy.generate(["12+34="], max_new_tokens=16, greedy=True) -> ["46"]
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from plainrl.kit import distributed
from plainrl.kit.errors import ConfigError
from plainrl.kit.nets import resolve_device
from plainrl.llm import export
from plainrl.llm.generate import SamplingParams, generate
from plainrl.llm.model import ModelConfig, Transformer
from plainrl.llm.tasks import Example, Task
from plainrl.llm.tokenizer import CharTokenizer

MODEL_NAMES = ("tiny", "smollm2-135m")


def tiny_config(tokenizer: CharTokenizer, **overrides: Any) -> ModelConfig:
    """The from-scratch model: ~0.6M parameters, enough for 2-digit arithmetic."""
    defaults: dict[str, Any] = dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, hidden_dim=384, max_seq_len=64)
    return ModelConfig(vocab_size=tokenizer.vocab_size, **{**defaults, **overrides})


def load_policy(spec: str, device: torch.device | str = "cpu", **tiny_overrides: Any) -> tuple[Any, Any]:
    """(model, tokenizer) for a model name, a Hugging Face folder or a run folder (see the module doc)."""
    if spec == "tiny":
        tokenizer = CharTokenizer()
        return Transformer(tiny_config(tokenizer, **tiny_overrides)).to(device), tokenizer
    if spec == "smollm2-135m":
        from plainrl.llm import hf

        return hf.load_hf(hf.smollm2_folder(), device)
    path = Path(spec)
    if (path / "config.toml").is_file():
        return load_run_policy(path, device)
    if export.is_peft_adapter(path):
        model, tokenizer = load_policy(export.peft_base_model(path), device)
        return export.merge_peft_adapter(model, path), tokenizer
    check_model_spec(spec)
    from plainrl.llm import hf

    return hf.load_hf(path, device)


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a model name, Hugging Face folder or run folder, without loading the model's weights."""
    if spec == "tiny":
        return CharTokenizer()
    from plainrl.llm import hf

    if spec == "smollm2-135m":
        return hf.load_hf_tokenizer(hf.smollm2_folder())
    if (Path(spec) / "config.toml").is_file():
        from plainrl.kit.registry import load_run

        return load_tokenizer(load_run(spec)[2].model)  # type: ignore[attr-defined]
    if export.is_peft_adapter(spec):
        return load_tokenizer(export.peft_base_model(spec))
    check_model_spec(spec)
    return hf.load_hf_tokenizer(spec)


def check_model_spec(spec: str) -> None:
    """Fail early (before any loading) on a model that cannot be one."""
    path = Path(spec)
    if spec in MODEL_NAMES or any((path / name).is_file() for name in ("config.toml", "config.json")):
        return
    if export.is_peft_adapter(path):
        export.peft_base_model(path)  # a base that is not a local folder is one error line
        return
    raise ConfigError(
        f"unknown model {spec!r}: use one of {', '.join(MODEL_NAMES)}, a Hugging Face model folder "
        "(with config.json), a PEFT adapter folder (adapter_config.json) or a plainrl run folder (with config.toml)"
    )


def build_policy(config: Any, device: torch.device | str) -> tuple[Any, Any]:
    """The untrained policy a run's config describes: its base model, with LoRA layers if it asks for them."""
    overrides = {k.removeprefix("tiny_"): v for k, v in vars(config).items() if k.startswith("tiny_")}
    model, tokenizer = load_policy(config.model, device, **(overrides if config.model == "tiny" else {}))
    if getattr(config, "lora_rank", 0) > 0:
        from plainrl.llm.lora import apply_lora

        apply_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout, tuple(config.lora_targets))
    if getattr(config, "gradient_checkpointing", False):
        model.set_gradient_checkpointing(True)
    return model, tokenizer


class TrainableWeights:
    """A model's trained weights alone, as checkpoints hold them (a LoRA run's checkpoint stays small).
    Offers state_dict / load_state_dict, so `run.restore` and `run.maybe_checkpoint` take it like a module."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        trained = {name for name, p in self.model.named_parameters() if p.requires_grad}
        return {name: value for name, value in self.model.state_dict().items() if name in trained}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys  # the rest is the base model
        if unexpected:  # weights of another model: loading them would silently leave this one untrained
            raise ConfigError(f"the checkpoint holds {len(unexpected)} weights this model lacks ({unexpected[0]}, ...)")


def frozen_copy(model: torch.nn.Module, config: Any) -> torch.nn.Module:
    """A frozen copy of a policy (a reference model): in eval mode, without gradients, and in bf16 when the run's
    dtype is bfloat16 (it is only ever read, so it needs no fp32 master copy)."""
    dtype = torch.bfloat16 if getattr(config, "dtype", "float32") == "bfloat16" else None
    return copy.deepcopy(model).eval().requires_grad_(False).to(dtype=dtype)


def checkpointed(optimizer: torch.optim.Optimizer, **models: torch.nn.Module) -> dict[str, Any]:
    """What a trainer's checkpoint holds: each model's trained weights (under the name given) and the optimizer's
    state; for FSDP-sharded models, full states gathered over the ranks (the same weights one process saves)."""
    if not any(distributed.fsdp_modules(model) for model in models.values()):
        return {**{name: TrainableWeights(model) for name, model in models.items()}, "optimizer": optimizer}
    owner = next(iter(models.values())) if len(models) == 1 else torch.nn.ModuleDict(models)  # the optimizer's
    weights = {name: distributed.FullState(model) for name, model in models.items()}
    return {**weights, "optimizer": distributed.FullState(owner, optimizer)}


def load_run_policy(run_dir: Path, device: torch.device | str) -> tuple[Any, Any]:
    """The policy of an LLM run folder: its config's model, with the trained weights of its last checkpoint."""
    from plainrl.kit.registry import load_run
    from plainrl.kit.run import load_checkpoint_file

    _, module, config = load_run(run_dir)
    build = getattr(module, "build_policy", build_policy)  # distill.py: the policy is the draft, not config.model
    model, tokenizer = build(config, device)
    TrainableWeights(model).load_state_dict(load_checkpoint_file(run_dir, map_location=device)["model"])
    return model.eval(), tokenizer


def model_prompt(task: Task, example: Example, tokenizer: Any) -> str:
    """What the model is asked: the chat version for chat models, the bare prompt for models trained here."""
    return task.chat_prompt(example) if getattr(tokenizer, "chat", False) else example.prompt


class Policy:
    """A language model with its tokenizer, ready to generate: what `plainrl.load(llm_run_folder)` returns."""

    def __init__(self, model: Any, tokenizer: Any, spec: str = "") -> None:
        self.model, self.tokenizer, self.spec = model.eval(), tokenizer, spec

    @classmethod
    def load(cls, spec: str, device: str = "auto") -> Policy:
        """A model name (tiny, smollm2-135m), a Hugging Face folder or an LLM run folder."""
        check_model_spec(spec)
        return cls(*load_policy(spec, resolve_device(device)), spec=spec)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: str | Sequence[str], max_new_tokens: int = 64, **sampling: Any) -> list[str]:
        """Completions of the user prompts (the chat template is applied for chat models); `sampling`: the options of
        `generate_with_stats`."""
        return self.generate_with_stats(prompts, max_new_tokens, **sampling)[0]

    @torch.inference_mode()
    def generate_with_stats(
        self, prompts: str | Sequence[str], max_new_tokens: int = 64, temperature: float = 1.0, greedy: bool = False,
        top_k: int = 0, top_p: float = 1.0, stop: Sequence[str] = (), batch_size: int = 16, seed: int = 0,
        draft: Policy | None = None, k: int = 4, adaptive_k: bool = False,
    ) -> tuple[list[str], dict[str, Any]]:  # fmt: skip
        """(completions, {tokens, seconds, tokens_per_second} + the acceptance statistics with a `draft`)."""
        from plainrl.llm.speculative import SpeculativeStats, speculative_generate

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if draft is not None and draft.tokenizer.vocab_size != self.tokenizer.vocab_size:
            raise ConfigError(f"draft {draft.spec!r} has another tokenizer than {self.spec!r}")
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy, top_k=top_k,
                                top_p=top_p, stop_strings=tuple(stop))  # fmt: skip
        generator = torch.Generator(device=self.device).manual_seed(seed)
        stats, texts, tokens, seconds = SpeculativeStats(), [], 0, 0.0
        for start in range(0, len(prompts), batch_size):
            ids = [self.tokenizer.prompt_ids(p) for p in prompts[start : start + batch_size]]
            started = time.perf_counter()
            if draft is None:
                rollout = generate(self.model, self.tokenizer, ids, params, generator)
            else:
                rollout, round_stats = speculative_generate(
                    self.model, draft.model, self.tokenizer, ids, params, k, adaptive_k, generator
                )
                for field in dataclasses.fields(stats):
                    setattr(stats, field.name, getattr(stats, field.name) + getattr(round_stats, field.name))
            seconds += time.perf_counter() - started
            tokens += int(rollout.completion_mask.sum())
            texts += rollout.texts
        summary: dict[str, Any] = {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}
        if draft is not None:
            summary.update(acceptance_rate=stats.acceptance_rate, tokens_per_round=stats.tokens_per_round,
                           mean_k=stats.k_sum / max(stats.rounds, 1))  # fmt: skip
        return texts, summary
