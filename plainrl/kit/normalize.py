"""Running observation and reward normalisation. Their statistics live in the agent's state_dict (observation)
or the checkpoint (reward), so a saved run evaluates with the statistics it trained with. Under torchrun every
statistic is taken over all ranks' samples, so every rank normalises alike."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from plainrl.kit.distributed import world


def standardize(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / (std + 1e-8), mean and (unbiased) std over every element of x on all ranks."""
    count, total = world().sum(torch.stack([torch.tensor(float(x.numel()), device=x.device), x.sum()]).double())
    mean = total / count
    squares = world().sum(((x.double() - mean) ** 2).sum())
    return ((x - mean) / (torch.sqrt(squares / (count - 1).clamp(min=1)) + 1e-8)).to(x.dtype)


class RunningMeanStd(nn.Module):
    """Mean and variance over every sample seen so far (parallel-variance merge, Chan et al.)."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge the statistics of `batch` (B, *shape) (all ranks' batches, under torchrun)."""
        batch = batch.to(torch.float64)
        # Count, sum and sum of squares of the batch (on all ranks: a sum over them), then its mean and variance.
        sums = world().sum(torch.stack([torch.full_like(batch[0], batch.shape[0]), batch.sum(0), (batch**2).sum(0)]))
        batch_count, batch_mean = float(sums[0].flatten()[0]), sums[1] / sums[0]
        batch_var = (sums[2] / sums[0] - batch_mean**2).clamp(min=0)  # rounding can dip below 0
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)


class ObsNormalizer(RunningMeanStd):
    """(obs - mean) / std, clipped; statistics change only through `update`, never in forward."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__(shape)
        self.clip, self.epsilon = clip, epsilon

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        normalized = (obs - self.mean) / torch.sqrt(self.var + self.epsilon)
        return normalized.clamp(-self.clip, self.clip).to(obs.dtype)


class RewardScaler:
    """Divides rewards by the running std of the discounted return (as Gymnasium's NormalizeReward)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.stats = RunningMeanStd(())
        self.discounted_return = np.zeros(num_envs)
        self.gamma, self.clip, self.epsilon = gamma, clip, epsilon

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        self.discounted_return = self.discounted_return * self.gamma + rewards
        self.stats.update(torch.as_tensor(self.discounted_return))
        self.discounted_return[dones] = 0.0
        std = float(torch.sqrt(self.stats.var + self.epsilon))
        return np.clip(rewards / std, -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"stats": self.stats.state_dict(), "discounted_return": self.discounted_return.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state["stats"])
        self.discounted_return = np.asarray(state["discounted_return"]).copy()
