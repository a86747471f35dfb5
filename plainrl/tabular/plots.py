"""Pictures of a tabular run: values.png, the state values max_a Q(s, a) as a heatmap with the greedy action
drawn in every cell, and for dynamic programming a curve.png of how the values converged.

Grids are known for plainrl/GridWorld, FrozenLake and CliffWalking (state = row * ncol + col) and for Taxi
(one 5x5 panel per passenger location and destination). Other envs get no values.png.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from plainrl.kit.envs import make_env  # noqa: E402
from plainrl.kit.plots import plot_run, read_metrics  # noqa: E402
from plainrl.tabular.models import has_model, model_of  # noqa: E402

UP, RIGHT, DOWN, LEFT = (-1, 0), (0, 1), (1, 0), (0, -1)  # (row change, column change)
CELL_STYLE = {  # how a cell's kind is outlined
    "hazard": dict(edgecolor="tab:orange", linewidth=3.0, fill=False),  # forbidden cell, hole, cliff
    "goal": dict(edgecolor="tab:blue", linewidth=3.0, fill=False),  # target, goal, destination
    "start": dict(edgecolor="black", linewidth=1.5, linestyle="--", fill=False),
    "wall": dict(facecolor="0.25", edgecolor="0.25", fill=True),
}


@dataclass
class Panel:
    title: str
    states: np.ndarray  # (nrow, ncol): the state shown in each cell
    kinds: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> a CELL_STYLE key


@dataclass
class GridPicture:
    panels: list[Panel]
    marks: list[tuple[int, int] | str]  # per action: the move it makes (an arrow; (0, 0) a dot), or a letter


def grid_picture(env: gym.Env) -> GridPicture | None:
    """How to lay the env's states out on a grid, or None where there is no grid."""
    inner = env.unwrapped
    name = type(inner).__name__
    if name == "GridWorld":
        from plainrl.tabular.gridworld import ACTION_MOVES

        letters = {"F": "hazard", "T": "goal", "#": "wall", "S": "start"}
        kinds = {(r, c): letters[k] for (r, c), k in np.ndenumerate(inner.layout) if k in letters}  # type: ignore[attr-defined]
        return GridPicture([_panel("", inner.nrow, inner.ncol, kinds)], list(ACTION_MOVES))  # type: ignore[attr-defined]
    if name == "FrozenLakeEnv":
        lake_letters = {b"H": "hazard", b"G": "goal", b"S": "start"}
        kinds = {(r, c): lake_letters[k] for (r, c), k in np.ndenumerate(inner.desc) if k in lake_letters}  # type: ignore[attr-defined]
        return GridPicture([_panel("", inner.nrow, inner.ncol, kinds)], [LEFT, DOWN, RIGHT, UP])  # type: ignore[attr-defined]
    if name == "CliffWalkingEnv":
        nrow, ncol = inner.shape  # type: ignore[attr-defined]
        kinds = {(r, c): "hazard" for r, c in zip(*np.nonzero(inner._cliff), strict=True)}  # type: ignore[attr-defined]
        kinds[nrow - 1, 0], kinds[nrow - 1, ncol - 1] = "start", "goal"
        return GridPicture([_panel("", nrow, ncol, kinds)], [UP, RIGHT, DOWN, LEFT])
    if name == "TaxiEnv":
        return _taxi_picture(inner)
    return None


def _panel(title: str, nrow: int, ncol: int, kinds: dict[tuple[int, int], str]) -> Panel:
    return Panel(title, np.arange(nrow * ncol).reshape(nrow, ncol), kinds)


def _taxi_picture(taxi: gym.Env) -> GridPicture:
    """One panel per (passenger location, destination): the taxi's position varies over the 5x5 grid."""
    names, locations = "RGYB", taxi.locs  # type: ignore[attr-defined]
    panels = []
    for destination in range(4):
        for passenger in [p for p in range(4) if p != destination] + [4]:  # 4: in the taxi
            states = np.array([[taxi.encode(r, c, passenger, destination) for c in range(5)] for r in range(5)])  # type: ignore[attr-defined]
            kinds = {tuple(locations[destination]): "goal"}
            if passenger < 4:
                kinds[tuple(locations[passenger])] = "start"
            where = "in taxi" if passenger == 4 else f"at {names[passenger]}"
            panels.append(Panel(f"passenger {where}, to {names[destination]}", states, kinds))
    return GridPicture(panels, [DOWN, UP, RIGHT, LEFT, "P", "D"])


def draw_values(path: str | Path, env_id: str, q: np.ndarray, title: str = "") -> Path | None:
    """values.png: max_a Q(s, a) in colour and the greedy action of every state the agent can be in."""
    env = make_env(env_id)
    picture = grid_picture(env)
    model = model_of(env) if has_model(env) else None
    env.close()
    if picture is None:
        return None
    values, actions = q.max(1), q.argmax(1)
    visitable = model.visitable if model is not None else np.ones(len(values), dtype=bool)
    terminal = model.terminal if model is not None else np.zeros(len(values), dtype=bool)
    shown = visitable | terminal
    low, high = float(values[shown].min()), float(values[shown].max())
    n = len(picture.panels)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    nrow, ncol = picture.panels[0].states.shape
    size = 0.75 if n == 1 else 0.45  # inches per cell
    fig, axes = plt.subplots(rows, cols, figsize=(cols * ncol * size + 1.5, rows * nrow * size + 1.0), squeeze=False)
    image = None
    for ax, panel in zip(axes.flat, picture.panels, strict=False):
        grid = np.where(shown[panel.states], values[panel.states], np.nan)
        image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=high if high > low else low + 1)
        for (r, c), state in np.ndenumerate(panel.states):
            kind = panel.kinds.get((r, c))
            if kind:
                ax.add_patch(Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, **CELL_STYLE[kind]))  # type: ignore[arg-type]
            if not shown[state]:
                continue
            ink = "black" if values[state] > low + 0.6 * (high - low) else "white"  # readable on viridis
            if n == 1:
                ax.text(c, r + 0.3, f"{values[state]:.1f}", ha="center", va="center", fontsize=7, color=ink)
            if not terminal[state]:
                _draw_action(ax, r, c, picture.marks[actions[state]], ink)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xticks(range(ncol))
        ax.set_yticks(range(nrow))
        ax.tick_params(labelsize=6)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="max_a Q(s, a)")
    fig.suptitle(title + "\norange: forbidden / hole / cliff, blue: target / goal, dashed: start", fontsize=8)
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _draw_action(ax: plt.Axes, r: int, c: int, mark: tuple[int, int] | str, ink: str) -> None:
    if isinstance(mark, str):
        ax.text(c, r - 0.05, mark, ha="center", va="center", fontsize=8, fontweight="bold", color=ink)
    elif mark == (0, 0):
        ax.plot(c, r - 0.05, "o", markersize=5, fillstyle="none", color=ink)
    else:
        d_row, d_col = mark
        start, end = (c - 0.25 * d_col, r - 0.05 - 0.25 * d_row), (c + 0.25 * d_col, r - 0.05 + 0.25 * d_row)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=ink, lw=1.5))


def draw_dp_curve(run_dir: str | Path) -> Path | None:
    """curve.png of a dynamic-programming run: max_s |v_new(s) - v(s)| and the start value per iteration."""
    metrics = read_metrics(run_dir)
    if "value_change" not in metrics:
        return None
    fig, (ax_change, ax_value) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_change.semilogy(metrics["step"], np.maximum(metrics["value_change"], 1e-16))
    ax_change.set_ylabel("max_s |v_new(s) - v(s)|")
    ax_value.plot(metrics["step"], metrics["start_value"])
    ax_value.set_ylabel("value of the start distribution")
    for ax in (ax_change, ax_value):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).name, fontsize=9)
    fig.tight_layout()
    out = Path(run_dir) / "curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def draw_pictures(run_dir: str | Path) -> list[Path]:
    """values.png and curve.png of a saved tabular run (what `plainrl plot` refreshes)."""
    from plainrl.kit.registry import load_run
    from plainrl.kit.run import load_checkpoint_file

    algo, _, config = load_run(run_dir)
    env_id = str(config.label())
    q = np.asarray(load_checkpoint_file(run_dir)["agent"]["q"])
    pictures = [
        draw_values(Path(run_dir) / "values.png", env_id, q, title=f"{algo} on {env_id}"),
        draw_dp_curve(run_dir) or plot_run(run_dir),
    ]
    return [path for path in pictures if path is not None]
