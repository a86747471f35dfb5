"""Held-out evaluation of a language model on a task: the trainers' evaluations, the final eval.json of a run,
and `plainrl eval-llm`.

result = evaluate_policy(model, tokenizer, task, task.test[:200], SamplingParams(greedy=True))
result["accuracy"], result["samples"]        every prompt, completion, extracted answer, verdict
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from plainrl.kit import distributed
from plainrl.kit.errors import ConfigError
from plainrl.kit.nets import resolve_device
from plainrl.llm.generate import SamplingParams, generate_texts
from plainrl.llm.policies import check_model_spec, load_policy, model_prompt
from plainrl.llm.tasks import Example, Task, make_task


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    task: Task,
    examples: list[Example],
    params: SamplingParams,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Accuracy on `examples`, and one record per example: prompt, completion, extracted answer, verdict. A task of
    an environment (task.environment): the share of conversations solved, with their transcripts."""
    if task.environment is not None:
        return evaluate_conversations(model, tokenizer, task, examples, params, batch_size, generator)
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


def evaluate_conversations(
    model: Any, tokenizer: Any, task: Task, examples: list[Example], params: SamplingParams, batch_size: int,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:  # fmt: skip
    """evaluate_policy for an environment's task: one conversation per example, solved or not."""
    from plainrl.llm.multi_turn import rollout_conversations

    was_training = model.training
    model.eval()
    samples: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        conversations = rollout_conversations(model, tokenizer, [task.environment() for _ in chunk], chunk, params,
                                              generator)  # fmt: skip
        for example, transcript, solved, rewards in zip(chunk, conversations.transcripts, conversations.solved,
                                                        conversations.turn_rewards, strict=True):  # fmt: skip
            samples.append(dict(prompt=example.prompt, completion=transcript, answer=example.answer, correct=solved,
                                turns=len(rewards), reward=sum(rewards)))  # fmt: skip
    model.train(was_training)
    accuracy = sum(1 for s in samples if s["correct"]) / max(len(samples), 1)
    return {"accuracy": accuracy, "n": len(samples), "samples": samples}


def held_out_accuracy(model: Any, tokenizer: Any, task: Task, params: SamplingParams, config: Any) -> float:
    """Accuracy on the first `config.eval_n` examples of the task's held-out split: every trainer's evaluation.
    Under torchrun the ranks share the examples (every size-th one each) and add up their correct answers."""
    world = distributed.world()
    examples = task.test[: config.eval_n]
    mine = examples[world.rank :: world.size]
    correct = 0.0
    if mine:
        result = evaluate_policy(model, tokenizer, task, mine, params, config.eval_batch_size)
        correct = result["accuracy"] * result["n"]
    elif distributed.fsdp_modules(model):  # a sharded forward needs every rank: decode one example for nothing
        evaluate_policy(model, tokenizer, task, examples[:1], params, config.eval_batch_size)
    return float(world.sum(torch.tensor(correct, dtype=torch.float64))) / max(len(examples), 1)


def evaluation_due(config: Any, step: int) -> bool:
    """Every `eval_every` steps (0: never) and at the last step: when a trainer evaluates on held-out data."""
    return (config.eval_every > 0 and step % config.eval_every == 0) or step == config.total_steps


def final_accuracy(model: Any, tokenizer: Any, config: Any, step: int, accuracy: float | None = None) -> dict[str, Any]:
    """eval.json of a run that trains a policy: greedy accuracy on the first `config.eval_n` held-out examples.
    `accuracy`: the loop's own evaluation of these examples at this step, if it made one (greedy: same result)."""
    task = config.make_task()
    if accuracy is None:
        params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True)
        accuracy = held_out_accuracy(model, tokenizer, task, params, config)
    return {"accuracy": accuracy, "n": len(task.test[: config.eval_n]), "step": step}


def eval_llm(
    model_spec: str, task_spec: str, n: int, params: SamplingParams, batch_size: int, device: str, seed: int,
    out: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy on the first n held-out examples, every sample recorded in a JSON file (`record["out"]`)."""
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
    return {**record, "out": str(out)}
