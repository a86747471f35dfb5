"""What `plainrl train`, `resume` and `eval` do, between the CLI's parsing and an algorithm's `train`:
resolve and validate the config, check the env and its action space, open the run folder, train, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from plainrl.kit.config import BaseConfig, apply, build_config  # noqa: F401  (re-exported for tests and scripts)
from plainrl.kit.envs import make_env
from plainrl.kit.evaluate import agent_policy, evaluate, write_eval_json
from plainrl.kit.nets import resolve_device
from plainrl.kit.registry import check_action_space, check_observation_space, load_algorithm
from plainrl.kit.run import Run, load_checkpoint_file, read_run_config, saved_config


def prepare(algo: str, config: BaseConfig) -> Any:
    """Everything that can be checked before training starts: algorithm, env id, spaces, device."""
    module = load_algorithm(algo)
    env = make_env(config.env)
    check_action_space(algo, module, env)
    check_observation_space(algo, module, env)
    if hasattr(module, "check_env"):
        module.check_env(env)
    env.close()
    resolve_device(config.device)
    return module


def train_new(
    algo: str,
    env: str | None = None,
    config_file: str | Path | None = None,
    set_items: list[str] | None = None,
    run_dir: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> Path:
    module = load_algorithm(algo)
    config = build_config(module.Config, module.PRESETS, env, config_file, set_items, flags)
    prepare(algo, config)
    with Run.create(algo, config, run_dir, show_progress=show_progress) as run:
        print(f"run folder: {run.dir}")
        agent = module.train(config, run)
    finish(run.dir, config, agent)
    return run.dir


def load_run_config(run_dir: str | Path) -> tuple[str, Any, BaseConfig]:
    """(algo name, algorithm module, config) of a saved run."""
    algo = read_run_config(run_dir)["algo"]
    module = load_algorithm(algo)
    return algo, module, saved_config(run_dir, module.Config)


def resume(run_dir: str | Path, show_progress: bool = True) -> Path:
    algo, module, config = load_run_config(run_dir)
    prepare(algo, config)
    with Run.resume(run_dir, config, show_progress=show_progress) as run:
        print(f"resuming {run.dir} at step {run.start_step} of {config.total_steps}")
        agent = module.train(config, run)
    finish(run.dir, config, agent)
    return Path(run_dir)


def finish(run_dir: Path, config: BaseConfig, agent: Any) -> None:
    if config.eval_episodes > 0:
        device = next(agent.parameters()).device
        result = evaluate(agent_policy(agent, device), config.env, config.eval_episodes, config.seed)
        write_eval_json(run_dir, result)
        print(f"eval: mean_return = {result['mean_return']:.2f} +/- {result['std_return']:.2f} "
              f"over {result['episodes']} episodes -> {run_dir / 'eval.json'}")  # fmt: skip


def load_agent(run_dir: str | Path) -> tuple[BaseConfig, Any]:
    """The config and the trained agent of a saved run (its last checkpoint), on the run's device."""
    algo, module, config = load_run_config(run_dir)
    device = resolve_device(config.device)
    env = make_env(config.env)
    agent = module.build_agent(config, env.observation_space, env.action_space).to(device)
    env.close()
    agent.load_state_dict(load_checkpoint_file(run_dir, map_location=device)["agent"])
    agent.eval()
    return config, agent


def draw_pictures(run_dir: str | Path) -> list[Path]:
    """The pictures an algorithm draws beyond curve.png (tabular methods: values.png), redrawn from the run."""
    module = load_run_config(run_dir)[1]
    return module.draw_pictures(run_dir) if hasattr(module, "draw_pictures") else []


def evaluate_run(run_dir: str | Path, episodes: int = 20, video: bool = False) -> dict[str, Any]:
    config, agent = load_agent(run_dir)
    torch.set_num_threads(config.torch_threads)
    device = next(agent.parameters()).device
    video_path = Path(run_dir) / "episode.gif" if video else None
    result = evaluate(agent_policy(agent, device), config.env, episodes, config.seed, video_path)
    write_eval_json(run_dir, result)
    print(f"mean_return = {result['mean_return']:.2f}  std_return = {result['std_return']:.2f}  episodes = {episodes}")
    if video_path:
        print(f"wrote {video_path}")
    return result
