"""The run folder: resolved config, metrics (CSV + TensorBoard, optional wandb), checkpoints, curve.png.

    runs/ppo_CartPole-v1_s0_20261121-101500/
        config.toml        every resolved field, the algorithm and the library versions
        metrics.csv        one row per `log` call: step, time, metrics
        events.out.tfevents.*
        checkpoints/latest.pt   everything needed to resume: model, optimizer, RNG states, step counters
        checkpoints/previous.pt the checkpoint before it: the fallback when latest.pt is unreadable
        checkpoints/best.pt     env runs with eval_every > 0: the agent of the best evaluation during training
        curve.png          the learning curve
        eval.json          written after training (see plainrl.kit.evaluate)

A first Ctrl-C (or SIGTERM) asks the training loop to stop at its next iteration boundary: it writes a
checkpoint and raises RunInterrupted; `plainrl resume RUN_DIR` continues from there. A SIGKILL loses only
the steps since the last checkpoint: resuming truncates metrics.csv back to the checkpoint's step.

Checkpoints are loaded with `torch.load(weights_only=True)`: a crafted file cannot run code, it is refused. A
process training in the folder holds a lock on `.lock` (the OS drops it when the process dies): a second one is
refused rather than garbling the metrics and checkpoints.

In a torchrun job every rank opens the Run, and rank 0 alone touches the folder: it writes metrics (the mean over
ranks), TensorBoard, checkpoints (with every rank's RNG state) and curve.png; it reads the checkpoint on resume and
sends it to the others. A checkpoint records the number of processes, and resuming it with another number is
refused (each rank's RNG state belongs to its rank).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import math
import os
import platform
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import tomli_w
import torch

from plainrl.kit.config import RunConfig, to_dict
from plainrl.kit.distributed import reduce_metrics, world
from plainrl.kit.errors import PlainRLError

CHECKPOINT = "checkpoints/latest.pt"
PREVIOUS_CHECKPOINT = "checkpoints/previous.pt"
BEST_CHECKPOINT = "checkpoints/best.pt"

try:  # numpy's pickles rebuild arrays and scalars with these two functions
    from numpy._core.multiarray import _reconstruct, scalar  # numpy 2
except ImportError:
    from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]  # numpy 1.26

# What a checkpoint holds beyond tensors and plain containers, for torch.load(weights_only=True), which refuses
# everything else. Each entry only builds data, never runs code from the file: numpy arrays and their numeric
# dtypes (replay buffers, tables, statistics, numpy's RNG state), numpy scalars (a number from its raw bytes).
CHECKPOINT_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    _reconstruct,  # an empty ndarray of a given shape and dtype, which the pickle then fills with bytes
    scalar,  # a numpy scalar from its dtype and bytes
    *dict.fromkeys(type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["Float"]),
]


class NonFiniteError(PlainRLError):
    """A logged metric (a loss, a value) became NaN or infinite."""


class RunInterrupted(PlainRLError):
    """Raised after the checkpoint that follows a Ctrl-C or SIGTERM has been written."""


def versions() -> dict[str, str]:
    import gymnasium

    import plainrl

    return {
        "plainrl": plainrl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
    }


def default_run_dir(algo: str, env: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_env = env.replace("/", "-").replace(":", "-")
    return Path("runs") / f"{algo}_{safe_env}_s{seed}_{stamp}"


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The config.toml of an existing run (with 'algo' and 'meta'), or a clear error."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise PlainRLError(f"{str(run_dir)!r} holds no run (no config.toml there)")
    import tomllib

    return tomllib.loads(path.read_text())


def saved_config(run_dir: str | Path, config_cls: type[RunConfig]) -> RunConfig:
    """The validated config a run folder's config.toml records (without its 'algo' and 'meta')."""
    from plainrl.kit.config import apply

    values = read_run_config(run_dir)
    values.pop("algo", None)
    values.pop("meta", None)
    values = config_cls.upgrade_saved_values(values)
    config = apply(config_cls(), values, f"{run_dir}/config.toml")
    config.validate()
    return config


def load_checkpoint_file(
    run_dir: str | Path, map_location: str | torch.device = "cpu", best: bool = False
) -> dict[str, Any]:
    """The run's latest checkpoint; its previous one (with a warning) when latest.pt is missing or unreadable (cut
    short by a crash or a full disk, or refused because it asks to run code). best: checkpoints/best.pt."""
    run_dir = Path(run_dir)
    if best:
        if not (run_dir / BEST_CHECKPOINT).is_file():
            raise PlainRLError(f"{str(run_dir)!r} has no {BEST_CHECKPOINT}: train with eval_every > 0 to keep one")
        try:
            return read_checkpoint(run_dir / BEST_CHECKPOINT, map_location)
        except PlainRLError as e:
            raise PlainRLError(f"{BEST_CHECKPOINT} {e}") from None
    if not any((run_dir / name).is_file() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)):
        raise PlainRLError(f"{str(run_dir)!r} has no checkpoint yet ({CHECKPOINT} is missing)")
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        try:
            state = read_checkpoint(run_dir / name, map_location)
        except PlainRLError as e:
            problems.append(f"{name} {e}")
            continue
        if problems:
            print(f"warning: {problems[0]}; using {name} (step {state['step']})", file=sys.stderr)
        return state
    raise PlainRLError(f"{str(run_dir)!r} has no usable checkpoint: {'; '.join(problems)}")


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """One checkpoint file, or a PlainRLError that says in one line what is wrong with it."""
    if not path.is_file():
        raise PlainRLError("is missing")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many kinds on a damaged file: RuntimeError, EOFError, OSError...
        raise PlainRLError(f"is unreadable ({unreadable_reason(e)})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise PlainRLError("is unreadable (not a plainrl checkpoint)")
    return state


def unreadable_reason(error: Exception) -> str:
    """Why torch.load failed, in one short line."""
    refused = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(error))
    if "Weights only load failed" in str(error) and refused:  # weights_only=True refused what would run code
        return f"refused to load: it asks to run code ({refused.group(1) or refused.group(2)})"
    first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")[:120]
    return f"cut short or damaged: {type(error).__name__}{': ' if first_line else ''}{first_line}"


def lock_run_dir(path: Path) -> int:
    """Lock the run folder for this process until `unlock_run_dir`; a PlainRLError when another process holds it.
    The lock is an flock, which the OS drops when the process dies: a crash leaves no stale lock."""
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise PlainRLError(f"{path} is in use by another process (pid {holder}): wait for it to finish") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock_run_dir(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)  # explicitly: forked children (vector envs) may still hold a copy of fd
    os.close(fd)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_up_torch(config: RunConfig, auto_device: str | None = None) -> torch.device:
    """The first line of every `train(config, run)`: seed the generators with config.seed (same seed, same run),
    give torch its CPU threads, and return the device to train on. `auto_device`: what device = auto means for this
    run, where it depends on more than the config's class (kit.spaces.auto_device: a GPU for images)."""
    from plainrl.kit.distributed import rank_device
    from plainrl.kit.nets import resolve_device

    seed_everything(config.seed)  # the same on every rank of a torchrun job: identical initial weights
    torch.set_num_threads(config.torch_threads)
    device = rank_device(resolve_device(config.device, auto_device or config.AUTO_DEVICE))
    if device.type == "cuda":  # fp32 matmuls on TF32 tensor cores (10-bit mantissa products, fp32 sums)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def precision(config: RunConfig) -> contextlib.AbstractContextManager[Any]:
    """What a training loop runs under: bf16 autocast when config.dtype = "bfloat16" (LLM trainers), so matmuls run
    in bf16 while weights, gradients and optimizer state stay fp32 (the master copy); the trainers take log-softmaxes
    and losses of fp32 logits (`.float()`). Otherwise nothing."""
    from plainrl.kit.nets import resolve_device

    if getattr(config, "dtype", "float32") != "bfloat16":
        return contextlib.nullcontext()
    # No weight cache: autocast keeps the bf16 copy of each weight until its outermost context exits, and this one
    # spans the whole loop, so cached copies would never see an optimizer step (measured: SFT stalled at 4.0 vs 2.0).
    device_type = resolve_device(config.device, config.AUTO_DEVICE).type
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


class Run:
    """One training run's folder. Create it with `Run.create`, reopen an interrupted one with `Run.resume`."""

    def __init__(self, path: Path, algo: str, config: RunConfig, resumed: bool, show_progress: bool = True):
        self.world = world()
        self.writes = self.world.is_main  # rank 0 alone touches the folder
        # Lock before anything in the folder is read or written.
        self._lock: int | None = lock_run_dir(path) if self.writes else None
        try:
            self._open(path, algo, config, resumed, show_progress)
        except BaseException:
            self._unlock()
            raise

    def _open(self, path: Path, algo: str, config: RunConfig, resumed: bool, show_progress: bool) -> None:
        self.dir = path
        self.algo = algo
        self.config = config
        self.resumed = resumed
        self.start_step = 0
        self.elapsed_before = 0.0  # seconds of training in earlier sessions of this run
        self.last_checkpoint_step = 0
        self.stop_requested = False
        self.step_hooks: list[Callable[[int, Any], bool]] = []  # benchmarks: evaluate, stop when solved
        self._started = time.perf_counter()
        self._previous_handlers: dict[int, Any] = {}
        self._progress: Any = None
        self._show_progress = show_progress and self.writes
        self._recent_returns: list[float] = []
        self.last_logged: dict[str, float] = {}
        self.checkpoint_state = load_checkpoint_file(path) if resumed and self.writes else None
        self.checkpoint_state = self.world.broadcast_object(self.checkpoint_state)  # rank 0's, on every rank
        if self.checkpoint_state is not None:
            saved_size = int(self.checkpoint_state.get("world_size", 1))
            if saved_size != self.world.size:
                how = f"torchrun --nproc_per_node {saved_size}" if saved_size > 1 else "without torchrun"
                raise PlainRLError(
                    f"{path} was trained by {saved_size} process(es) and this job has {self.world.size}: resume it "
                    f"with the same number ({how})"
                )
            self.start_step = int(self.checkpoint_state["step"])
            self.last_checkpoint_step = self.start_step
            self.elapsed_before = float(self.checkpoint_state["elapsed"])
        self._last_log = (self.start_step, time.perf_counter())
        self.wandb: Any = None
        if not self.writes:
            return
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self._open_metrics()
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(str(path), purge_step=self.start_step + 1 if resumed else None)
        if config.wandb_project:
            self._open_wandb()

    # ----- creation -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, algo: str, config: RunConfig, run_dir: str | Path | None = None, show_progress: bool = True) -> Run:
        path = Path(run_dir) if run_dir else default_run_dir(algo, config.label(), config.seed)
        path = Path(world().broadcast_object(str(path)))  # rank 0's (a default name carries rank 0's clock)
        if not world().is_main:
            return cls(path, algo, config, resumed=False, show_progress=show_progress)
        if (path / "config.toml").exists():
            raise PlainRLError(
                f"{str(path)!r} already holds a run: `plainrl resume {path}` continues it, or choose another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        resolved = {"algo": algo, **to_dict(config), "meta": {**versions(), "created": datetime.now().isoformat()}}
        (path / "config.toml").write_text(tomli_w.dumps(resolved))
        return cls(path, algo, config, resumed=False, show_progress=show_progress)

    @classmethod
    def resume(cls, run_dir: str | Path, config: RunConfig, show_progress: bool = True) -> Run:
        algo = world().broadcast_object(read_run_config(run_dir)["algo"] if world().is_main else None)  # rank 0's
        return cls(Path(run_dir), algo, config, resumed=True, show_progress=show_progress)

    # ----- metrics --------------------------------------------------------------------------------------
    def _open_metrics(self) -> None:
        path = self.dir / "metrics.csv"
        rows: list[dict[str, str]] = []
        self.columns: list[str] = ["step", "time"]
        if path.exists() and self.resumed:  # keep only what the checkpoint covers
            with path.open() as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                rows = [row for row in reader if int(row["step"]) <= self.start_step]
        self._metrics_file = path.open("w", newline="")
        self._writer = csv.DictWriter(self._metrics_file, fieldnames=self.columns)
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._metrics_file.flush()

    def _add_columns(self, new_columns: list[str]) -> None:
        """A metric appeared for the first time: rewrite the CSV with the wider header."""
        self._metrics_file.close()
        path = self.dir / "metrics.csv"
        with path.open() as f:
            rows = list(csv.DictReader(f))
        self.columns += new_columns
        self._metrics_file = path.open("w", newline="")
        self._writer = csv.DictWriter(self._metrics_file, fieldnames=self.columns)
        self._writer.writeheader()
        self._writer.writerows(rows)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._started

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one row to metrics.csv (with steps_per_second since the last row), write the scalars to
        TensorBoard, advance the progress bar.

        A NaN or infinite metric stops the run with a clear error before it can reach a checkpoint. In a torchrun
        job every rank calls it; the row holds the mean over ranks (throughputs: the sum), written by rank 0.
        """
        metrics = reduce_metrics(metrics)
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{key} = {value} at step {step}: training diverged. The last good checkpoint is at step "
                    f"{self.last_checkpoint_step}; try a lower learning rate or a smaller max_grad_norm"
                )
        now = time.perf_counter()
        steps_per_second = (step - self._last_log[0]) / max(now - self._last_log[1], 1e-9)
        self._last_log = (step, now)
        metrics = {**metrics, "steps_per_second": steps_per_second}
        row: dict[str, float] = {"step": step, "time": round(self.elapsed(), 3), **metrics}
        if not self.writes:
            self.last_logged = row
            return
        self._write_row(row, metrics)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        if "episode_return" in metrics:
            self._recent_returns = (self._recent_returns + [metrics["episode_return"]])[-20:]
        self.last_logged = row  # the orchestrator's final evaluation reuses an evaluation of the last step
        self._advance_progress(step)

    def _open_wandb(self) -> None:
        try:
            import wandb
        except ImportError:
            raise PlainRLError("wandb_project is set but wandb is not installed: pip install plainrl[wandb]") from None
        self.wandb = wandb.init(
            project=self.config.wandb_project, name=self.dir.name, dir=str(self.dir), config=to_dict(self.config),
            id=self.dir.name, resume="allow",
        )  # fmt: skip

    # ----- progress bar ---------------------------------------------------------------------------------
    def _advance_progress(self, step: int) -> None:
        if not self._show_progress:
            return
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn(f"[bold]{self.algo}[/] {self.config.label()}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]:>6.0f} steps/s  return {task.fields[recent]:>8.2f}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train",
                total=self.config.total_steps,
                completed=self.start_step,
                speed=0.0,
                recent=float("nan"),
            )
            self._progress_origin = (time.perf_counter(), step)
        origin_time, origin_step = self._progress_origin
        speed = (step - origin_step) / max(time.perf_counter() - origin_time, 1e-9)
        recent = float(np.mean(self._recent_returns)) if self._recent_returns else float("nan")
        self._progress.update(self._task, completed=step, speed=speed, recent=recent)

    # ----- hooks for benchmarks -------------------------------------------------------------------------
    def call_step_hooks(self, step: int, agent: Any) -> bool:
        """Run the registered hooks (benchmarks use them to evaluate); True means: stop training now (on every rank
        when a hook asks it on one)."""
        return self.world.any(any([hook(step, agent) for hook in self.step_hooks]))

    # ----- checkpoints ----------------------------------------------------------------------------------
    def restore(self, objects: dict[str, Any]) -> bool:
        """On a resumed run, load each object's state (anything with load_state_dict) and the random number
        generators' states from the checkpoint; False on a new run."""
        if self.checkpoint_state is None:
            return False
        for name, obj in objects.items():
            if obj is not None:
                obj.load_state_dict(self.checkpoint_state[name])
        ranks_rng = self.checkpoint_state.get("rng_ranks")
        restore_rng_states(ranks_rng[self.world.rank] if ranks_rng else self.checkpoint_state["rng"])
        return True

    def maybe_checkpoint(self, step: int, objects: dict[str, Any], final: bool = False) -> None:
        """Checkpoint every `checkpoint_every` steps, at the end, and on a stop request: each object's state_dict()
        (modules, optimizers, buffers), or the value itself (an array, a number). Every rank calls it: FSDP gathers
        the full weights, each rank's RNG state is collected, rank 0 writes."""
        due = step - self.last_checkpoint_step >= self.config.checkpoint_every
        self.stop_requested = self.world.any(self.stop_requested)  # one rank's Ctrl-C stops them all, together
        if final or due or self.stop_requested:
            state = {
                name: obj.state_dict() if hasattr(obj, "state_dict") else obj
                for name, obj in objects.items()
                if obj is not None
            }
            self.save_checkpoint(step, state)
        if self.stop_requested:
            command = (
                "plainrl resume"
                if self.world.size == 1
                else f"torchrun ({self.world.size} processes) -m plainrl resume"
            )
            raise RunInterrupted(f"interrupted at step {step}; checkpoint saved. Continue with: {command} {self.dir}")

    def log_evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """A row of an evaluation during training (eval_return ...): metrics.csv and TensorBoard, nothing else
        (no throughput, no progress). Every rank evaluates the same agent; rank 0 writes."""
        if self.writes:
            self._write_row({"step": step, "time": round(self.elapsed(), 3), **metrics}, metrics)

    def _write_row(self, row: dict[str, float], metrics: dict[str, float]) -> None:
        """One row of metrics.csv (new columns added as they appear) and the scalars to TensorBoard."""
        new_columns = [k for k in row if k not in self.columns]
        if new_columns:
            self._add_columns(new_columns)
        self._writer.writerow(row)
        self._metrics_file.flush()
        for key, value in metrics.items():
            self.tensorboard.add_scalar(key, value, int(row["step"]))

    def save_best(self, step: int, state: dict[str, Any]) -> None:
        """checkpoints/best.pt: the state of the best evaluation so far (written whole, then renamed)."""
        if not self.writes:
            return
        best = self.dir / BEST_CHECKPOINT
        best.parent.mkdir(parents=True, exist_ok=True)
        tmp = best.with_suffix(".tmp")
        torch.save({**state, "step": step}, tmp)
        os.replace(tmp, best)

    def save_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """Write latest.pt, keeping the one before as previous.pt. A crash or a full disk at any moment leaves at
        least one of them whole: the new file is on disk before the renames, and each rename is atomic."""
        ranks_rng = self.world.gather_objects(rng_states())
        if not self.writes:
            self.last_checkpoint_step = step
            return
        full_state = {**state, "step": step, "elapsed": self.elapsed(), "rng": ranks_rng[0]}
        if self.world.size > 1:
            full_state.update(world_size=self.world.size, rng_ranks=ranks_rng)
        latest, previous = self.dir / CHECKPOINT, self.dir / PREVIOUS_CHECKPOINT
        tmp = latest.with_suffix(".tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(full_state, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise PlainRLError(
                f"could not write a checkpoint in {self.dir} ({e.strerror or e}); the one at step "
                f"{self.last_checkpoint_step} is intact"
            ) from None
        if latest.exists():
            os.replace(latest, previous)
        os.replace(tmp, latest)
        directory = os.open(latest.parent, os.O_RDONLY)  # make the renames themselves durable
        os.fsync(directory)
        os.close(directory)
        self.last_checkpoint_step = step

    # ----- signals and closing --------------------------------------------------------------------------
    def __enter__(self) -> Run:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, self._request_stop)
        return self

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:  # a second Ctrl-C: stop right now
            raise KeyboardInterrupt
        self.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: stopping at the end of this iteration", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self.close()

    def close(self) -> None:
        if not self.writes:
            return
        try:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            self._metrics_file.close()
            self.tensorboard.close()
            if self.wandb is not None:
                self.wandb.finish()
            from plainrl.kit.plots import plot_run

            plot_run(self.dir)
        finally:
            self._unlock()  # last: another process may train in the folder from here on

    def _unlock(self) -> None:
        if self._lock is not None:
            unlock_run_dir(self._lock)
            self._lock = None


def rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
