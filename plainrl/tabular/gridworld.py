"""GridWorld: the grid of Shiyu Zhao's "Mathematical Foundations of Reinforcement Learning", with the
Gymnasium API. Registered as `plainrl/GridWorld-v0` (the default layout below, episodes of 100 steps).

    . . . . .      .  a free cell
    . F F . .      F  forbidden: the agent may enter it, and is charged r_forbidden each time it does
    . . F . .      T  the target: entering it (or staying in it) earns r_target
    . F T F .      #  a wall: moving into it is like moving off the grid (the agent stays, charged r_boundary)
    . F . . .      S  the start cell (without one, every episode starts in a random free cell '.')

States are cells numbered row * ncol + col, as in FrozenLake and CliffWalking. Actions: 0 up, 1 right,
2 down, 3 left, 4 stay. Moving into a free cell earns r_other (0). With probability `slip` the grid ignores
the action and carries out a uniformly random one (any of the five) instead.

As in the book, the target does not end the episode: the best an agent can do is reach it and stay, earning
r_target every step, so v*(target) = r_target / (1 - gamma). With `target_terminates=True` entering the
target ends the episode instead (the textbook's episodic version, v(target) = 0).

Like Gymnasium's toy-text envs, the env exposes its model for dynamic programming:
`P[s][a] = [(probability, next_state, reward, terminated), ...]`, `initial_state_distrib` (the start
distribution), and keeps its current state in `s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

DEFAULT_LAYOUT = (
    ".....",
    ".FF..",
    "..F..",
    ".FTF.",
    ".F...",
)
ACTION_NAMES = ("up", "right", "down", "left", "stay")
ACTION_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))  # (row change, column change) of each action
CELL_KINDS = ".FT#S"


class GridWorld(gym.Env):
    """A grid of free, forbidden and wall cells with one target. See the module docstring."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        layout: Sequence[str] = DEFAULT_LAYOUT,
        r_boundary: float = -1.0,
        r_forbidden: float = -10.0,
        r_target: float = 1.0,
        r_other: float = 0.0,
        slip: float = 0.0,
        target_terminates: bool = False,
        render_mode: str | None = None,
    ) -> None:
        _check_layout(layout, slip)
        self.layout = np.array([list(row) for row in layout])
        self.nrow, self.ncol = self.layout.shape
        self.rewards = {"boundary": r_boundary, "forbidden": r_forbidden, "target": r_target, "other": r_other}
        self.slip = slip
        self.target_terminates = target_terminates
        self.render_mode = render_mode
        n_states, n_actions = self.nrow * self.ncol, len(ACTION_NAMES)
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(n_actions)

        # The model: P[s][a] lists every outcome of action a in state s. Walls get rows too (the agent is
        # never there) so that states stay numbered row * ncol + col.
        self.P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {
            s: {a: self._outcomes(s, a) for a in range(n_actions)} for s in range(n_states)
        }
        starts = self.cells("S") or self.cells(".")
        self.initial_state_distrib = np.zeros(n_states)
        self.initial_state_distrib[starts] = 1.0 / len(starts)
        self.s = starts[0]

    # ----- the model --------------------------------------------------------------------------------------
    def kind(self, state: int) -> str:
        """The cell's letter in the layout: '.', 'F', 'T', '#' or 'S'."""
        return str(self.layout[divmod(state, self.ncol)])

    def cells(self, kind: str) -> list[int]:
        return [s for s in range(self.nrow * self.ncol) if self.kind(s) == kind]

    def move(self, state: int, action: int) -> tuple[int, float]:
        """Where `action` takes the agent from `state` when it does not slip, and the reward for it."""
        row, col = divmod(state, self.ncol)
        d_row, d_col = ACTION_MOVES[action]
        row, col = row + d_row, col + d_col
        if not (0 <= row < self.nrow and 0 <= col < self.ncol) or self.layout[row, col] == "#":
            return state, self.rewards["boundary"]  # bounced back
        next_state = row * self.ncol + col
        kind = {"T": "target", "F": "forbidden"}.get(self.kind(next_state), "other")
        return next_state, self.rewards[kind]

    def _outcomes(self, state: int, action: int) -> list[tuple[float, int, float, bool]]:
        """(probability, next state, reward, terminated) for each action the agent may end up taking."""
        outcomes = []
        for taken in range(len(ACTION_NAMES)):
            probability = (1.0 - self.slip) * (taken == action) + self.slip / len(ACTION_NAMES)
            if probability > 0:
                next_state, reward = self.move(state, taken)
                terminated = self.target_terminates and self.kind(next_state) == "T"
                outcomes.append((probability, next_state, reward, terminated))
        return outcomes

    # ----- the Gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.s = _sample(self.initial_state_distrib, self.np_random)
        return self.s, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict]:
        outcomes = self.P[self.s][int(action)]
        i = 0 if len(outcomes) == 1 else _sample([p for p, *_ in outcomes], self.np_random)
        probability, self.s, reward, terminated = outcomes[i]
        return self.s, reward, terminated, False, {"prob": probability}

    def render(self) -> Any:
        if self.render_mode == "ansi":
            rows = [list(row) for row in self.layout]
            row, col = divmod(self.s, self.ncol)
            rows[row][col] = "A"
            return "\n".join(" ".join(row) for row in rows) + "\n"
        if self.render_mode == "rgb_array":
            return self._image()
        return None

    def _image(self, cell: int = 48) -> np.ndarray:
        colours = {".": (245, 245, 245), "S": (245, 245, 245), "F": (250, 170, 60), "T": (80, 170, 230),
                   "#": (60, 60, 60)}  # fmt: skip
        image = np.zeros((self.nrow * cell, self.ncol * cell, 3), dtype=np.uint8)
        for state in range(self.nrow * self.ncol):
            row, col = divmod(state, self.ncol)
            image[row * cell + 1 : (row + 1) * cell - 1, col * cell + 1 : (col + 1) * cell - 1] = colours[
                self.kind(state)
            ]
        row, col = divmod(self.s, self.ncol)
        margin = cell // 4
        image[row * cell + margin : (row + 1) * cell - margin, col * cell + margin : (col + 1) * cell - margin] = (
            30, 30, 30,
        )  # fmt: skip
        return image


def _sample(probabilities: Sequence[float] | np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with the given probabilities."""
    index = int(np.searchsorted(np.cumsum(probabilities), rng.random(), side="right"))
    return min(index, len(probabilities) - 1)  # the cumulative sum may end a rounding error below 1


def _check_layout(layout: Sequence[str], slip: float) -> None:
    if len({len(row) for row in layout}) != 1 or not layout[0]:
        raise ValueError(f"GridWorld layout rows must be non-empty and of equal length, got {list(layout)}")
    letters = "".join(layout)
    if set(letters) - set(CELL_KINDS):
        raise ValueError(f"GridWorld layout may use only {CELL_KINDS!r}, got {sorted(set(letters))}")
    if letters.count("T") != 1 or letters.count("S") > 1:
        raise ValueError("GridWorld layout needs exactly one target 'T' and at most one start 'S'")
    if not 0 <= slip <= 1:
        raise ValueError(f"GridWorld slip = {slip} must be in [0, 1]")
