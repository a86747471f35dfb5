"""Learning curves from metrics.csv: one run's curve.png, and several runs as mean with a min-max band."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CURVE_KEYS = ("episode_return", "eval_return", "reward", "accuracy")  # the first present is the curve


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """metrics.csv as columns; empty cells become NaN."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) if r.get(key) else np.nan for r in rows]) for key in rows[0]}


def curve_key(metrics: dict[str, np.ndarray]) -> str | None:
    keys = curve_keys(metrics)
    return keys[0] if keys else None


def curve_keys(metrics: dict[str, np.ndarray]) -> list[str]:
    """The curve metrics this run logged, in CURVE_KEYS order (GRPO: reward and held-out accuracy)."""
    return [k for k in CURVE_KEYS if k in metrics and np.isfinite(metrics[k]).any()]


def smooth(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Trailing moving average; the default window (at most 10) shrinks for short series such as periodic evals."""
    window = window or min(10, max(1, len(values) // 5))
    out = np.empty_like(values)
    for i in range(len(values)):
        recent = values[max(0, i - window + 1) : i + 1]
        recent = recent[np.isfinite(recent)]
        out[i] = recent.mean() if len(recent) else np.nan
    return out


def plot_run(run_dir: str | Path) -> Path | None:
    """curve.png: one panel per curve metric the run logged (raw and smoothed) against its steps."""
    metrics = read_metrics(run_dir)
    keys = curve_keys(metrics)
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 3 + 1.5 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        steps, values = metrics["step"], metrics[key]
        finite = np.isfinite(values)
        ax.plot(steps[finite], values[finite], alpha=0.3, color="C0", label=key)
        ax.plot(steps[finite], smooth(values[finite]), color="C0", label=f"{key} (smoothed)")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0, 0].set_title(Path(run_dir).name, fontsize=9)
    axes[-1, 0].set_xlabel("steps")
    fig.tight_layout()
    out = Path(run_dir) / "curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_runs(run_dirs: list[Path], out: Path, labels: dict[Path, str]) -> Path:
    """Runs with the same label (algo + env) are drawn as their mean with a min-max band over seeds."""
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for run_dir in run_dirs:
        metrics = read_metrics(run_dir)
        key = curve_key(metrics)
        if key is None:
            continue
        finite = np.isfinite(metrics[key])
        groups[labels[run_dir]].append((metrics["step"][finite], smooth(metrics[key][finite])))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, (label, curves) in enumerate(sorted(groups.items())):
        end = min(steps[-1] for steps, _ in curves)  # the band covers the steps every run reached
        grid = np.linspace(0, end, 200)
        ys = np.stack([np.interp(grid, steps, values) for steps, values in curves])
        runs_label = f"{len(curves)} run" + ("s" if len(curves) > 1 else "")
        ax.plot(grid, ys.mean(0), color=f"C{color}", label=f"{label} ({runs_label})")
        if len(curves) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), color=f"C{color}", alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    if groups:  # runs without a return curve (dynamic programming) leave the plot empty
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
