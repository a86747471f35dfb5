"""The configs of the LLM track: what every trainer has (TaskConfig), and what the trainers that fine-tune a
policy or a trunk add (PolicyConfig: LoRA, held-out evaluation).

The automatic learning rate, one rule for every trainer: `learning_rate = None` (the default) takes the
trainer's AUTO_LEARNING_RATES entry for
    "tiny"   a built-in model trained here from scratch (a run folder that started from `tiny` counts too),
    "lora"   LoRA adapters (lora_rank > 0) on a pretrained model,
    "full"   all the weights of a pretrained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from plainrl.kit.config import RunConfig, require, require_ranges
from plainrl.llm.lora import ALL_LINEAR

if TYPE_CHECKING:
    from plainrl.llm.tasks import Task


@dataclass
class TaskConfig(RunConfig):
    """A run on a language task: every LLM trainer."""

    LABEL_FIELD: ClassVar[str] = "task"
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 1e-3, "lora": 1e-4, "full": 1e-5}

    task: str = "arithmetic"  # arithmetic[:digits=2,ops=+], countdown, gsm, or a data file (tasks.py)
    prompt_column: str = "prompt"  # data files: the prompt's column (text, or chat turns)
    answer_column: str = "answer"  # data files: the reference answer's column ("... #### 42" answers 42)
    environment: str = ""  # multi-turn: calculator | guess | countdown | module:Class (environments.py); its task
    max_env_tokens: int = 64  # an environment's reply is cut after this many tokens
    system_prompt: str = ""  # data files: a system turn for every prompt without one (it replaces the <answer> hint)
    model: str = "tiny"  # tiny | smollm2-135m | a Hugging Face folder | an LLM run folder
    total_steps: int = 100  # optimizer or rollout steps
    checkpoint_every: int = 20
    learning_rate: float | None = None  # None: automatic (the module doc)
    max_new_tokens: int = 16  # the longest completion sampled
    max_grad_norm: float = 1.0
    fsdp: bool = False  # under torchrun: shard the weights over the processes (FSDP2) instead of copying them
    dtype: str = "float32"  # bfloat16: matmuls in bf16 (autocast), weights and optimizer state fp32; bf16 reference
    gradient_checkpointing: bool = False  # recompute each block in backward: less activation memory, ~1 more forward

    def validate(self) -> None:
        super().validate()
        require(self.model != "", "model must be set")
        lr = self.learning_rate
        require(lr is None or lr > 0, f"learning_rate = {lr} must be > 0 (or none: automatic)")
        require_ranges(self, positive=("max_grad_norm",))
        require(1 <= self.max_new_tokens <= 100_000, f"max_new_tokens = {self.max_new_tokens} must be in [1, 100000]")
        require(self.dtype in ("float32", "bfloat16"), f"dtype = {self.dtype!r} is not one of float32, bfloat16")
        require(self.prompt_column != "" and self.answer_column != "", "prompt_column and answer_column must be set")

    def make_task(self) -> Task:
        """The run's task: `task` with the data fields (prompt_column, answer_column, system_prompt), or, with an
        `environment`, the environment's own task (its `environment` attribute makes one environment)."""
        from plainrl.llm.tasks import make_task

        if self.environment:
            from plainrl.llm.environments import environment_task

            return environment_task(self.environment)
        return make_task(self.task, self.prompt_column, self.answer_column, self.system_prompt)

    @classmethod
    def upgrade_saved_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """config.toml values of an older LLM run folder in today's names (0 meant an automatic learning rate)."""
        values = {RENAMED_FIELDS.get(k, k): v for k, v in values.items() if k not in DROPPED_FIELDS}
        if values.get("learning_rate") == 0:
            values.pop("learning_rate")
        return values

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        kind = "tiny" if base_model(self.model) == "tiny" else "lora" if getattr(self, "lora_rank", 0) > 0 else "full"
        return self.AUTO_LEARNING_RATES[kind]


@dataclass
class PolicyConfig(TaskConfig):
    """A trainer that fine-tunes a model (all weights, or LoRA adapters when lora_rank > 0) and reports its
    held-out score every `eval_every` steps and at the end."""

    lora_rank: int = 0  # 0: train all weights
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ALL_LINEAR
    eval_every: int = 10  # steps between held-out evaluations (0: only at the end)
    eval_n: int = 200  # held-out examples per evaluation (greedy), the final one included
    eval_batch_size: int = 200

    def validate(self) -> None:
        super().validate()
        require_ranges(self, non_negative=("lora_rank", "eval_every"), at_least_one=("eval_n", "eval_batch_size"))
        require(0 <= self.lora_dropout < 1, f"lora_dropout = {self.lora_dropout} must be in [0, 1)")


# Fields renamed since the run folders of earlier versions were written (old name -> new), and fields dropped.
RENAMED_FIELDS = {"env": "task", "sample_max_new_tokens": "max_new_tokens"}
DROPPED_FIELDS = ("eval_episodes",)


def base_model(spec: str) -> str:
    """The model a chain of run folders started from: runs/grpo_x -> runs/sft_y -> 'tiny'."""
    import tomllib

    seen = set()
    while (Path(spec) / "config.toml").is_file() and spec not in seen:
        seen.add(spec)
        spec = str(tomllib.loads((Path(spec) / "config.toml").read_text()).get("model", spec))
    return spec
