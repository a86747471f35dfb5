"""The `plainrl` command: parse, validate, dispatch. No algorithm logic lives here."""

from __future__ import annotations

import sys
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
    from plainrl.kit.run import read_run_config

    try:
        if read_run_config(run_dir)["algo"] in LLM_TRAINERS:
            from plainrl.llm import runs

            runs.resume(run_dir, show_progress=progress)
            return
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


LLM_TRAINERS = ("sft", "grpo", "reward-model", "ppo-llm", "dpo", "distill")  # plainrl.llm.runs.TRAINERS, kept light


ModelOption = Annotated[str | None, typer.Option(help="An SFT run folder, smollm2-135m, or a Hugging Face folder.")]
TaskOption = Annotated[
    str | None, typer.Option(help="arithmetic[:digits=2,ops=+-*], countdown[:numbers=3], or a .jsonl file.")
]
LoraOption = Annotated[int | None, typer.Option(help="Train LoRA adapters of this rank (0: all weights).")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.")]
ConfigOption = Annotated[Path | None, typer.Option(help="TOML file of hyperparameters.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a field: key=value (repeatable).")]
RunDirOption = Annotated[Path | None, typer.Option(help="Run folder (default: runs/NAME_TASK_sSEED_TIME).")]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu or cuda.")]
ProgressOption = Annotated[bool, typer.Option(help="Show the live progress bar.")]
PairsOption = Annotated[str | None, typer.Option(help="JSONL of {prompt, chosen, rejected} (default: verifier pairs).")]


@app.command()
def sft(
    model: Annotated[str | None, typer.Option(help="tiny, smollm2-135m, or a Hugging Face model folder.")] = None,
    task: TaskOption = None, lora_rank: LoraOption = None, seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """Supervised fine-tuning of a language model on a task's target completions (held-out accuracy logged)."""
    flags = {"env": task, "model": model, "lora_rank": lora_rank, "seed": seed, "total_steps": total_steps,
             "device": device}  # fmt: skip
    _llm_train("sft", flags, config, set_, run_dir, progress)


@app.command()
def grpo(
    model: ModelOption = None, task: TaskOption = None, lora_rank: LoraOption = None, seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="GRPO steps (one batch of rollouts each).")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """GRPO on verifiable rewards (accuracy, format, your functions): G samples per prompt, group advantages."""
    flags = {"env": task, "model": model, "lora_rank": lora_rank, "seed": seed, "total_steps": total_steps,
             "device": device}  # fmt: skip
    _llm_train("grpo", flags, config, set_, run_dir, progress)


def _llm_train(name: str, flags: dict[str, Any], config: Path | None, set_: list[str] | None, run_dir: Path | None,
               progress: bool) -> None:  # fmt: skip
    from plainrl.llm import runs

    try:
        runs.train_new(name, config_file=config, set_items=set_ or [], run_dir=run_dir, show_progress=progress,
                       flags=flags)  # fmt: skip
    except PlainRLError as err:
        _fail(str(err))


@app.command("distill-draft")
def distill_draft(
    target: Annotated[
        str | None, typer.Option(help="The model to draft for: smollm2-135m, a Hugging Face or LLM run folder.")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Whose training questions are the prompts: the draft's domain.")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes (0: no limit).")] = None,
    seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """Distil a small draft model for speculative sampling (`generate --draft RUN`) on the target's samples."""
    flags = {"env": task, "model": target, "minutes": minutes, "seed": seed, "total_steps": total_steps,
             "device": device}  # fmt: skip
    _llm_train("distill", flags, config, set_, run_dir, progress)


@app.command("reward-model")
def reward_model(
    model: ModelOption = None, task: TaskOption = None,
    pairs: PairsOption = None,
    lora_rank: LoraOption = None, seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """Reward model: the policy's trunk + a scalar head, Bradley-Terry loss on preference pairs."""
    flags = {"env": task, "model": model, "pairs": pairs, "lora_rank": lora_rank, "seed": seed,
             "total_steps": total_steps, "device": device}  # fmt: skip
    _llm_train("reward-model", flags, config, set_, run_dir, progress)


@app.command("ppo-llm")
def ppo_llm(
    model: ModelOption = None, task: TaskOption = None,
    reward_model: Annotated[str | None, typer.Option(help="A reward-model run folder (default: verifiers).")] = None,
    lora_rank: LoraOption = None, seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="PPO steps (one batch of rollouts each).")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """PPO for language models (InstructGPT): per-token KL penalty, critic, token-level GAE, clipped losses."""
    flags = {"env": task, "model": model, "reward_model": reward_model, "lora_rank": lora_rank, "seed": seed,
             "total_steps": total_steps, "device": device}  # fmt: skip
    _llm_train("ppo-llm", flags, config, set_, run_dir, progress)


@app.command()
def dpo(
    model: ModelOption = None, task: TaskOption = None,
    pairs: PairsOption = None,
    lora_rank: LoraOption = None, seed: SeedOption = None,
    total_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    config: ConfigOption = None, set_: SetOption = None, run_dir: RunDirOption = None, device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:  # fmt: skip
    """Direct Preference Optimization on preference pairs (sigmoid, conservative or IPO loss)."""
    flags = {"env": task, "model": model, "pairs": pairs, "lora_rank": lora_rank, "seed": seed,
             "total_steps": total_steps, "device": device}  # fmt: skip
    _llm_train("dpo", flags, config, set_, run_dir, progress)


@app.command("eval-llm")
def eval_llm(
    model: Annotated[str, typer.Option(help="tiny, smollm2-135m, a Hugging Face folder, or an LLM run folder.")],
    task: Annotated[str, typer.Option(help="arithmetic[:digits=2,ops=+-*], countdown, or a .jsonl file.")],
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
    from plainrl.llm.generate import SamplingParams
    from plainrl.llm.policy import eval_llm as run_eval

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
        run_eval(model, task, n, params, batch_size, device, seed, out)
    except PlainRLError as err:
        _fail(str(err))


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
    from plainrl.llm.generate import SamplingParams
    from plainrl.llm.policy import generate_command

    try:
        if temperature <= 0 and not greedy:
            raise PlainRLError(f"--temperature {temperature} must be > 0 (or use --greedy)")
        if not 0 < top_p <= 1:
            raise PlainRLError(f"--top-p {top_p} must be in (0, 1]")
        if top_k < 0 or max_new_tokens < 1 or n < 1:
            raise PlainRLError("--top-k must be >= 0, --max-new-tokens and --n >= 1")
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                greedy=greedy)  # fmt: skip
        if threads < 1:
            raise PlainRLError(f"--threads {threads} must be >= 1")
        import torch

        torch.set_num_threads(threads)
        generate_command(model, prompt or [], task, n, params, draft, k, adaptive_k, batch_size, device, seed)
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
