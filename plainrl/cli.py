"""The `plainrl` command: a thin typer layer over the Python API (plainrl/api.py). It parses, calls the API and
prints; no algorithm logic lives here."""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from plainrl.kit.errors import PlainRLError

app = typer.Typer(
    help="plainrl: reinforcement learning written plainly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    from plainrl.kit.distributed import error_prefix

    typer.echo(f"{error_prefix()}error: {message}", err=True)  # under torchrun: "rank 1: error: ..."
    raise typer.Exit(2)


@app.command()
def train(
    algo: Annotated[str, typer.Argument(help="Algorithm or trainer name; see `plainrl list`.")],
    env: Annotated[str | None, typer.Option(help="Gymnasium id, or module:ClassName / module:factory.")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="LLM trainers: arithmetic[:digits=2,ops=+-*], countdown, gsm, or a .json/.jsonl/.parquet file "
            "or a datasets folder."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="LLM trainers: tiny, smollm2-135m, a Hugging Face folder or an LLM run folder.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="distill: the model to draft for (same as --model).")] = None,
    lora_rank: Annotated[
        int | None, typer.Option(help="LLM trainers: LoRA adapters of this rank (0: all weights).")
    ] = None,
    pairs: Annotated[str | None, typer.Option(help="dpo, reward-model: JSONL of {prompt, chosen, rejected}.")] = None,
    reward_model: Annotated[str | None, typer.Option(help="ppo-llm: a reward-model run folder.")] = None,
    minutes: Annotated[float | None, typer.Option(help="distill: stop after this many minutes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    total_steps: Annotated[
        int | None, typer.Option(help="Steps to train for (env steps; LLM: optimizer steps).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of hyperparameters.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: key=value (repeatable).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default: runs/ALGO_ENV_sSEED_TIME).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    progress: Annotated[bool, typer.Option(help="Show the live progress bar.")] = True,
) -> None:
    """Train ALGO on an env (classic, tabular) or a task (LLM trainers), evaluate it, and leave a run folder."""
    from plainrl import api

    fields: dict[str, Any] = {"lora_rank": lora_rank, "pairs": pairs, "reward_model": reward_model, "minutes": minutes}
    try:
        api.train(
            algo, env=env, task=task, model=model or target, seed=seed, total_steps=total_steps, device=device,
            run_dir=run_dir, progress=progress, config_file=config, set_items=set_ or [],
            **{k: v for k, v in fields.items() if v is not None},
        )  # fmt: skip
    except PlainRLError as err:
        _fail(str(err))


def _train_alias(name: str, summary: str) -> None:
    """`plainrl NAME ...`: an LLM trainer's own command (from before `train` took them), with train's options."""

    def command(**options: Any) -> None:
        train(name, **options)

    hints = typing.get_type_hints(train, include_extras=True)  # the Annotated option declarations, resolved
    parameters = [p.replace(annotation=hints[p.name]) for p in list(inspect.signature(train).parameters.values())[1:]]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = f"{summary} (= plainrl train {name})"
    app.command(name)(command)


for _name, _summary in {
    "sft": "Supervised fine-tuning of a language model on a task's target completions",
    "grpo": "GRPO on verifiable rewards: G samples per prompt, group-relative advantages",
    "reward-model": "Reward model: a trunk + scalar head, Bradley-Terry loss on preference pairs",
    "ppo-llm": "PPO for language models (InstructGPT): per-token KL penalty, critic, token-level GAE",
    "dpo": "Direct Preference Optimization on preference pairs (sigmoid, conservative, IPO, RPO)",
    "distill-draft": "Distil a small draft model for speculative sampling (`generate --draft RUN`)",
}.items():
    _train_alias(_name, _summary)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run folder to continue.")],
    progress: Annotated[bool, typer.Option(help="Show the live progress bar.")] = True,
) -> None:
    """Continue an interrupted run (of any algorithm) from its last checkpoint to its planned total."""
    from plainrl import api

    try:
        api.resume(run_dir, progress=progress)
    except PlainRLError as err:
        _fail(str(err))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    episodes: Annotated[int, typer.Option(help="Env runs: deterministic episodes to run.")] = 20,
    video: Annotated[
        bool, typer.Option(help="Env runs: also write episode.gif (and .mp4 with imageio-ffmpeg) of the first episode.")
    ] = False,
    n: Annotated[int | None, typer.Option(help="LLM runs: held-out examples (default: the run's eval_n).")] = None,
    best: Annotated[
        bool, typer.Option(help="Env runs: the best agent of training (eval_every > 0), into eval_best.json.")
    ] = False,
) -> None:
    """Evaluate a saved run: prints the result, writes eval.json."""
    from plainrl import api

    try:
        result = api.evaluate(run_dir, episodes=episodes, video=video, n=n, best=best)
    except PlainRLError as err:
        _fail(str(err))
    typer.echo("  ".join(f"{k} = {v:.2f}" if isinstance(v, float) else f"{k} = {v}" for k, v in result.items()))
    if video:
        written = [name for name in ("episode.gif", "episode.mp4") if (run_dir / name).is_file()]
        typer.echo(f"wrote {', '.join(str(run_dir / name) for name in written)}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="An LLM run folder.")],
    out: Annotated[Path, typer.Option(help="The folder to write (Hugging Face save_pretrained format).")],
    merge_lora: Annotated[
        bool, typer.Option(help="A LoRA run: merge the adapters into the base weights instead of a PEFT adapter.")
    ] = False,
) -> None:
    """Export an LLM run's policy for transformers (and a LoRA run as a PEFT adapter, or merged)."""
    from plainrl import api

    try:
        folder = api.export(run_dir, out, merge_lora=merge_lora)
    except PlainRLError as err:
        _fail(str(err))
    typer.echo(f"wrote {folder}")


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders.")],
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("curves.png"),
) -> None:
    """Learning curves; runs of the same algo and env are drawn as a mean with a min-max band. Runs whose
    algorithm draws more (tabular methods: values.png) get those pictures redrawn in their folders."""
    from plainrl.api import draw_pictures
    from plainrl.kit.plots import plot_runs
    from plainrl.kit.run import read_run_config

    try:
        labels = {}
        for run_dir in run_dirs:
            cfg = read_run_config(run_dir)
            labels[run_dir] = f"{cfg['algo']} {cfg.get('env', cfg.get('task', ''))}".strip()
        plot_runs(run_dirs, out, labels)
        typer.echo(f"wrote {out}")
        for run_dir in dict.fromkeys(run_dirs):
            for picture in draw_pictures(run_dir):
                typer.echo(f"wrote {picture}")
    except PlainRLError as err:
        _fail(str(err))


@app.command("eval-llm")
def eval_llm(
    model: Annotated[str, typer.Option(help="tiny, smollm2-135m, a Hugging Face folder, or an LLM run folder.")],
    task: Annotated[
        str,
        typer.Option(
            help="arithmetic[:digits=2,ops=+-*], countdown, gsm, or a .json/.jsonl/.parquet file or datasets folder."
        ),
    ],
    n: Annotated[int, typer.Option(help="Held-out examples (the first N of the fixed test split).")] = 200,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding (else sample at --temperature).")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion.")] = 64,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable); default: </answer>.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 16,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    out: Annotated[Path | None, typer.Option(help="JSON file for every prompt, completion and verdict.")] = None,
) -> None:
    """Accuracy of a language model on a task's held-out split: prints `accuracy = X`, writes a JSON file."""
    from plainrl.llm.evaluate import eval_llm as run_eval
    from plainrl.llm.generate import SamplingParams

    try:
        if temperature <= 0 and not greedy:
            raise PlainRLError(f"--temperature {temperature} must be > 0 (or use --greedy)")
        if threads < 1:
            raise PlainRLError(f"--threads {threads} must be >= 1")
        import torch

        torch.set_num_threads(threads)
        stop_strings = tuple(stop) if stop is not None else ("</answer>",)  # the answer is complete there
        params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy, stop_strings=stop_strings
        )
        record = run_eval(model, task, n, params, batch_size, device, seed, out)
    except PlainRLError as err:
        _fail(str(err))
    n_correct = sum(1 for sample in record["samples"] if sample["correct"])
    typer.echo(f"accuracy = {record['accuracy']:.4f} ({n_correct}/{n}, {record['seconds']:.1f} s) -> {record['out']}")


@app.command("generate")
def generate_(
    model: Annotated[str, typer.Option(help="tiny, smollm2-135m, a Hugging Face folder, or an LLM run folder.")],
    prompt: Annotated[list[str] | None, typer.Option(help="A user prompt (repeatable).")] = None,
    task: Annotated[str | None, typer.Option(help="Use the first --n held-out questions of this task.")] = None,
    n: Annotated[int, typer.Option(help="Questions taken from --task.")] = 4,
    draft: Annotated[
        str | None, typer.Option(help="A smaller model with the same tokenizer: speculative sampling.")
    ] = None,
    k: Annotated[int, typer.Option(help="Draft tokens per target forward (the most, with --adaptive-k).")] = 4,
    adaptive_k: Annotated[bool, typer.Option(help="Adapt K to the running acceptance rate.")] = False,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding (else sample at --temperature).")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample from the K likeliest tokens only (0: all).")] = 0,
    top_p: Annotated[float, typer.Option(help="Sample from the smallest set with this much probability.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
) -> None:
    """Generate completions; prints them, tokens/s and (with --draft) the draft's acceptance rate."""
    from plainrl.llm.policies import Policy, model_prompt

    try:
        if temperature <= 0 and not greedy:
            raise PlainRLError(f"--temperature {temperature} must be > 0 (or use --greedy)")
        if not 0 < top_p <= 1:
            raise PlainRLError(f"--top-p {top_p} must be in (0, 1]")
        if top_k < 0 or max_new_tokens < 1 or n < 1 or k < 1 or batch_size < 1 or threads < 1:
            raise PlainRLError("--top-k must be >= 0; --max-new-tokens, --n, --k, --batch-size and --threads >= 1")
        if not prompt and task is None:
            raise PlainRLError("give --prompt TEXT (repeatable) or --task TASK")
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        policy = Policy.load(model, device)
        draft_policy = Policy.load(draft, device) if draft is not None else None
        prompts = list(prompt or [])
        if task is not None:
            from plainrl.llm.tasks import make_task

            the_task = make_task(task)
            prompts += [model_prompt(the_task, example, policy.tokenizer) for example in the_task.test[:n]]
        texts, summary = policy.generate_with_stats(
            prompts, max_new_tokens, temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p,
            batch_size=batch_size, seed=seed, draft=draft_policy, k=k, adaptive_k=adaptive_k,
        )  # fmt: skip
    except PlainRLError as err:
        _fail(str(err))
    for text_prompt, text in zip(prompts, texts, strict=True):
        typer.echo(f"--- {text_prompt}\n{text}")
    line = f"{summary['tokens']} tokens in {summary['seconds']:.2f} s: {summary['tokens_per_second']:.1f} tokens/s"
    if draft_policy is not None:
        line += (f", acceptance rate {summary['acceptance_rate']:.3f}, {summary['tokens_per_round']:.2f} tokens per "
                 f"row per target forward (K = {summary['mean_k']:.1f})")  # fmt: skip
    typer.echo(line)


@app.command("list")
def list_() -> None:
    """Algorithms, their presets, and the action spaces each handles."""
    from rich.console import Console
    from rich.table import Table

    from plainrl.kit.registry import ALGORITHMS, load_algorithm

    table = Table("algorithm", "trains on", "presets", "what it is")
    for name in ALGORITHMS:
        module = load_algorithm(name)
        first_paragraph = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        summary = first_paragraph.split(" (")[0].rstrip(".:")
        trains_on = ", ".join(getattr(module, "ACTION_SPACES", ())) or "a task (text)"
        table.add_row(name, trains_on, ", ".join(module.PRESETS), summary)
    Console().print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
