"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016, arXiv 1509.02971).

    initialise actor mu, critic Q, targets mu' <- mu, Q' <- Q, replay buffer D
    for step = 1, 2, ...
        a = clip(mu(s) + N(0, exploration_noise), -1, 1) (uniform random for the first learning_starts steps)
        step the env; store (s, a, r, s') in D
        every train_frequency steps, gradient_steps times, on a minibatch from D:
            y = r + gamma (1 - terminated) Q'(s', mu'(s'))
            one gradient step on L_Q  = mean((Q(s, a) - y)^2)
            one gradient step on L_mu = -mean(Q(s, mu(s)))          (the deterministic policy gradient)
            mu' <- tau mu + (1 - tau) mu',  Q' <- tau Q + (1 - tau) Q'

TD3 is this algorithm plus three changes, each a setting of plainrl/classic/td3.py; DDPG is that file's loop
with them turned off: one critic (n_critics = 1), no target smoothing noise, an actor step on every critic
step (policy_delay = 1). The loop (train) and networks (build_agent) are TD3's, read there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plainrl.classic import td3
from plainrl.kit.config import require

OBSERVATION_SPACES = ("Box",)  # vectors (Discrete, MultiDiscrete, MultiBinary one-hot) and Dicts of them; no images
ACTION_SPACES = ("Box",)


@dataclass
class Config(td3.Config):
    n_critics: int = 1
    policy_delay: int = 1
    target_policy_noise: float = 0.0

    def validate(self) -> None:
        super().validate()
        require(self.n_critics == 1, f"n_critics = {self.n_critics} must be 1 for DDPG (twin critics: use td3)")


PRESETS: dict[str, dict[str, Any]] = td3.PRESETS  # rl-baselines3-zoo tunes DDPG and TD3 alike

build_agent = td3.build_agent
train = td3.train
