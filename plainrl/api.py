"""The Python API, for every algorithm of every track: train, resume, evaluate, load (docs/api.md). The CLI is a
thin layer over it.

    run = plainrl.train("ppo", env="CartPole-v1", total_steps=50_000)      run.path, run.eval, run.metrics
    plainrl.load(run.path).predict(obs); plainrl.evaluate(run.path); plainrl.resume(run.path)
    run = plainrl.train("grpo", model="runs/sft_...", task=[{"prompt": "2+2=", "answer": "4"}], rewards=[fn])
    plainrl.load(run.path).generate(["12+34="], max_new_tokens=16, greedy=True)

One orchestrator: resolve the config (defaults <- preset <- TOML file <- --set <- keyword arguments) -> check
everything that can be checked -> open the run folder -> module.train(config, run) -> final evaluation (eval.json)
-> a RunFolder. Names come from the one registry, kit/registry.py.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import torch

from plainrl.kit import distributed
from plainrl.kit.config import EnvConfig, RunConfig, build_config, in_process_name
from plainrl.kit.envs import make_env, raw_observation_space
from plainrl.kit.errors import ConfigError, PlainRLError
from plainrl.kit.evaluate import Agent, PeriodicEvaluation, agent_policy, evaluate_episodes, write_eval_json
from plainrl.kit.nets import resolve_device
from plainrl.kit.registry import ALGORITHMS, canonical_name, check_spaces, load_algorithm, load_run, reads_vectors
from plainrl.kit.run import Run, default_run_dir, load_checkpoint_file, precision, read_run_config

StepCallback = Callable[[int, Any], bool]  # (step, what is being trained) -> True to stop training now


class RunFolder:
    """A run folder on disk: what `train` and `resume` return."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config: dict[str, Any] = read_run_config(self.path)
        self.algo: str = self.config["algo"]

    @property
    def metrics(self) -> list[dict[str, float | None]]:
        """The rows of metrics.csv, as numbers (None where a row has no value for a column)."""
        with (self.path / "metrics.csv").open() as f:
            return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]

    @property
    def eval(self) -> dict[str, Any] | None:
        """eval.json: the final evaluation (mean_return ... for env runs, accuracy ... for LLM runs)."""
        path = self.path / "eval.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def load(self, device: str | None = None) -> Any:
        return load(self.path, device)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, algo={self.algo!r}, eval={self.eval})"


# ----- train and resume ------------------------------------------------------------------------------------------
def train(
    algo: str, env: str | gym.Env | Callable[[], gym.Env] | None = None, *, task: Any = None, model: str | None = None,
    rewards: Sequence[str | Callable[..., Any]] | None = None, seed: int | None = None, total_steps: int | None = None,
    device: str | None = None, run_dir: str | Path | None = None, progress: bool = True,
    callbacks: Sequence[StepCallback] = (), config_file: str | Path | None = None, set_items: Sequence[str] = (),
    **overrides: Any,
) -> RunFolder:  # fmt: skip
    """Train `algo` and leave a run folder; returns it. `progress=False` silences the live progress bar.

    env:       a Gymnasium id, "module:ClassName" / "module:factory", a gymnasium.Env instance (each env is a copy of
               it) or a zero-argument factory (env-track algorithms: classic and tabular).
    task:      a task name ("arithmetic:digits=1"), a .jsonl path, a list of {"prompt", "answer", ...} dicts or a
               Task object; model, rewards (names or Python functions): the LLM trainers.
    environment= (an override of grpo, ppo-llm, sft): a multi-turn environment, by name ("calculator"), as
               "module:Class", or an environment class or zero-argument factory (plainrl/llm/environments.py).
    overrides: any field of the algorithm's Config (see `plainrl list` and the algorithm's file).
    callbacks: called as f(step, trained) after every logged step; True stops training (benchmarks use them).
    config_file, set_items: the CLI's --config TOML file and --set key=value items.
    """
    name = canonical_name(algo)
    module = load_algorithm(name)
    values: dict[str, Any] = {"seed": seed, "total_steps": total_steps, "device": device, **overrides}
    is_env_run = issubclass(module.Config, EnvConfig)
    given = {k for k, v in (("env", env), ("task", task), ("model", model), ("rewards", rewards)) if v is not None}
    wrong = given - ({"env"} if is_env_run else {"task", "model", "rewards"})
    if wrong:
        takes = "env=" if is_env_run else "task=, model=, rewards="
        raise ConfigError(f"{name} takes {takes} (not {', '.join(sorted(wrong))}=)")
    written: list[Path] | None = None
    world = distributed.join()  # under torchrun: this process's rank; else a world of one
    if is_env_run:
        values["env"] = env_id(env) if env is not None else None
    else:
        if isinstance(task, list):  # examples in memory: they become the run folder's task.jsonl
            folder = Path(run_dir) if run_dir else default_run_dir(name, "examples", seed or 0)
            if (folder / "config.toml").exists():
                raise PlainRLError(f"{str(folder)!r} already holds a run: choose another run_dir")
            folder = Path(world.broadcast_object(str(folder)))  # rank 0's name (a default one has its clock)
            written = write_examples(task, folder / "task.jsonl") if world.is_main else []
            world.barrier()  # every rank reads the file rank 0 wrote
            run_dir, task = folder, str(folder / "task.jsonl")
        values.update(task=task_name(task) if task is not None else None, model=model)
        values["rewards"] = [reward_name(r) for r in rewards] if rewards is not None else None
        if overrides.get("environment") is not None:
            values["environment"] = environment_name(overrides["environment"])
    try:
        config = build_config(module.Config, module.PRESETS, values, config_file, list(set_items), "train()")
        check(name, module, config)
    except PlainRLError:
        for made in written or []:  # the examples file (and the folders made for it) were this call's only trace
            made.unlink() if made.is_file() else made.rmdir()
        raise
    with Run.create(name, config, run_dir, show_progress=progress) as run, precision(config):
        distributed.say(f"run folder: {run.dir}")
        add_step_hooks(run, module, config, callbacks)
        trained = module.train(config, run)
    finish(module, config, trained, run)
    return RunFolder(run.dir)


def resume(path: str | Path, progress: bool = True, callbacks: Sequence[StepCallback] = ()) -> RunFolder:
    """Continue an interrupted run from its last checkpoint to its planned total, then evaluate it."""
    world = distributed.join()
    saved: tuple[str, RunConfig] | None = None
    if world.is_main:  # under torchrun rank 0 reads the folder and sends the config: others need no copy of it
        name, _, config = load_run(path)
        saved = (name, config)
    name, config = world.broadcast_object(saved)
    module = load_algorithm(name)
    check(name, module, config)
    with Run.resume(path, config, show_progress=progress) as run, precision(config):
        distributed.say(f"resuming {run.dir} at step {run.start_step} of {config.total_steps}")
        add_step_hooks(run, module, config, callbacks)
        trained = module.train(config, run)
    finish(module, config, trained, run)
    return RunFolder(path)


def add_step_hooks(run: Run, module: ModuleType, config: RunConfig, callbacks: Sequence[StepCallback]) -> None:
    """What runs after every logged step: evaluations during training (env runs, eval_every > 0), then the
    caller's callbacks."""
    if isinstance(config, EnvConfig) and config.eval_every > 0:
        run.step_hooks.append(PeriodicEvaluation(run, config, reads_vectors(module)))
    run.step_hooks.extend(callbacks)


def check(name: str, module: ModuleType, config: RunConfig) -> None:
    """Everything that can be checked before a run folder is touched: env and spaces, or task and model; device;
    that the algorithm trains data-parallel when torchrun launched several processes."""
    world = distributed.world()
    sharded: str | None = getattr(module, "SHARDED_BATCH", None)  # the config field each rank takes 1 / N of
    if world.size > 1 and sharded is None:
        parallel = ", ".join(n for n in ALGORITHMS if hasattr(load_algorithm(n), "SHARDED_BATCH"))
        raise ConfigError(
            f"{name} trains in one process; under torchrun ({world.size} processes) train one of: {parallel}"
        )
    if getattr(config, "fsdp", False) and world.size == 1:
        raise ConfigError(
            "fsdp = true shards the model over several processes: launch with torchrun --nproc_per_node N"
        )
    if world.size > 1 and sharded is not None:
        world.shard(getattr(config, sharded), sharded)  # one error line when N does not divide it
        if hasattr(module, "check_world"):
            module.check_world(config, world)
    if isinstance(config, EnvConfig):
        env = make_env(config.env, vectors=reads_vectors(module))  # as the algorithm will see it
        check_spaces(name, module, env)
        if hasattr(module, "check_env"):
            module.check_env(env)
        env.close()
    else:
        from plainrl.llm.policies import check_model_spec, load_tokenizer
        from plainrl.llm.tasks import check_alphabet

        if getattr(config, "environment", "") and not getattr(module, "MULTI_TURN", False):
            takers = ", ".join(n for n in ALGORITHMS if getattr(load_algorithm(n), "MULTI_TURN", False))
            raise ConfigError(f"{name} does not train on environments (environment = {config.environment!r}); "  # type: ignore[attr-defined]
                              f"these do: {takers}")  # fmt: skip
        task = config.make_task()  # type: ignore[attr-defined]
        check_model_spec(config.model)  # type: ignore[attr-defined]
        check_alphabet(task, load_tokenizer(config.model), config.task)  # type: ignore[attr-defined]
        if hasattr(module, "check"):
            module.check(config)
    resolve_device(config.device, config.AUTO_DEVICE)


def finish(module: ModuleType, config: RunConfig, trained: Any, run: Run) -> None:
    """The final evaluation of every track -> eval.json (in a torchrun job: every rank takes part in an LLM's
    evaluation, which shares the held-out examples among them; rank 0 evaluates an env agent and writes)."""
    run_dir, step = run.dir, int(run.last_logged.get("step", run.start_step))
    if isinstance(config, EnvConfig):
        if config.eval_episodes == 0 or not distributed.world().is_main:
            return
        result = evaluate_episodes(agent_policy(trained), config.env, config.eval_episodes, config.seed,
                                   vectors=reads_vectors(module))  # fmt: skip
        write_eval_json(run_dir, result)
        print(f"eval: mean_return = {result['mean_return']:.2f} +/- {result['std_return']:.2f} "
                      f"over {result['episodes']} episodes -> {run_dir / 'eval.json'}")  # fmt: skip
        return
    if hasattr(module, "final_evaluation"):
        result = module.final_evaluation(config, trained, run_dir, step)
    else:
        from plainrl.llm.evaluate import final_accuracy
        from plainrl.llm.policies import load_tokenizer

        at_last_step = run.last_logged.get("accuracy")  # the loop's own evaluation of this step, if it made one
        result = final_accuracy(trained, load_tokenizer(config.model), config, step, at_last_step)  # type: ignore[attr-defined]
    adapters = None
    if getattr(config, "lora_rank", 0) > 0 and distributed.fsdp_modules(trained):  # gathered by every rank
        adapters = {k: v for k, v in distributed.FullState(trained).state_dict().items() if "lora_" in k}
    if not distributed.world().is_main:
        return
    if getattr(config, "lora_rank", 0) > 0:
        from plainrl.llm.lora import save_adapters

        save_adapters(trained, run_dir / "adapter", adapters)
    write_eval_json(run_dir, result)
    print(f"eval: {', '.join(f'{k} = {v:.4g}' for k, v in result.items())} -> {run_dir / 'eval.json'}")


# ----- load and evaluate -------------------------------------------------------------------------------------------
def load(path: str | Path, device: str | None = None, best: bool = False) -> Any:
    """The trained thing of a run folder, from its last checkpoint: an Agent (env runs: predict(obs)) or a Policy
    (LLM runs: generate(prompts)). `device`: default the run's own. best: an env run's checkpoints/best.pt (the
    best evaluation during training, eval_every > 0)."""
    name, module, config = load_run(path)
    target = resolve_device(device or config.device, config.AUTO_DEVICE)
    if isinstance(config, EnvConfig):
        env = make_env(config.env, vectors=reads_vectors(module))
        agent = module.build_agent(config, env.observation_space, env.action_space).to(target)
        env.close()
        agent.load_state_dict(load_checkpoint_file(path, map_location=target, best=best)["agent"])
        return Agent(agent.eval(), env.observation_space, config, raw_observation_space(env))
    if best:
        raise ConfigError("best is for env runs with eval_every > 0; an LLM run keeps its last checkpoint")
    if hasattr(module, "load_trained"):  # reward-model: the scorer, not a policy
        return module.load_trained(Path(path), target)
    from plainrl.llm.policies import Policy, load_run_policy

    return Policy(*load_run_policy(Path(path), target), spec=str(path))


def export(path: str | Path, out: str | Path, merge_lora: bool = False) -> Path:
    """Write an LLM run's policy in Hugging Face format to `out` (plainrl/llm/export.py): a save_pretrained folder
    that transformers.AutoModelForCausalLM.from_pretrained loads; a LoRA run as a PEFT adapter folder on its base
    model, or merged into it with `merge_lora`. Returns `out`."""
    from plainrl.llm import export as hf_export
    from plainrl.llm.hf import smollm2_folder
    from plainrl.llm.policies import load_run_policy

    name, module, config = load_run(path)
    if isinstance(config, EnvConfig) or hasattr(module, "load_trained"):
        raise ConfigError(f"{str(path)!r} is a {name} run; export takes the runs of language-model policies")
    model, tokenizer = load_run_policy(Path(path), "cpu")
    base = str(smollm2_folder()) if config.model == "smollm2-135m" else config.model  # type: ignore[attr-defined]
    return hf_export.export_policy(model, tokenizer, base, Path(out), merge_lora)


def evaluate(
    path: str | Path, episodes: int = 20, video: bool = False, n: int | None = None, best: bool = False
) -> dict[str, Any]:
    """Evaluate a run folder's last checkpoint and write eval.json. Env runs: `episodes` deterministic episodes
    (`video`: also episode.gif of the first); best: checkpoints/best.pt instead, into eval_best.json. LLM runs:
    greedy accuracy on the first `n` held-out examples (default: the run's eval_n)."""
    name, module, config = load_run(path)
    torch.set_num_threads(config.torch_threads)
    if isinstance(config, EnvConfig):
        if episodes < 1:
            raise ConfigError(f"episodes = {episodes} must be >= 1")
        agent = load(path, best=best)
        video_path = Path(path) / "episode.gif" if video else None
        result = evaluate_episodes(agent_policy(agent.module), config.env, episodes, config.seed, video_path,
                                   vectors=reads_vectors(module))  # fmt: skip
        if best:
            (Path(path) / "eval_best.json").write_text(json.dumps(result, indent=1))
            return result
    else:
        if video:
            raise ConfigError("video is for env runs; an LLM run is evaluated on held-out examples")
        from plainrl.llm.evaluate import final_accuracy

        config = dataclasses.replace(config, eval_n=n) if n and hasattr(config, "eval_n") else config  # type: ignore[call-arg]
        trained, rows = load(path), RunFolder(path).metrics
        step = int(rows[-1]["step"] or 0) if rows else 0
        if hasattr(module, "final_evaluation"):  # reward-model: held-out pairs; distill: its record
            result = module.final_evaluation(config, getattr(trained, "model", trained), Path(path), step)
        else:
            result = final_accuracy(trained.model, trained.tokenizer, config, step)
    write_eval_json(path, result)
    return result


def draw_pictures(path: str | Path) -> list[Path]:
    """The pictures an algorithm draws beyond curve.png (tabular methods: values.png), redrawn from the run."""
    module = load_run(path)[1]
    return module.draw_pictures(path) if hasattr(module, "draw_pictures") else []


# ----- Python objects as config values ------------------------------------------------------------------------------
def importable_name(obj: Any) -> str | None:
    """'module:qualname' when `obj` can be imported back by that name in another process, else None."""
    module_name, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module_name or module_name == "__main__" or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module_name}:{qualname}" if found is obj else None


def env_id(env: str | gym.Env | Callable[[], gym.Env]) -> str:
    """An env id for the config: the string itself, an importable factory's 'module:name', or an id registered in
    this process for an instance (each env made is a copy of it) or any other factory."""
    if isinstance(env, str):
        return env
    if isinstance(env, gym.Env):
        instance = env
        factory: Callable[..., gym.Env] = lambda **_: copy.deepcopy(instance)  # noqa: E731
        label = type(instance.unwrapped).__name__
        steps = instance.spec.max_episode_steps if instance.spec else None
    elif callable(env):
        if (name := importable_name(env)) is not None:
            return name
        factory, label, steps = (lambda **_: env()), getattr(env, "__name__", "env").strip("<>"), None
    else:
        raise ConfigError(f"env = {env!r} is not an env id, a gymnasium.Env or a zero-argument factory")
    new_id = f"python/{label}-v{sum(1 for i in gym.registry if i.startswith(f'python/{label}-v'))}"
    gym.register(new_id, entry_point=factory, max_episode_steps=steps)
    return new_id


def task_name(task: Any) -> str:
    """A task spec for the config: the string itself, or a name registered in this process for a Task object."""
    from plainrl.llm.tasks import PYTHON_TASKS, Task

    if isinstance(task, str | Path):
        return str(task)
    if isinstance(task, Task):
        return in_process_name(task, PYTHON_TASKS)
    raise ConfigError(f"task = {task!r} is not a task name, a .jsonl path, a list of examples or a Task")


def environment_name(environment: Any) -> str:
    """An environment for the config: the spec itself, an importable class's or factory's 'module:name', or a name
    registered in this process for any other zero-argument factory."""
    from plainrl.llm.environments import PYTHON_ENVIRONMENTS

    if isinstance(environment, str):
        return environment
    if not callable(environment):
        raise ConfigError(f"environment {environment!r} is not a name, a class or a zero-argument factory")
    return importable_name(environment) or in_process_name(environment, PYTHON_ENVIRONMENTS)


def reward_name(reward: str | Callable[..., Any]) -> str:
    """A reward for the config: a name, an importable function's 'module:name', or a name registered in this
    process for any other function."""
    from plainrl.llm.rewards import PYTHON_REWARDS

    if isinstance(reward, str):
        return reward
    if not callable(reward):
        raise ConfigError(f"reward {reward!r} is not a name or a function")
    return importable_name(reward) or in_process_name(reward, PYTHON_REWARDS)


def write_examples(examples: list[Any], path: Path) -> list[Path]:
    """[{"prompt": ..., "answer": ..., more columns}] -> a JSONL task file (the run folder's task.jsonl); returns it
    and the folders made for it, innermost first."""
    for number, example in enumerate(examples, start=1):
        if not isinstance(example, dict) or "prompt" not in example or "answer" not in example:
            raise ConfigError(f'task example {number} must be a dict with "prompt" and "answer" keys, got {example!r}')
    made = [path, *[folder for folder in path.parents if not folder.exists()]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(example) + "\n" for example in examples))
    return made
