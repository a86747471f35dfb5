"""Data-parallel and sharded training on torch.distributed, for runs launched by torchrun (docs/distributed.md).

    torchrun --nproc_per_node N -m plainrl train grpo ...     one process (rank) per device; without torchrun: one

torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK; `join` opens the process group (gloo on CPU,
NCCL on cuda:LOCAL_RANK). torch.distributed does all the communication; this file only says what is exchanged:

- The global batch is what the config says; `shard` gives each rank its consecutive share of it.
- Gradients are *summed* over ranks (`sync_gradients`, or FSDP's reduce-scatter with divide factor 1). A trainer's
  loss on a rank is therefore its part of the global loss: per-token sums divided by the *global* token count
  (`sum` gives it), so every rank count and every loss aggregation yields the single-process gradient.
- Every rank starts from the same seed (identical initial weights); what must differ per rank is keyed by the
  global index of each env or sample (env seeds, `Shard`'s noise), so N processes draw what one process would.
- Metrics are averaged over ranks before logging (`reduce_metrics`); rank 0 alone writes the run folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from plainrl.kit.errors import ConfigError

TIMEOUT_VARIABLE = "PLAINRL_COLLECTIVE_TIMEOUT_S"  # how long a collective waits for a silent rank (default 300 s)


def collective_timeout() -> timedelta:
    """How long a collective waits for a rank that went silent before it fails (torchrun then ends every rank)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "300")
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{TIMEOUT_VARIABLE} = {text!r} must be a whole number of seconds >= 1")
    return timedelta(seconds=int(text))


@dataclass(frozen=True)
class Shard:
    """This rank's rows [start, stop) of a global batch of `total` rows."""

    start: int
    stop: int
    total: int

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    def uniform(self, generator: torch.Generator | None = None, device: Any = "cpu", *shape: int) -> torch.Tensor:
        """Uniform noise for this rank's rows, (stop - start, *shape): drawn for all `total` rows and cut, so a
        row's noise is the same whatever the number of ranks."""
        return torch.rand((self.total, *shape), generator=generator, device=device)[self.rows]


class World:
    """This process's place among the ranks of a job; one rank of one when not launched by torchrun."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0) -> None:
        self.rank, self.size, self.local_rank = rank, size, local_rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, total: int, what: str) -> Shard:
        """This rank's share of `total` items; an error line when the ranks cannot share it equally."""
        if total % self.size:
            raise ConfigError(
                f"{what} = {total} cannot be split over {self.size} processes: make it a multiple of {self.size}"
            )
        per_rank = total // self.size
        return Shard(self.rank * per_rank, (self.rank + 1) * per_rank, total)

    # ----- collectives (no-ops on a world of one) -----------------------------------------------------------
    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a tensor (a count, a statistic), without gradient."""
        if self.size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on some rank (a stop request, a stop asked by a hook)."""
        if self.size == 1:
            return flag
        return bool(self.sum(torch.tensor(float(flag))) > 0)

    def sync_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of replicated parameters over ranks, in one all-reduce (what DDP does after backward).
        FSDP-sharded parameters are skipped: their gradients were reduce-scattered during backward."""
        if self.size == 1:
            return
        replicated = [p for p in params if p.requires_grad and not is_sharded(p)]
        for p in replicated:  # a parameter this rank's batch did not reach still takes part, with zeros
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads: list[torch.Tensor] = [p.grad for p in replicated if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (small Python values: metrics, RNG states), on every rank."""
        if self.size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (a checkpoint read from rank 0's run folder, data rank 0 made)."""
        if self.size == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


WORLD = World()  # this process's world: one rank of one until `join` finds torchrun's variables


def world() -> World:
    return WORLD


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def join() -> World:
    """Open the process group when torchrun launched this process (once; later calls return the same world):
    gloo for CPU tensors and, where there are GPUs, NCCL for GPU tensors on this rank's GPU (cuda:LOCAL_RANK)."""
    global WORLD
    if not launched_by_torchrun() or WORLD.size > 1:
        return WORLD
    rank, size, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if size == 1:
        return WORLD
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl"  # each collective goes where its tensor lives
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=collective_timeout())
    WORLD = World(rank, size, local_rank)
    return WORLD


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: on a GPU job, the GPU torchrun gave it (LOCAL_RANK)."""
    if WORLD.size > 1 and device.type == "cuda":
        return torch.device("cuda", WORLD.local_rank)
    return device


def say(message: str) -> None:
    """Print on rank 0 only (every rank runs the same code: one line, not N)."""
    if WORLD.is_main:
        print(message)


def error_prefix() -> str:
    """'rank 1: ' in a multi-process job, so a failure names the rank it came from."""
    return f"rank {WORLD.rank}: " if WORLD.size > 1 else ""


def reduce_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each metric (over the ranks that logged it), the same on every rank. Throughputs
    (names ending in `_per_second`) are summed: the job's rate, not one rank's."""
    if WORLD.size == 1:
        return metrics
    gathered = WORLD.gather_objects(metrics)
    merged: dict[str, float] = {}
    for key in dict.fromkeys(k for m in gathered for k in m):
        values = [float(m[key]) for m in gathered if key in m]
        merged[key] = sum(values) if key.endswith("_per_second") else sum(values) / len(values)
    return merged


# ----- sharding: FSDP2 ------------------------------------------------------------------------------------------
def is_sharded(param: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(param, DTensor)


def shard_model(model: torch.nn.Module) -> None:
    """Shard a model's parameters over the ranks, in place, with FSDP2 (`fully_shard`): each transformer block, then
    the rest, so a forward gathers one block at a time. Gradients are summed over ranks (divide factor 1), like
    `sync_gradients`. Works on frozen models (a reference) and on LoRA (frozen base, trainable adapters)."""
    from torch.distributed.fsdp import fully_shard

    if WORLD.size == 1:
        raise ConfigError("fsdp = true needs several processes: launch with torchrun --nproc_per_node N (N >= 2)")
    for module in list(model.modules()):
        if module is not model and (type(module).__name__ == "Block" or type(module).__name__.endswith("DecoderLayer")):
            fully_shard(module)
    fully_shard(model)
    for sharded in fsdp_modules(model):
        sharded.set_gradient_divide_factor(1.0)
        sharded.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no pre-multiplied sum


def fsdp_modules(model: torch.nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


class Gathered:
    """`with Gathered(model):` holds every FSDP-sharded parameter whole for the block, so forwards inside it (token by
    token decoding, whose length differs per rank) run without collectives. A no-op on an unsharded model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.modules = fsdp_modules(model)

    def __enter__(self) -> Gathered:
        for module in self.modules:
            module.unshard()
            module.set_reshard_after_forward(False)
        return self

    def __exit__(self, *exc: object) -> None:
        for module in self.modules:
            module.set_reshard_after_forward(True)
            module.reshard()


class FullState:
    """Checkpointing of an FSDP-sharded model and its optimizer: full (unsharded) state dicts gathered to rank 0 and
    loaded back by every rank, so the checkpoint has the same weights a single process saves. `trained_only`: only
    parameters that require grad (as TrainableWeights)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.model, self.optimizer = model, optimizer

    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True, strict=False)

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        if self.optimizer is not None:
            return get_optimizer_state_dict(self.model, self.optimizer, options=self._options())
        trained = {name for name, p in self.model.named_parameters() if p.requires_grad}
        full = get_model_state_dict(self.model, options=self._options())
        return {name: value for name, value in full.items() if name in trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        if self.optimizer is not None:
            set_optimizer_state_dict(self.model, self.optimizer, state, options=self._options())
        else:
            set_model_state_dict(self.model, state, options=self._options())


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, world: World | None = None) -> torch.Tensor:
    """(x - mean) / std over the entries where mask is True (on every rank of `world`); 0 elsewhere."""
    world = world or World()
    mask_f = mask.float()
    n = world.sum(mask_f.sum()).clamp(min=1)
    mean = world.sum((x * mask_f).sum()) / n
    variance = world.sum((((x - mean) * mask_f) ** 2).sum()) / n
    return (x - mean) * torch.rsqrt(variance + 1e-8) * mask_f
