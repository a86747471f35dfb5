"""A decode step captured as a CUDA graph: the step's few hundred kernels launched as one.

Decoding one token of a small model on a GPU is launch-bound: each of its kernels takes microseconds to run and
about as long for the CPU to launch, so the GPU mostly waits for Python. A CUDA graph records the kernels of one
call once and replays them with a single launch. What a replay may not do is anything the recording did not:
Python code does not run, shapes are the recorded ones, inputs are read from the recorded addresses. Hence

    buffers:  the step's inputs live in tensors allocated once; each step writes its values into them in place
    shapes:   the model's fixed-shape forward (model.py, `slots=`): the KV cache slot to write is a device tensor,
              attention reads the whole preallocated cache under a mask
    capture:  run the step twice on a side stream (kernels are chosen and workspaces allocated outside the graph),
              then record it; every later call is one replay

    step = StepGraph(lambda: model(tokens, positions, key_mask, cache, last_only=True, slots=slots), capture=True)
    tokens.copy_(next_tokens); slots += 1; ...; logits = step()    # the same output tensor each call: read it first

Without capture (capture=False, and always on the CPU) the step simply runs: the same arithmetic, which is how
the tests check it on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from plainrl.kit.distributed import fsdp_modules
from plainrl.kit.errors import ConfigError
from plainrl.llm.model import Transformer


class StepGraph:
    """fn(), which reads fixed input buffers, replayed as a CUDA graph once captured (see the module doc)."""

    def __init__(self, fn: Callable[[], Any], capture: bool) -> None:
        self.fn = fn
        self.capture = capture
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Any = None

    def __call__(self) -> Any:
        if not self.capture:
            return self.fn()
        if self.graph is None:
            # Warm-up outside the graph; it computes this very step (the cache writes are the same each time).
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.fn()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = self.fn()
        self.graph.replay()
        return self.output


def decode_mode(mode: str, model: Any, device: torch.device) -> str:
    """'dynamic', 'static' or 'graph' for generate(decode=mode): 'auto' is a graph for the built-in model on a GPU
    (the only model with a fixed-shape forward) and dynamic otherwise."""
    if mode not in ("auto", "dynamic", "static", "graph"):
        raise ConfigError(f"decode = {mode!r} is not one of auto, dynamic, static, graph")
    # The built-in model has the fixed-shape forward; an FSDP-sharded one gathers its weights in hooks, which a
    # graph would not replay.
    fixed_shapes = isinstance(model, Transformer) and not fsdp_modules(model)
    if mode == "auto":
        return "graph" if fixed_shapes and device.type == "cuda" else "dynamic"
    if mode != "dynamic" and not fixed_shapes:
        raise ConfigError(f"decode = {mode!r} needs the built-in model, unsharded (a fixed-shape forward); use dynamic")
    if mode == "graph" and device.type != "cuda":
        raise ConfigError(f"decode = 'graph' needs a CUDA device, not {device.type}; use static or dynamic")
    return mode
