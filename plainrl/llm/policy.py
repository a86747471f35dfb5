"""Policies by name, and their accuracy on a task.

model, tokenizer = load_policy("tiny", device)             the built-in decoder, randomly initialised
model, tokenizer = load_policy("smollm2-135m", device)     SmolLM2-135M-Instruct (hf.py)
model, tokenizer = load_policy("path/to/hf_folder", ...)   any local Hugging Face causal LM
model, tokenizer = load_policy("runs/sft_...", device)     the trained policy of a plainrl LLM run

result = evaluate_policy(model, tokenizer, task, task.test[:200], SamplingParams(greedy=True))
result["accuracy"], result["samples"]                      every prompt, completion, extracted answer, verdict
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plainrl.kit.config import BaseConfig, require
from plainrl.kit.errors import ConfigError
from plainrl.llm.generate import SamplingParams, generate_texts
from plainrl.llm.lora import ALL_LINEAR
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
        from plainrl.llm.runs import run_config

        return load_tokenizer(run_config(spec)[2].model)  # type: ignore[attr-defined]
    check_model_spec(spec)
    return hf.load_hf_tokenizer(spec)


def check_model_spec(spec: str) -> None:
    """Fail early (before any loading) on a model that cannot be one."""
    path = Path(spec)
    if spec in MODEL_NAMES or (path / "config.toml").is_file() or (path / "config.json").is_file():
        return
    raise ConfigError(
        f"unknown model {spec!r}: use one of {', '.join(MODEL_NAMES)}, a Hugging Face model folder "
        "(with config.json) or a plainrl run folder (with config.toml)"
    )


@dataclass
class LoraConfig(BaseConfig):
    """The fields of every LLM trainer that trains a policy or a trunk: LoRA adapters (rank > 0) or all weights."""

    lora_rank: int = 0  # 0: train all weights
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ALL_LINEAR

    def validate(self) -> None:
        super().validate()
        require(self.lora_rank >= 0, f"lora_rank = {self.lora_rank} must be >= 0")
        require(0 <= self.lora_dropout < 1, f"lora_dropout = {self.lora_dropout} must be in [0, 1)")


def build_policy(config: Any, device: torch.device | str) -> tuple[Any, Any]:
    """The untrained policy a run's config describes: its base model, with LoRA layers if it asks for them."""
    overrides = {k.removeprefix("tiny_"): v for k, v in vars(config).items() if k.startswith("tiny_")}
    if config.model in (None, ""):
        raise ConfigError("model must be set")
    model, tokenizer = load_policy(config.model, device, **(overrides if config.model == "tiny" else {}))
    if getattr(config, "lora_rank", 0) > 0:
        from plainrl.llm.lora import apply_lora

        apply_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout, tuple(config.lora_targets))
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
        self.model.load_state_dict(state, strict=False)  # the rest is the base model


def load_run_policy(run_dir: Path, device: torch.device | str) -> tuple[Any, Any]:
    """The policy of an LLM run folder: its config's model, with the trained weights of its last checkpoint."""
    from plainrl.kit.run import load_checkpoint_file
    from plainrl.llm.runs import run_config

    _, module, config = run_config(run_dir)
    build = getattr(module, "build_policy", build_policy)  # distill.py: the policy is the draft, not config.model
    model, tokenizer = build(config, device)
    TrainableWeights(model).load_state_dict(load_checkpoint_file(run_dir, map_location=device)["model"])
    return model.eval(), tokenizer


def model_prompt(task: Task, example: Example, tokenizer: Any) -> str:
    """What the model is asked: the chat version for chat models, the bare prompt for models trained here."""
    return task.chat_prompt(example) if getattr(tokenizer, "chat", False) else example.prompt


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    task: Task,
    examples: list[Example],
    params: SamplingParams,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Accuracy on `examples`, and one record per example: prompt, completion, extracted answer, verdict."""
    was_training = model.training
    model.eval()
    prompts = [model_prompt(task, example, tokenizer) for example in examples]
    completions = generate_texts(model, tokenizer, prompts, params, batch_size, generator)
    model.train(was_training)
    samples: list[dict[str, Any]] = []
    for example, prompt, completion in zip(examples, prompts, completions, strict=True):
        correct = task.is_correct(completion, example.answer, **example.columns)
        samples.append(
            dict(prompt=prompt, completion=completion, extracted=task.extract_answer(completion),
                 answer=example.answer, correct=correct)
        )  # fmt: skip
    accuracy = sum(1 for s in samples if s["correct"]) / max(len(samples), 1)
    return {"accuracy": accuracy, "n": len(samples), "samples": samples}


def eval_llm(
    model_spec: str, task_spec: str, n: int, params: SamplingParams, batch_size: int, device: str, seed: int,
    out: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`plainrl eval-llm`: accuracy on the first n held-out examples; prints `accuracy = X`, writes a JSON file."""
    import json

    from plainrl.kit.nets import resolve_device
    from plainrl.llm.tasks import make_task

    task = make_task(task_spec)
    check_model_spec(model_spec)
    if n < 1:
        raise ConfigError(f"--n {n} must be >= 1")
    if n > len(task.test):
        raise ConfigError(f"--n {n} is more than the {len(task.test)} held-out examples of {task_spec!r}")
    torch.manual_seed(seed)
    model, tokenizer = load_policy(model_spec, resolve_device(device))
    started = time.perf_counter()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    result = evaluate_policy(model, tokenizer, task, task.test[:n], params, batch_size, generator)
    seconds = time.perf_counter() - started
    if out is None:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{Path(model_spec).name}_{task_spec}")
        out = Path(model_spec) / "eval_llm.json" if (Path(model_spec) / "config.toml").is_file() else None
        out = out or Path("runs") / f"eval-llm_{safe}_n{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": model_spec, "task": task_spec, "split": "test", "sampling": vars(params), "seconds": seconds,
              **result}  # fmt: skip
    out.write_text(json.dumps(record, indent=1))
    n_correct = sum(1 for sample in result["samples"] if sample["correct"])
    print(f"accuracy = {result['accuracy']:.4f} ({n_correct}/{n}, "
          f"{seconds:.1f} s) -> {out}")  # fmt: skip
    return record


def generate_command(
    model_spec: str, prompts: list[str], task_spec: str | None, n: int, params: SamplingParams, draft_spec: str | None,
    k: int, adaptive: bool, batch_size: int, device: str, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """`plainrl generate`: completions of the prompts (or of a task's first n held-out questions), with tokens/s
    and, with a draft model, speculative sampling's acceptance rate."""
    from plainrl.kit.nets import resolve_device
    from plainrl.llm.speculative import SpeculativeStats, speculative_generate

    check_model_spec(model_spec)
    if draft_spec is not None:
        check_model_spec(draft_spec)
    if k < 1:
        raise ConfigError(f"--k {k} must be >= 1")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    if not prompts and task_spec is None:
        raise ConfigError("give --prompt TEXT (repeatable) or --task TASK")
    torch.manual_seed(seed)
    model, tokenizer = load_policy(model_spec, resolve_device(device))
    model.eval()
    draft = None
    if draft_spec is not None:
        draft, draft_tokenizer = load_policy(draft_spec, resolve_device(device))
        draft.eval()
        if draft_tokenizer.vocab_size != tokenizer.vocab_size:
            raise ConfigError(f"draft {draft_spec!r} has another tokenizer than {model_spec!r}")
    if task_spec is not None:
        from plainrl.llm.tasks import make_task

        task = make_task(task_spec)
        prompts = prompts + [model_prompt(task, example, tokenizer) for example in task.test[:n]]
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    stats, tokens, seconds = SpeculativeStats(), 0, 0.0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [tokenizer.prompt_ids(p) for p in chunk]
        started = time.perf_counter()
        if draft is None:
            from plainrl.llm.generate import generate

            rollout = generate(model, tokenizer, ids, params, generator)
        else:
            rollout, round_stats = speculative_generate(model, draft, tokenizer, ids, params, k, adaptive, generator)
            for name in ("rounds", "row_rounds", "proposed", "accepted", "emitted", "k_sum"):
                setattr(stats, name, getattr(stats, name) + getattr(round_stats, name))
        seconds += time.perf_counter() - started
        tokens += int(rollout.completion_mask.sum())
        for prompt, text in zip(chunk, rollout.texts, strict=True):
            print(f"--- {prompt}\n{text}")
    summary: dict[str, Any] = {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}
    line = f"{tokens} tokens in {seconds:.2f} s: {tokens / seconds:.1f} tokens/s"
    if draft is not None:
        summary.update(acceptance_rate=stats.acceptance_rate, tokens_per_round=stats.tokens_per_round,
                       mean_k=stats.k_sum / max(stats.rounds, 1))  # fmt: skip
        line += (f", acceptance rate {stats.acceptance_rate:.3f}, {stats.tokens_per_round:.2f} tokens per row "
                 f"per target forward (K = {summary['mean_k']:.1f})")  # fmt: skip
    print(line)
    return summary


def base_model(spec: str) -> str:
    """The model a chain of run folders started from: runs/grpo_x -> runs/sft_y -> 'tiny'."""
    from plainrl.kit.run import read_run_config

    seen = set()
    while (Path(spec) / "config.toml").is_file() and spec not in seen:
        seen.add(spec)
        spec = str(read_run_config(spec).get("model", spec))
    return spec


def held_out_accuracy(model: Any, tokenizer: Any, task: Task, params: SamplingParams, config: Any) -> float:
    """Accuracy on the first `config.eval_n` examples of the task's held-out split: every trainer's evaluation."""
    examples = task.test[: config.eval_n]
    return float(evaluate_policy(model, tokenizer, task, examples, params, config.eval_batch_size)["accuracy"])


def evaluation_due(config: Any, step: int) -> bool:
    """Every `eval_every` steps (0: never) and at the last step: when a trainer evaluates on held-out data."""
    return (config.eval_every > 0 and step % config.eval_every == 0) or step == config.total_steps


def finish_run(model: Any, tokenizer: Any, task: Task, params: SamplingParams, config: Any, run_dir: Path,
               step: int, accuracy: float | None = None) -> float:  # fmt: skip
    """The end of every trainer that makes a policy: accuracy on the first `config.eval_n` held-out examples ->
    eval.json (+ the LoRA adapters alone when `config.lora_rank` > 0).
    `accuracy`: the loop's own evaluation of these examples at this step, if it made one (greedy: same result)."""
    import json

    n = len(task.test[: config.eval_n])
    if accuracy is None:
        accuracy = held_out_accuracy(model, tokenizer, task, params, config)
    (run_dir / "eval.json").write_text(json.dumps({"accuracy": accuracy, "n": n, "step": step}))
    if config.lora_rank > 0:
        from plainrl.llm.lora import save_adapters

        save_adapters(model, run_dir / "adapter")
    print(f"eval: accuracy = {accuracy:.4f} on {n} held-out examples -> {run_dir / 'eval.json'}")
    return accuracy
