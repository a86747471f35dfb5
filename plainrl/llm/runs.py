"""LLM trainers by name, and what `plainrl sft|grpo|reward-model|ppo-llm|dpo` and `plainrl resume` do for them:
resolve and check the config before any loading, open the run folder, train;
reopen a run folder for resume or evaluation.

Each trainer module offers `Config`, `PRESETS` and `train(config, run)`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from plainrl.kit.config import BaseConfig, build_config
from plainrl.kit.errors import PlainRLError
from plainrl.kit.nets import resolve_device
from plainrl.kit.run import Run, read_run_config, saved_config

TRAINERS = {
    "sft": "plainrl.llm.sft",
    "grpo": "plainrl.llm.grpo",
    "reward-model": "plainrl.llm.reward_model",
    "ppo-llm": "plainrl.llm.ppo",
    "dpo": "plainrl.llm.dpo",
    "distill": "plainrl.llm.distill",
}


def trainer(name: str) -> ModuleType:
    if name not in TRAINERS:
        raise PlainRLError(f"{name!r} is not an LLM trainer ({', '.join(TRAINERS)})")
    return importlib.import_module(TRAINERS[name])


def train_new(
    name: str, config_file: Any = None, set_items: list[str] | None = None, run_dir: Any = None,
    flags: dict[str, Any] | None = None, show_progress: bool = True,
) -> Path:  # fmt: skip
    from plainrl.llm.policy import check_model_spec
    from plainrl.llm.tasks import make_task

    module = trainer(name)
    flags = dict(flags or {})
    task = flags.pop("env", None)
    config = build_config(module.Config, module.PRESETS, task, config_file, set_items, flags)
    make_task(config.env)  # bad task specs and model names stop here, before a run folder exists
    check_model_spec(config.model)
    resolve_device(config.device)
    with Run.create(name, config, run_dir, show_progress=show_progress) as run:
        print(f"run folder: {run.dir}")
        module.train(config, run)
    return run.dir


def run_config(run_dir: str | Path) -> tuple[str, ModuleType, BaseConfig]:
    """(trainer name, trainer module, config) of an LLM run folder."""
    name = read_run_config(run_dir)["algo"]
    module = trainer(name)
    return name, module, saved_config(run_dir, module.Config)


def resume(run_dir: str | Path, show_progress: bool = True) -> Path:
    _, module, config = run_config(run_dir)
    with Run.resume(run_dir, config, show_progress=show_progress) as run:
        print(f"resuming {run.dir} at step {run.start_step} of {config.total_steps}")
        module.train(config, run)
    return Path(run_dir)
