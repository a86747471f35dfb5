"""Optimizers the papers used that PyTorch does not ship."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class RMSpropTF(torch.optim.Optimizer):
    """RMSprop as TensorFlow 1 computes it, the optimizer of the A2C paper's and OpenAI Baselines' Atari runs:

        v <- alpha * v + (1 - alpha) * g^2        v starts at 1, not 0
        p <- p - lr * g / sqrt(v + eps)           eps inside the square root

    PyTorch's RMSprop starts v at 0 and divides by sqrt(v) + eps, so its first step moves every weight by about
    lr / sqrt(1 - alpha) = 10 lr whatever the size of its gradient, where this one moves it by about lr * g;
    Stable-Baselines3 found PyTorch's unstable for A2C on Atari and wrote RMSpropTFLike for it."""

    def __init__(self, params: Iterable[Any], lr: float = 7e-4, alpha: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["square_avg"] = torch.ones_like(param)
                square_avg = state["square_avg"]
                square_avg.mul_(group["alpha"]).addcmul_(param.grad, param.grad, value=1 - group["alpha"])
                param.addcdiv_(param.grad, (square_avg + group["eps"]).sqrt(), value=-group["lr"])
        return loss
