"""What every tabular method shares: the configs, the Q-table agent, epsilon-greedy choice, and `EpisodeLoop`,
which keeps the books of a model-free method (steps, episodes, the learning curve, checkpoints) so that each
algorithm's file holds only the algorithm. The model that dynamic programming needs is in models.py.

States and actions are integers 0..n-1 (Gymnasium `Discrete` spaces), so a value function is a numpy
array: v has shape (n_states,), Q has shape (n_states, n_actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from plainrl.kit.config import EnvConfig, require
from plainrl.kit.envs import make_env
from plainrl.kit.run import Run
from plainrl.tabular.models import check_settable_state, model_of
from plainrl.tabular.plots import draw_values

ACTION_SPACES = ("Discrete",)
OBSERVATION_SPACES = ("Discrete",)


# ----- configs --------------------------------------------------------------------------------------------
@dataclass
class TabularConfig(EnvConfig):
    env: str = "plainrl/GridWorld-v0"
    device: str = "cpu"  # tables live in numpy; the agent wrapper only evaluates
    gamma: float = 0.9  # the discount rate

    def validate(self) -> None:
        super().validate()
        require(0 < self.gamma <= 1, f"gamma = {self.gamma} must be in (0, 1]")


@dataclass
class ModelFreeConfig(TabularConfig):
    """total_steps counts env steps; the episode running when the budget is spent is played to its end."""

    total_steps: int = 20_000
    max_episode_steps: int = 1_000  # truncate longer episodes (CliffWalking-v1 has no time limit of its own)
    initial_q: float = 0.0  # above the true values ("optimistic", Sutton & Barto 2.6) it makes greedy choices explore
    log_every: int = 1_000  # env steps between rows of metrics.csv

    def validate(self) -> None:
        super().validate()
        require(self.max_episode_steps >= 1, f"max_episode_steps = {self.max_episode_steps} must be >= 1")
        require(self.log_every >= 1, f"log_every = {self.log_every} must be >= 1")


@dataclass
class EpsilonGreedyConfig(ModelFreeConfig):
    """Exploration: epsilon moves linearly to `epsilon_end` over the first `decay_fraction` of total_steps,
    then stays there (epsilon_end None: a constant epsilon)."""

    epsilon: float = 0.1
    epsilon_end: float | None = None
    decay_fraction: float = 1.0

    def validate(self) -> None:
        super().validate()
        for name in ("epsilon", "epsilon_end"):
            value = getattr(self, name)
            require(value is None or 0 <= value <= 1, f"{name} = {value} must be in [0, 1]")
        require(0 < self.decay_fraction <= 1, f"decay_fraction = {self.decay_fraction} must be in (0, 1]")

    def schedule(self, start: float, end: float | None, step: int) -> float:
        """`start` moved linearly toward `end` (None: stay at start) over the first decay_fraction of the run."""
        progress = min(1.0, step / (self.decay_fraction * self.total_steps))
        return start if end is None else start + progress * (end - start)

    def epsilon_at(self, step: int) -> float:
        return self.schedule(self.epsilon, self.epsilon_end, step)


# ----- the agent ------------------------------------------------------------------------------------------
class QTableAgent(nn.Module):
    """The table Q(s, a) inside an nn.Module, so that the kit can checkpoint, load and evaluate it.

    The table is a parameter without gradient: it is what the method learns, and it is saved in state_dict.
    `act` picks argmax_a Q(s, a) (ties go to the lowest action), or explores with probability `epsilon`.
    """

    epsilon: torch.Tensor

    def __init__(self, n_states: int, n_actions: int) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.zeros(n_states, n_actions, dtype=torch.float64), requires_grad=False)
        self.register_buffer("epsilon", torch.tensor(0.0))

    def table(self) -> np.ndarray:
        """Q as a numpy array that shares the parameter's memory: writing it writes the agent."""
        return self.q.detach().numpy()

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        states = obs.long().reshape(-1)  # observations arrive as floats, (B,) or (B, 1)
        greedy = self.q[states].argmax(-1)
        if deterministic:
            return greedy
        explore = torch.rand(len(states), device=self.q.device) < self.epsilon
        random_actions = torch.randint(self.q.shape[1], (len(states),), device=self.q.device)
        return torch.where(explore, random_actions, greedy)


def build_agent(config: EnvConfig, observation_space: gym.Space, action_space: gym.Space) -> QTableAgent:
    assert isinstance(observation_space, gym.spaces.Discrete) and isinstance(action_space, gym.spaces.Discrete)
    return QTableAgent(int(observation_space.n), int(action_space.n))


# ----- choosing actions -----------------------------------------------------------------------------------
def greedy_action(q_row: np.ndarray, rng: np.random.Generator) -> int:
    """argmax_a Q(s, a), ties broken at random (always taking the first would starve the others)."""
    values = q_row.tolist()  # a handful of actions: plain Python is quicker than numpy here
    best_value = max(values)
    best = [action for action, value in enumerate(values) if value == best_value]
    return best[0] if len(best) == 1 else best[int(rng.integers(len(best)))]


def epsilon_greedy(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """With probability epsilon a uniformly random action, otherwise a greedy one."""
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    return greedy_action(q_row, rng)


def epsilon_greedy_probabilities(q_row: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(a|s) of `epsilon_greedy`: epsilon / |A| for every action, plus 1 - epsilon shared by the greedy ones."""
    best = q_row == q_row.max()
    return epsilon / len(q_row) + (1 - epsilon) * best / best.sum()


# ----- the bookkeeping of a model-free method -------------------------------------------------------------
class EpisodeLoop:
    """One seeded env and the books of a model-free method: steps, episodes, epsilon, the learning curve,
    checkpoints, resuming, and the pictures at the end.

        loop = EpisodeLoop(config, run)          # restores Q, extra tables and the RNG when resuming
        while loop.running():                    # logs, checkpoints, checks the budget
            state = loop.reset()
            ... next_state, reward, terminated, truncated = loop.step(action) ...
        return loop.finish()

    `running()` is the only place that logs and checkpoints, so call it where the tables are consistent (between
    episodes). The loop's RNG and the env's are checkpointed: a resumed run takes exactly the steps the
    uninterrupted run would have taken. `run` may be None (tests, notebooks).
    """

    def __init__(self, config: ModelFreeConfig, run: Run | None = None, tables: tuple[str, ...] = ()) -> None:
        self.config, self.run = config, run
        self.env = make_env(config.env)
        self.agent = build_agent(config, self.env.observation_space, self.env.action_space)
        self.q = self.agent.table()
        self.q[:] = config.initial_q
        self.n_states, self.n_actions = self.q.shape
        # What else the method learns, shaped like Q, that a resume needs (MC's sums and counts of returns).
        self.tables = {name: np.zeros_like(self.q) for name in tables}
        self.rng = np.random.default_rng(config.seed)
        self.env.reset(seed=config.seed)  # seeds the env's RNG once; its state is checkpointed with the loop's
        self.steps, self.episodes = 0, 0
        self.episode_steps, self.episode_return = 0, 0.0
        self.finished: list[tuple[float, int]] = []  # (return, length) of the episodes since the last log
        self.last_log = 0
        self.stop = False
        if run is not None and run.restore({"agent": self.agent, "loop": self}):
            self.steps = self.last_log = run.start_step

    @property
    def epsilon(self) -> float:
        """Epsilon now, on the config's schedule."""
        return self.config.epsilon_at(self.steps) if isinstance(self.config, EpsilonGreedyConfig) else 0.0

    @property
    def alpha(self) -> float:
        """The step size now, on the config's schedule (TD methods)."""
        return self.config.alpha_at(self.steps)  # type: ignore[attr-defined]

    def running(self) -> bool:
        """Between episodes: log, checkpoint and run benchmark hooks when due; False once the budget is spent."""
        if self.run is not None:
            if self.steps - self.last_log >= self.config.log_every:
                self._log()
            self.run.maybe_checkpoint(self.steps, {"agent": self.agent, "loop": self})
            self.stop = self.stop or self.run.call_step_hooks(self.steps, self.agent)
        return self.steps < self.config.total_steps and not self.stop

    def reset(self) -> int:
        state, _ = self.env.reset()
        self.episode_steps, self.episode_return = 0, 0.0
        return int(state)

    def start_states(self) -> np.ndarray:
        """The states `start_at` can begin an episode in (every visitable one); fails early if the env can't."""
        check_settable_state(self.env)
        return np.flatnonzero(model_of(self.env).visitable)

    def start_at(self, state: int) -> int:
        """Begin an episode in `state` (exploring starts); see `check_settable_state`."""
        self.reset()
        self.env.unwrapped.s = state  # type: ignore[attr-defined]
        return state

    def step(self, action: int) -> tuple[int, float, bool, bool]:
        """(next_state, reward, terminated, truncated). Truncated: cut by a time limit (the env's or
        max_episode_steps), so the value of next_state still counts; terminated: nothing follows."""
        next_state, reward, terminated, truncated, _ = self.env.step(action)
        self.steps += 1
        self.episode_steps += 1
        truncated = truncated or (self.episode_steps >= self.config.max_episode_steps and not terminated)
        self.episode_return += float(reward)
        if terminated or truncated:
            self.episodes += 1
            self.finished.append((self.episode_return, self.episode_steps))
        return int(next_state), float(reward), bool(terminated), bool(truncated)

    def finish(self) -> QTableAgent:
        """The final log, checkpoint and values.png; the trained agent."""
        self.agent.epsilon.fill_(self.epsilon)
        self.env.close()
        if self.run is not None:
            if self.steps > self.last_log:
                self._log()
            self.run.maybe_checkpoint(self.steps, {"agent": self.agent, "loop": self}, final=True)
            title = f"{self.run.algo} on {self.config.env}"
            draw_values(self.run.dir / "values.png", self.config.env, self.q, title=title)
        return self.agent

    def _log(self) -> None:
        assert self.run is not None
        metrics = {"episodes": float(self.episodes)}
        if self.finished:
            returns, lengths = zip(*self.finished, strict=True)
            metrics |= {"episode_return": float(np.mean(returns)), "episode_length": float(np.mean(lengths))}
            self.finished = []
        if isinstance(self.config, EpsilonGreedyConfig):
            metrics["epsilon"] = self.epsilon
        if hasattr(self.config, "alpha_at"):
            metrics["alpha"] = self.alpha
        self.run.log(self.steps, metrics)
        self.last_log = self.steps

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the loop (the agent's Q-table is restored beside it): other tables, both RNGs, episodes."""
        for name, table in self.tables.items():
            table[...] = state["tables"][name]
        self.rng.bit_generator.state = state["loop_rng"]
        self.env.unwrapped.np_random.bit_generator.state = state["env_rng"]
        self.episodes = int(state["episodes"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "tables": {name: table.copy() for name, table in self.tables.items()},
            "loop_rng": self.rng.bit_generator.state,
            "env_rng": self.env.unwrapped.np_random.bit_generator.state,
            "episodes": self.episodes,
        }
