"""The `plainrl` command: parse, validate, dispatch. No algorithm logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from plainrl.kit.errors import PlainRLError

app = typer.Typer(
    help="plainrl: reinforcement learning written plainly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def train(
    algo: Annotated[str, typer.Argument(help="Algorithm name; see `plainrl list`.")],
    env: Annotated[str | None, typer.Option(help="Gymnasium id, or module:ClassName / module:factory.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    total_steps: Annotated[int | None, typer.Option(help="Environment steps to train for.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of hyperparameters.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: key=value (repeatable).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default: runs/ALGO_ENV_sSEED_TIME).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    progress: Annotated[bool, typer.Option(help="Show the live progress bar.")] = True,
) -> None:
    """Train ALGO on an environment, evaluate it, and leave a run folder."""
    from plainrl.kit import training

    try:
        training.train_new(
            algo, env=env, config_file=config, set_items=set_ or [], run_dir=run_dir,
            flags={"seed": seed, "total_steps": total_steps, "device": device}, show_progress=progress,
        )  # fmt: skip
    except PlainRLError as err:
        _fail(str(err))


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run folder to continue.")],
    progress: Annotated[bool, typer.Option(help="Show the live progress bar.")] = True,
) -> None:
    """Continue an interrupted run from its last checkpoint to its planned total."""
    from plainrl.kit import training

    try:
        training.resume(run_dir, show_progress=progress)
    except PlainRLError as err:
        _fail(str(err))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    episodes: Annotated[int, typer.Option(help="Deterministic episodes to run.")] = 20,
    video: Annotated[bool, typer.Option(help="Also write episode.gif of the first episode.")] = False,
) -> None:
    """Evaluate a saved run: prints mean and std of the return, writes eval.json."""
    from plainrl.kit import training

    try:
        if episodes < 1:
            raise PlainRLError(f"--episodes {episodes} must be >= 1")
        training.evaluate_run(run_dir, episodes=episodes, video=video)
    except PlainRLError as err:
        _fail(str(err))


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("curves.png"),
) -> None:
    """Learning curves; runs of the same algo and env are drawn as a mean with a min-max band. Runs whose
    algorithm draws more (tabular methods: values.png) get those pictures redrawn in their folders."""
    from plainrl.kit.plots import plot_runs
    from plainrl.kit.run import read_run_config
    from plainrl.kit.training import draw_pictures

    try:
        labels = {}
        for run_dir in run_dirs:
            cfg = read_run_config(run_dir)
            labels[run_dir] = f"{cfg['algo']} {cfg.get('env', '')}".strip()
        plot_runs(run_dirs, out, labels)
        typer.echo(f"wrote {out}")
        for run_dir in dict.fromkeys(run_dirs):
            for picture in draw_pictures(run_dir):
                typer.echo(f"wrote {picture}")
    except PlainRLError as err:
        _fail(str(err))


@app.command("list")
def list_() -> None:
    """Algorithms, their presets, and the action spaces each handles."""
    from rich.console import Console
    from rich.table import Table

    from plainrl.kit.registry import ALGORITHMS, load_algorithm

    table = Table("algorithm", "action spaces", "presets", "what it is")
    for name in ALGORITHMS:
        module = load_algorithm(name)
        first_paragraph = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        summary = first_paragraph.split(" (")[0].rstrip(".:")
        table.add_row(name, ", ".join(module.ACTION_SPACES), ", ".join(module.PRESETS), summary)
    Console().print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
