"""Networks: mlp(), orthogonal init, and policy heads that turn network outputs into actions.

The heads are written out (rather than wrapping torch.distributions) so each formula is visible, and because
building a distribution object per step costs more than the sampling itself on small batches.
"""

from __future__ import annotations

import math
from typing import TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from plainrl.kit.distributed import Shard
from plainrl.kit.errors import ConfigError
from plainrl.kit.normalize import ObsNormalizer
from plainrl.kit.spaces import DictObservationSpace, has_images, is_image_space

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
L = TypeVar("L", nn.Linear, nn.Conv2d)

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def layer_init(layer: L, gain: float = math.sqrt(2), bias: float = 0.0) -> L:
    """Orthogonal weights and constant bias: the initialisation PPO implementations rely on (convolutions too)."""
    nn.init.orthogonal_(layer.weight, gain)
    assert layer.bias is not None
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(
    in_dim: int,
    hidden_sizes: tuple[int, ...],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float | None = 1.0,
) -> nn.Sequential:
    """in_dim -> hidden_sizes (each followed by `activation`) -> out_dim.

    Orthogonally initialised (gain sqrt(2), last layer `out_gain`), as policy-gradient methods rely on; with
    out_gain=None PyTorch's default initialisation is kept, as value-based methods (DQN) usually use.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation = {activation!r} is not one of {', '.join(ACTIVATIONS)}")

    def init(layer: nn.Linear, gain: float) -> nn.Linear:
        return layer if out_gain is None else layer_init(layer, gain)

    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden_sizes:
        layers += [init(nn.Linear(last, size), math.sqrt(2)), ACTIVATIONS[activation]()]
        last = size
    layers.append(init(nn.Linear(last, out_dim), out_gain or 1.0))
    return nn.Sequential(*layers)


def flat_dim(space: gym.Space) -> int:
    """Size of a flattened observation or action."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(math.prod(space.shape or (1,)))


# ----- observation encoders (kit/spaces.py: which observations are images, Dicts) -----
class NatureCNN(nn.Module):
    """The DQN paper's encoder: three convolutions and a 512-unit layer over 0-255 images, (B, *shape) -> (B, 512)."""

    def __init__(self, shape: tuple[int, ...], features: int = 512) -> None:
        super().__init__()
        self.channels_last = int(np.argmin(shape)) == 2
        channels = shape[2] if self.channels_last else shape[0]
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(channels, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():  # the flattened size for this image size (3136 for 84 x 84)
            flat = self.conv(torch.zeros(1, *self.chw(shape))).shape[-1]
        self.linear = nn.Sequential(layer_init(nn.Linear(flat, features)), nn.ReLU())
        self.features = features

    def chw(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[2], shape[0], shape[1]) if self.channels_last else tuple(shape)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(..., *shape) images -> (..., features): any leading dimensions (a batch, or T x N of a rollout)."""
        leading = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:])  # uint8 in the buffers (a quarter of float32's)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # (B, C, H, W) indexing; its memory stays (B, H, W, C)
        if x.device.type == "cpu":
            # The same numbers laid out (B, H, W, C) in memory, moved while still bytes: oneDNN's convolutions then
            # run a 256-image forward and backward 2.3-2.9x faster on this CPU, PPO on Pong 1.3x (the weights stay
            # as they are, and so do their gradients).
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.float() / 255.0  # keeps the memory layout
        return self.linear(self.conv(x)).reshape(*leading, self.features)


class DictEncoder(nn.Module):
    """One encoder per Dict key over its slice of the flattened observation, (B, flatdim) -> (B, sum of features):
    a Nature CNN for an image entry, the entry's flat values for anything else."""

    def __init__(self, dict_space: gym.spaces.Dict) -> None:
        super().__init__()
        self.sizes = [gym.spaces.flatdim(space) for space in dict_space.spaces.values()]
        self.shapes = [tuple(space.shape or ()) for space in dict_space.spaces.values()]
        self.encoders = nn.ModuleList(
            NatureCNN(shape) if is_image_space(space) else nn.Identity()
            for space, shape in zip(dict_space.spaces.values(), self.shapes, strict=True)
        )
        self.features = sum(
            encoder.features if isinstance(encoder, NatureCNN) else size
            for encoder, size in zip(self.encoders, self.sizes, strict=True)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        parts = obs.split(self.sizes, -1)
        features = []
        for part, shape, encoder in zip(parts, self.shapes, self.encoders, strict=True):
            features.append(encoder(part.reshape(*part.shape[:-1], *shape)) if isinstance(encoder, NatureCNN) else part)
        return torch.cat(features, -1)


def observation_encoder(space: gym.Space) -> tuple[nn.Module, int]:
    """(encoder, feature size) for an observation space. Vectors are read as they are (a Box of more dimensions
    flattened): no weights, so such agents keep separate actor and critic MLPs; an encoder with weights (a CNN) is
    shared by the heads on top. Encoders keep leading dimensions: (..., *shape) -> (..., features)."""
    if isinstance(space, DictObservationSpace) and has_images(space):
        encoder = DictEncoder(space.dict_space)
        return encoder, encoder.features
    if is_image_space(space):
        cnn = NatureCNN(tuple(space.shape or ()))
        return cnn, cnn.features
    shape = space.shape or (1,)
    flatten = nn.Identity() if len(shape) == 1 else nn.Flatten(start_dim=-len(shape))
    return flatten, int(math.prod(shape))


# ----- policy heads -----
class CategoricalHead(nn.Module):
    """A categorical policy over `n` actions, parameterised by logits (B, n)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Gumbel-max: argmax(logits + Gumbel noise) is an exact sample of softmax(logits), without the softmax."""
        gumbel_noise = -torch.log(-torch.log(torch.rand_like(logits)))
        return (logits + gumbel_noise).argmax(-1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return logits.log_softmax(-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s) of the given actions (B,) and the entropy of pi(.|s) (B,)."""
        log_probs = logits.log_softmax(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy


class DiagGaussianHead(nn.Module):
    """A Gaussian policy N(mean, diag(exp(log_std))^2) with a state-independent learned log_std (PPO, TRPO)."""

    def __init__(self, action_dim: int, initial_log_std: float = 0.0) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.full((action_dim,), initial_log_std))

    def sample(self, mean: torch.Tensor) -> torch.Tensor:
        return mean + self.log_std.exp() * torch.randn_like(mean)

    def mode(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_entropy(mean, actions)[0]

    def log_prob_entropy(self, mean: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums over action dimensions, which are independent:
        log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2;  H = log sigma + (1 + log 2 pi) / 2
        """
        z = (actions - mean) / self.log_std.exp()
        log_prob = (-0.5 * z.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)
        entropy = (self.log_std + 0.5 + HALF_LOG_2PI).sum(-1).expand(mean.shape[:-1])
        return log_prob, entropy


class MultiCategoricalHead(nn.Module):
    """A MultiDiscrete policy: one independent categorical per entry, over logits (B, sum(nvec)) cut into groups of
    nvec[i]; a joint action's log-prob and entropy are the sums over the entries (as Stable-Baselines3's)."""

    def __init__(self, nvec: np.ndarray) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec.reshape(-1)]
        self.parts = [CategoricalHead(n) for n in self.nvec]

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        groups = logits.split(self.nvec, -1)
        return torch.stack([head.sample(x) for head, x in zip(self.parts, groups, strict=True)], -1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.argmax(-1) for x in logits.split(self.nvec, -1)], -1)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_entropy(logits, actions)[0]

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, sum(nvec)) logits, (B, k) actions -> log-prob (B,) and entropy (B,), summed over the k entries."""
        pairs = [head.log_prob_entropy(x, actions[..., i])
                 for i, (head, x) in enumerate(zip(self.parts, logits.split(self.nvec, -1), strict=True))]  # fmt: skip
        return torch.stack([p[0] for p in pairs]).sum(0), torch.stack([p[1] for p in pairs]).sum(0)


class BernoulliHead(nn.Module):
    """A MultiBinary policy: n independent coins, P(a_i = 1) = sigmoid(logit_i), over logits (B, n)."""

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(logits) < torch.sigmoid(logits)).to(torch.int8)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).to(torch.int8)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_entropy(logits, actions)[0]

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(a) = sum_i a_i log s_i + (1 - a_i) log(1 - s_i), s = sigmoid(logit) (BCE, stable in the logits);
        H = sum_i -(s_i log s_i + (1 - s_i) log(1 - s_i))."""
        log_prob = -F.binary_cross_entropy_with_logits(logits, actions.float(), reduction="none").sum(-1)
        probs = torch.sigmoid(logits)
        entropy = F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(-1)
        return log_prob, entropy


PolicyHead = CategoricalHead | DiagGaussianHead | MultiCategoricalHead | BernoulliHead


def policy_head(action_space: gym.Space) -> PolicyHead:
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(int(action_space.n))
    if isinstance(action_space, gym.spaces.Box):
        return DiagGaussianHead(flat_dim(action_space))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(action_space.nvec)
    if isinstance(action_space, gym.spaces.MultiBinary):
        return BernoulliHead()
    raise ConfigError(f"no policy head for action space {action_space}")


def policy_output_size(action_space: gym.Space) -> int:
    """How many numbers the actor outputs: logits per action (Discrete), per choice of every entry (MultiDiscrete:
    sum(nvec)), one per coin (MultiBinary), one mean per dimension (Box)."""
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(action_space.nvec.sum())
    return flat_dim(action_space)


MASKED_LOGIT = -1e8  # a masked action's logit: probability exp(-1e8) = 0, yet p log p = 0 (no NaN, unlike -inf)


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with disallowed actions (mask False) at MASKED_LOGIT: they get probability 0 in sampling, in the
    greedy action, in log-probs and in the entropy. mask: (B, n) booleans, or None for no mask."""
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


def resolve_device(device: str, auto: str = "cuda") -> torch.device:
    """'auto' -> `auto` ("cuda": a GPU when there is one, else the CPU; "cpu": the CPU); asking for cuda without one
    is an error. Configs say what auto means for them (RunConfig.AUTO_DEVICE)."""
    if device == "auto":
        return torch.device("cuda" if auto == "cuda" and torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} but no CUDA device is available (use auto or cpu)")
    return torch.device(device)


class ActorCritic(nn.Module):
    """An actor and a critic over encoded observations: PPO, A2C, TRPO, REINFORCE.

    Vector observations (optionally normalised) feed separate actor and critic MLPs. Images (and Dicts holding one)
    go through one Nature CNN that both heads share (kit/spaces.py), with MLPs of `hidden_sizes` on top (none, as
    in the Atari papers: one linear layer each). The observation normaliser sits inside the module, so its
    statistics are saved with the weights and a saved run evaluates with exactly the statistics it trained with.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        normalize_obs: bool = False,
    ) -> None:
        super().__init__()
        self.encoder, features = observation_encoder(observation_space)
        if normalize_obs and has_images(observation_space):
            raise ConfigError("normalize_obs = true is for vector observations; images are scaled to [0, 1] here")
        self.obs_normalizer: nn.Module = ObsNormalizer((features,)) if normalize_obs else nn.Identity()
        self.actor = mlp(features, hidden_sizes, policy_output_size(action_space), activation, out_gain=0.01)
        self.critic = mlp(features, hidden_sizes, 1, activation, out_gain=1.0)
        self.head = policy_head(action_space)

    @property
    def device(self) -> torch.device:
        weight = self.actor[0].weight  # not next(self.parameters()), which walks every submodule (at every step)
        assert isinstance(weight, torch.Tensor)
        return weight.device

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_normalizer(self.encoder(obs))

    def policy_output(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (discrete; masked actions at MASKED_LOGIT) or means (continuous), (B, policy_output_size)."""
        return mask_logits(self.actor(self.features(obs)), mask)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), (B,)."""
        return self.critic(self.features(obs)).squeeze(-1)

    def policy_output_and_value(
        self, obs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """policy_output and value of the same observations, encoding them once (a CNN's pass is most of the cost)."""
        features = self.features(obs)
        return mask_logits(self.actor(features), mask), self.critic(features).squeeze(-1)

    @torch.inference_mode()
    def sample(
        self, obs: np.ndarray, mask: np.ndarray | None = None, shard: Shard | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rollout-time sampling: numpy observations (and action masks) in, (actions, their log-probs) out. `shard`:
        these are rows [start, stop) of all ranks' envs: the noise of all rows is drawn (sampling a zero-padded
        batch) and this rank's kept, so an env's actions do not depend on the number of ranks."""
        mask_tensor = None if mask is None else torch.as_tensor(mask, device=self.device)
        output = self.policy_output(torch.as_tensor(obs, device=self.device), mask_tensor)
        if shard is None or shard.total == len(output):  # all the rows: nothing to pad (one process)
            actions = self.head.sample(output)
        else:
            padded = output.new_zeros((shard.total, *output.shape[1:]))
            padded[shard.rows] = output
            actions = self.head.sample(padded)[shard.rows]
        return actions.cpu().numpy(), self.head.log_prob(output, actions).cpu().numpy()

    def act(self, obs: torch.Tensor, deterministic: bool = False, mask: torch.Tensor | None = None) -> torch.Tensor:
        output = self.policy_output(obs, mask)
        return self.head.mode(output) if deterministic else self.head.sample(output)

    def update_obs_statistics(self, obs: torch.Tensor) -> None:
        """Merge a rollout's observations into the normaliser (call between updates, never during one)."""
        if isinstance(self.obs_normalizer, ObsNormalizer):
            self.obs_normalizer.update(self.encoder(obs))


class QNetwork(nn.Module):
    """Q(s, .) for a discrete action space, (B, n_actions), over encoded observations (a Nature CNN for images, as
    in the DQN paper; vectors as they are). Dueling (Wang et al. 2016, arXiv 1511.06581):
    Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a'), with V and A as separate heads on a shared trunk."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
        orthogonal_init: bool = False,
    ) -> None:
        """orthogonal_init=False keeps PyTorch's default initialisation, as the DQN references (SB3, CleanRL) do:
        measured here, DQN on CartPole needs ~1.7x the steps with orthogonal init, deep SARSA learns far
        slower without it."""
        super().__init__()
        self.encoder, features = observation_encoder(observation_space)
        n_actions = flat_dim(action_space)
        self.dueling = dueling
        out_gain = 1.0 if orthogonal_init else None
        if dueling:
            if hidden_sizes:
                self.trunk = mlp(features, hidden_sizes[:-1], hidden_sizes[-1], activation, out_gain=out_gain)
                self.trunk.append(ACTIVATIONS[activation]())
            else:  # the encoder's features are the trunk (images: the CNN's 512)
                self.trunk = nn.Sequential()
            width = hidden_sizes[-1] if hidden_sizes else features
            self.value_head = nn.Linear(width, 1)
            self.advantage_head = nn.Linear(width, n_actions)
        else:
            self.q = mlp(features, hidden_sizes, n_actions, activation, out_gain=out_gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(obs)
        if not self.dueling:
            return self.q(features)
        features = self.trunk(features)
        advantages = self.advantage_head(features)
        return self.value_head(features) + advantages - advantages.mean(-1, keepdim=True)

    def act(self, obs: torch.Tensor, deterministic: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy action among the allowed ones (exploration is the training loop's business)."""
        return mask_logits(self(obs), mask).argmax(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target, parameter by parameter (tau = 1: a hard copy)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)  # one op for all tensors


class QEnsemble(nn.Module):
    """`n` independent critics Q_i(s, a), evaluated together in one pass: (B, obs), (B, act) -> (n, B).

    Each layer holds the n critics' weights stacked as one (n, in, out) tensor, so a forward pass is one batched
    matrix multiply per layer instead of n (on small networks the per-op overhead, not arithmetic, is the cost).
    DDPG uses n = 1, TD3 and SAC the twin critics of clipped double-Q, n = 2. Initialised as nn.Linear is.
    """

    def __init__(
        self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...], n: int = 2, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation = {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]()
        sizes = [obs_dim + action_dim, *hidden_sizes, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Q_i(s, a) for every critic, (n, B). detach_params: gradients flow to `actions` only (actor losses)."""
        x = torch.cat([obs, actions], -1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            # (B, in) @ (n, in, out) broadcasts to (n, B, out): every critic sees the same batch.
            x = torch.baddbmm(bias, x.expand(len(weight), *x.shape[-2:]), weight)
            if i < last:
                x = self.activation(x)
        return x.squeeze(-1)


class BoxActor(nn.Module):
    """Base for continuous-action actors that work in [-1, 1]^d and map to the env's bounds [low, high]."""

    action_scale: torch.Tensor
    action_bias: torch.Tensor

    def __init__(self, action_space: gym.Space) -> None:
        super().__init__()
        if not isinstance(action_space, gym.spaces.Box) or not np.all(np.isfinite(action_space.low)):
            raise ConfigError(f"this actor needs a bounded Box action space, got {action_space}")
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [low, high]."""
        return actions * self.action_scale + self.action_bias


class DeterministicActor(BoxActor):
    """a = mu(s) = tanh(mlp(s)) in [-1, 1]^d (DDPG, TD3); exploration noise is the training loop's business."""

    def __init__(
        self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes: tuple[int, ...], activation: str
    ) -> None:
        super().__init__(action_space)
        self.net = mlp(flat_dim(observation_space), hidden_sizes, flat_dim(action_space), activation, out_gain=None)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.to_env(self(obs))


def squashed_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = mean + std * eps (reparameterised); returns (a, log pi(a|s)), (B, d) and (B,).

    Change of variables: log pi(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2), and
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite where tanh(u) rounds to +-1.
    """
    eps = torch.randn_like(mean)
    u = mean + log_std.exp() * eps
    log_prob_u = -0.5 * eps.pow(2) - log_std - HALF_LOG_2PI
    log_det_jacobian = 2 * (math.log(2) - u - F.softplus(-2 * u))
    return torch.tanh(u), (log_prob_u - log_det_jacobian).sum(-1)


class TanhGaussianActor(BoxActor):
    """SAC's policy: a = tanh(u), u ~ N(mean(s), std(s)^2) with a state-dependent std, in [-1, 1]^d."""

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(
        self, observation_space: gym.Space, action_space: gym.Space, hidden_sizes: tuple[int, ...], activation: str
    ) -> None:
        super().__init__(action_space)
        self.action_dim = flat_dim(action_space)
        self.net = mlp(flat_dim(observation_space), hidden_sizes, 2 * self.action_dim, activation, out_gain=None)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and its log-prob: ((B, d) in [-1, 1], (B,))."""
        mean, log_std = self.net(obs).split(self.action_dim, -1)
        return squashed_gaussian_sample(mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX))

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if deterministic:
            return self.to_env(torch.tanh(self.net(obs)[..., : self.action_dim]))
        return self.to_env(self(obs)[0])
