"""Dataclass configs: defaults <- preset <- TOML file <- `--set key=value` <- flags / keyword arguments, validated
before any work starts.

    RunConfig       what every run has: seed, total_steps, device, threads, checkpoint_every, wandb_project
    EnvConfig       a run on a Gymnasium env (classic and tabular methods): env, eval_episodes
    (llm/config.py: TaskConfig, a run on a language task: task, model, learning_rate, ...)

Every algorithm's `Config` subclasses one of them and adds its hyperparameters; `validate()` checks each
value's range and raises `ConfigError` naming the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from plainrl.kit.errors import ConfigError, did_you_mean

C = TypeVar("C", bound="RunConfig")

MAX_SEED = 2**32 - 1  # numpy's and Python's seeding accept [0, 2**32 - 1]
MAX_INT = 2**63 - 1  # what torch and numpy can hold


@dataclass
class RunConfig:
    """Fields every training run has, in every track."""

    LABEL_FIELD: ClassVar[str] = ""  # the field that names what is trained on: presets and run folders use it
    AUTO_DEVICE: ClassVar[str] = "cuda"  # what device = auto means: a GPU when there is one (the LLM track)

    seed: int = 0
    total_steps: int = 100_000  # the track's steps: env steps (classic), optimizer or rollout steps (LLM)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    torch_threads: int = 1  # small MLPs run fastest on one thread; the other core steps the envs
    checkpoint_every: int = 10_000  # steps between checkpoints (a checkpoint is also written at the end)
    wandb_project: str = ""  # non-empty: also log to Weights & Biases (pip install plainrl[wandb])

    @classmethod
    def upgrade_saved_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A saved config.toml's values in today's field names (a track renames fields here)."""
        return values

    def label(self) -> str:
        """What the run trains on (an env id, a task): the preset's key and part of the run folder's name."""
        return str(getattr(self, self.LABEL_FIELD, ""))

    def validate(self) -> None:
        require(0 <= self.seed <= MAX_SEED, f"seed = {self.seed} must be in [0, {MAX_SEED}]")
        require_ranges(self, positive=("total_steps", "checkpoint_every"))
        require(1 <= self.torch_threads <= 1024, f"torch_threads = {self.torch_threads} must be in [1, 1024]")
        device_ok = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        require(device_ok, f"device = {self.device!r} is not one of auto, cpu, cuda, cuda:N")


@dataclass
class EnvConfig(RunConfig):
    """A run on a Gymnasium environment: every classic and tabular method."""

    LABEL_FIELD: ClassVar[str] = "env"
    # Small MLP agents are bound by kernel launches and host-device copies on a GPU (CartPole PPO: 57.7 s on an
    # H200 vs ~3 s on this CPU), so auto means the CPU, as in Stable-Baselines3. device = cuda still asks for it.
    AUTO_DEVICE: ClassVar[str] = "cpu"

    env: str = "CartPole-v1"  # a Gymnasium id, or module:ClassName / module:factory
    eval_episodes: int = 20  # deterministic episodes for eval.json when training ends (and for each eval_every)
    eval_every: int = 0  # env steps between evaluations during training, logged; the best -> checkpoints/best.pt

    def validate(self) -> None:
        super().validate()
        require_ranges(self, non_negative=("eval_episodes", "eval_every"))


@dataclass
class OffPolicyConfig(EnvConfig):
    """Fields every replay-buffer method has (DQN, DDPG, TD3, SAC); each algorithm sets its own defaults."""

    num_envs: int = 1
    buffer_size: int = 100_000
    learning_starts: int = 1000  # env steps before the first update
    batch_size: int = 64
    train_frequency: int = 1  # env steps between training phases
    gradient_steps: int = 1  # gradient steps per training phase
    learning_rate: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005  # target-network update rate (1: hard copy)

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("num_envs", "batch_size", "train_frequency", "gradient_steps"),
                       non_negative=("learning_starts",), positive=("learning_rate",),
                       discount=("gamma", "tau"))  # fmt: skip
        require(
            self.batch_size <= self.buffer_size <= 100_000_000,
            f"buffer_size = {self.buffer_size} must be in [batch_size, 100000000]",
        )


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


RANGES = {  # the ranges most fields have: a test, and how the error line names what is allowed
    "positive": (lambda v: v > 0, "> 0"),
    "non_negative": (lambda v: v >= 0, ">= 0"),
    "at_least_one": (lambda v: v >= 1, ">= 1"),
    "fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "discount": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def require_ranges(config: Any, **fields_by_range: tuple[str, ...]) -> None:
    """`require` for the common ranges: require_ranges(self, positive=("learning_rate",), discount=("gamma",))
    raises ConfigError("gamma = 1.5 must be in (0, 1]") for the first field outside its range."""
    for kind, names in fields_by_range.items():
        test, allowed = RANGES[kind]
        for name in names:
            value = getattr(config, name)
            require(test(value), f"{name} = {value} must be {allowed}")


def in_process_name(obj: Any, table: dict[str, Any]) -> str:
    """The config name ('python:NAME') of an object given from Python (a Task, a reward function), kept in `table`
    so that this process finds it again by that name."""
    for name, known in table.items():
        if known is obj:
            return name
    name = f"python:{getattr(obj, '__name__', type(obj).__name__).strip('<>')}"
    name = name if name not in table else f"{name}-{len(table)}"
    table[name] = obj
    return name


def field_names(config_cls: type[RunConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a TOML/--set value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(name, value, args[0])
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} expects a list such as [64, 64], got {value!r}")
        return tuple(_coerce(name, v, item_type) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} expects true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} expects an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        if abs(number) > MAX_INT:
            raise ConfigError(f"{name} expects an integer of at most 2**63 - 1, got {value!r}")
        return int(value) if isinstance(value, int) else int(number)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} expects a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} expects a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name} expects a finite number, got {value!r}")
        return number
    if annotation is str:
        return str(value)
    return value


def parse_set(items: list[str]) -> dict[str, Any]:
    """['lr=3e-4', 'hidden_sizes=[64, 64]'] -> {'lr': 0.0003, 'hidden_sizes': [64, 64]} (TOML literals)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        raw = raw.strip()
        try:
            overrides[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key] = raw  # a bare word: keep it as a string, the field type decides
    return overrides


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def apply(config: C, values: dict[str, Any], source: str) -> C:
    """A copy of `config` with `values` applied; unknown keys and ill-typed values raise ConfigError."""
    hints = typing.get_type_hints(type(config))
    names = field_names(type(config))
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {key!r} in {source}{did_you_mean(key, names)}")
        changes[key] = _coerce(key, value, hints[key])
    return dataclasses.replace(config, **changes)


def build_config(
    config_cls: type[C],
    presets: dict[str, dict[str, Any]],
    values: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    set_items: list[str] | None = None,
    source: str = "the command line",
) -> C:
    """Resolve a config: defaults <- the preset for its env or task <- config file <- --set <- `values` (flags or
    keyword arguments; None means not given); validate."""
    file_values = dict(load_toml(config_file)) if config_file else {}
    file_values.pop("algo", None)
    file_values.pop("meta", None)
    set_values = parse_set(set_items or [])
    values = {k: v for k, v in (values or {}).items() if v is not None}
    config = config_cls()
    label_field = config_cls.LABEL_FIELD
    if label_field:
        label = values.get(label_field) or set_values.get(label_field) or file_values.get(label_field)
        config = apply(config, {label_field: label or getattr(config, label_field)}, "the defaults")
        config = apply(config, presets.get(config.label(), {}), f"the {config.label()} preset")
    config = apply(config, file_values, f"config file {str(config_file)!r}")
    config = apply(config, set_values, "--set")
    config = apply(config, values, source)
    config.validate()
    return config


def to_dict(config: RunConfig) -> dict[str, Any]:
    """A TOML-ready dict (tuples become lists, None values are left out)."""
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(config).items():
        if value is None:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
