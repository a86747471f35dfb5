"""PPO for language models, InstructGPT style (Ouyang et al. 2022, arXiv 2203.02155; Ziegler et al. 2019;
Stiennon et al. 2020). Each completion is an episode whose actions are its tokens.

    for step = 1 .. total_steps:
        one completion y per prompt x, sampled from pi_old (the current policy)
        score s(x, y): the task's verifier rewards (rewards.py), or a trained reward model (reward_model.py)
        per-token rewards  r_t = -kl_coef (log pi_old(y_t) - log pi_ref(y_t))   + s(x, y) on the last token only
        values             V_t = V(x, y_<t), from the critic (its own trunk + scalar head), completion tokens only
        GAE over tokens:   delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lambda A_{t+1}  (0 past the end)
        returns R_t = A_t + V_t; advantages whitened over the batch's completion tokens
        for epoch = 1 .. ppo_epochs, for each minibatch:
            ratio_t     = pi(y_t) / pi_old(y_t)
            policy loss = -mean_t min(ratio_t A_t, clip(ratio_t, 1 - eps, 1 + eps) A_t)
            value loss  = 1/2 mean_t max((V_t - R_t)^2, (clip(V_t, V_old - eps_v, V_old + eps_v) - R_t)^2)
            loss        = policy loss + vf_coef value loss;  one AdamW step on policy and critic

With an `environment` (environments.py) an episode is a conversation (multi_turn.py): the actions are the model's
tokens of every turn, each turn's reward sits on its last token, the environment's replies are part of the state,
not actions (masked out, skipped by GAE: a turn's last token bootstraps from the next turn's first).

The critic starts as a copy of the starting policy's trunk with a new scalar head; the reference is a frozen copy
of the starting policy. Token-level GAE reuses the classic track's kit.buffers.compute_gae, time-major.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from plainrl.kit import distributed
from plainrl.kit.buffers import compute_gae
from plainrl.kit.config import require, require_ranges
from plainrl.kit.distributed import World, masked_whiten
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.config import PolicyConfig
from plainrl.llm.evaluate import evaluation_due, held_out_accuracy
from plainrl.llm.generate import Rollout, SamplingParams, completion_logprobs_entropy, generate
from plainrl.llm.multi_turn import Conversations, conversation_metrics, rollout_conversations
from plainrl.llm.policies import build_policy, checkpointed, frozen_copy, model_prompt
from plainrl.llm.reward_model import ScalarModel, load_reward_model
from plainrl.llm.rewards import check_reward_fields, rewards_by_name


@dataclass
class Config(PolicyConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 1e-5, "lora": 1e-5, "full": 1e-6}

    model: str = "tiny"  # the starting policy: an SFT run folder, smollm2-135m, a Hugging Face folder
    reward_model: str = ""  # a `plainrl reward-model` run folder; empty: the verifier rewards below
    rewards: tuple[str, ...] = ("accuracy",)  # accuracy | format | module:function (when no reward_model)
    reward_weights: tuple[float, ...] = ()
    reward_timeout_s: float = 5.0
    total_steps: int = 100  # PPO steps: one batch of rollouts each
    checkpoint_every: int = 20
    prompts_per_step: int = 64  # one completion each
    ppo_epochs: int = 4
    num_minibatches: int = 4
    critic_learning_rate: float | None = None  # None: 2x the policy's
    kl_coef: float = 0.05  # per-token KL penalty to the reference, inside the reward
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    whiten_advantages: bool = True
    temperature: float = 1.0
    stop_strings: tuple[str, ...] = ("</answer>",)
    eval_every: int = 10  # PPO steps between held-out evaluations (0: only at the end)
    eval_n: int = 200
    eval_batch_size: int = 200

    def validate(self) -> None:
        super().validate()
        require(
            1 <= self.prompts_per_step <= 100_000, f"prompts_per_step = {self.prompts_per_step} must be in [1, 100000]"
        )
        require_ranges(self, at_least_one=("ppo_epochs",), non_negative=("kl_coef", "vf_coef"),
                       discount=("gamma",), fraction=("gae_lambda",),
                       positive=("clip_range", "clip_range_value", "temperature"))  # fmt: skip
        require(
            1 <= self.num_minibatches <= self.prompts_per_step,
            f"num_minibatches = {self.num_minibatches} must be in [1, prompts_per_step = {self.prompts_per_step}]",
        )
        critic_lr = self.critic_learning_rate
        require(critic_lr is None or critic_lr > 0, f"critic_learning_rate = {critic_lr} must be > 0 (or none)")
        check_reward_fields(self.rewards, self.reward_weights)


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "prompts_per_step"  # under torchrun each rank takes prompts_per_step / N prompts
MULTI_TURN = True  # environment = ...: each episode a conversation (multi_turn.py)


def check_world(config: Config, world: World) -> None:
    """Enough prompts on every rank for its num_minibatches."""
    per_rank = config.prompts_per_step // world.size
    require(config.num_minibatches <= per_rank, f"num_minibatches = {config.num_minibatches} must be "
            f"<= the {per_rank} prompts each of the {world.size} processes holds")  # fmt: skip


# ----- the pieces of the objective ---------------------------------------------------------------------------------
def token_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float,
    at: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-token rewards (B, N): -kl_coef * (log pi - log pi_ref) on every completion token, plus the scores: (B,)
    on each row's last token, or (B, K) at the completion positions `at` (B, K) (a conversation's turn rewards at
    the ends of its turns). Also returns the per-token KL estimate (B, N). 0 where mask (B, N) is False."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    if at is None:
        at, scores = (mask.long().cumsum(1).argmax(1))[:, None], scores[:, None]  # the last True of each row
    return rewards.scatter_add(1, at, scores.to(rewards.dtype)), kl


def token_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over completion tokens: (B, N) each -> (advantages, returns), 0 where mask is False.
    The episode ends on each row's last token: nothing is bootstrapped past it. Tokens outside the mask inside a
    row (a conversation's environment tokens) are skipped: a turn's last token bootstraps from the next turn's
    first, as a step of the same episode."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # each row's masked tokens first, in order
    rewards, values, mask_f = rewards.gather(1, order), values.gather(1, order), mask.gather(1, order).float()
    is_last = mask_f - F.pad(mask_f[:, 1:], (0, 1))  # 1 on the last completion token
    next_values = F.pad(values[:, 1:], (0, 1)) * F.pad(mask_f[:, 1:], (0, 1))
    advantages, returns = compute_gae(
        rewards.T, values.T, next_values.T, is_last.T, is_last.T, gamma, gae_lambda
    )  # kit.buffers wants time-major (T, N): here (tokens, completions)
    unsort = torch.argsort(order, dim=1)
    return (advantages.T * mask_f).gather(1, unsort), (returns.T * mask_f).gather(1, unsort)


def padded_turns(conversations: Conversations, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(turn rewards (B, K), the completion index of each turn's last token (B, K)), padded with 0 rewards."""
    K = max(conversations.turns)
    rewards = [r + [0.0] * (K - len(r)) for r in conversations.turn_rewards]
    ends = [e + [e[-1]] * (K - len(e)) for e in conversations.turn_ends]
    return torch.tensor(rewards, device=device), torch.tensor(ends, device=device)


def completion_values(critic: ScalarModel, rollout: Rollout, rows: torch.Tensor) -> torch.Tensor:
    """V(x, y_<t) for each completion token t of `rows`, (b, N): the critic's output at the position just before the
    token (the prompt's last token for t = 0). Prompt and padding positions are never read; 0 where masked."""
    ids = torch.cat([rollout.prompt_ids[rows], rollout.completion_ids[rows]], dim=1)
    mask = torch.cat([rollout.prompt_mask[rows], rollout.completion_attention_mask[rows]], dim=1)
    P = rollout.prompt_ids.shape[1]
    values = critic(ids, mask)[:, P - 1 : -1]
    return values.masked_fill(~rollout.completion_mask[rows], 0.0)


def ppo_losses(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
    clip_range: float, clip_range_value: float, total_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(policy loss, value loss, clip fraction): token means over the mask; every input is (b, N). total_tokens: the
    minibatch's tokens on all ranks when this is one rank's part (the losses are then its shares)."""
    mask_f = mask.float()
    n = (mask_f.sum() if total_tokens is None else total_tokens).clamp(min=1)
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages)
    policy_loss = -(surrogate * mask_f).sum() / n
    values_clipped = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    value_error = torch.max((values - returns) ** 2, (values_clipped - returns) ** 2)
    value_loss = 0.5 * (value_error * mask_f).sum() / n
    clip_fraction = (((ratio - 1).abs() > clip_range).float() * mask_f).sum() / n
    return policy_loss, value_loss, clip_fraction.detach()


# ----- the training loop ------------------------------------------------------------------------------------------
def train(config: Config, run: Run) -> Any:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    prompt_shard = world.shard(config.prompts_per_step, "prompts_per_step")  # this rank's prompts
    task = config.make_task()
    model, tokenizer = build_policy(config, device)
    reference = frozen_copy(model, config)
    critic = ScalarModel(copy.deepcopy(model)).to(device).train()
    if config.fsdp:  # policy, reference and critic sharded over the ranks (FSDP2)
        for module in (model, reference, critic):
            distributed.shard_model(module)  # in place
    reward_model = load_reward_model(config.reward_model, device)[0] if config.reward_model else None
    reward_set = rewards_by_name(config.rewards, config.reward_weights, task, config.reward_timeout_s)
    policy_params = [p for p in model.parameters() if p.requires_grad]
    critic_params = [p for p in critic.parameters() if p.requires_grad]
    lr = config.resolved_learning_rate()
    optimizer = torch.optim.AdamW(
        [{"params": policy_params, "lr": lr}, {"params": critic_params, "lr": config.critic_learning_rate or 2 * lr}],
        weight_decay=0.0,
    )
    sampling = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                              stop_strings=config.stop_strings)  # fmt: skip
    eval_params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True, stop_strings=config.stop_strings)

    stateful = checkpointed(optimizer, model=model, critic=critic)
    run.restore(stateful)
    step = run.start_step

    while step < config.total_steps:
        # 1. Rollouts: one completion per prompt from the current policy (= pi_old).
        rollout_start = time.perf_counter()
        rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # data and samples: f(seed, step)
        picks = torch.randint(len(task.train), (config.prompts_per_step,), generator=rng).tolist()[prompt_shard.rows]
        examples = [task.train[i] for i in picks]
        prompts = [model_prompt(task, ex, tokenizer) for ex in examples]
        model.eval()
        sample_generator = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step)
        conversations = None
        if task.environment is not None:  # multi-turn: each episode a conversation, its turns' rewards at their ends
            envs = [task.environment() for _ in examples]
            conversations = rollout_conversations(model, tokenizer, envs, examples, sampling, sample_generator,
                                                  config.max_env_tokens, shard=prompt_shard)  # fmt: skip
            rollout = conversations.rollout
        else:
            rollout = generate(model, tokenizer, [tokenizer.prompt_ids(p) for p in prompts], sampling,
                               sample_generator, shard=prompt_shard)  # fmt: skip
        model.train()
        mask = rollout.completion_mask
        rows = torch.arange(len(examples), device=device)
        rollout_seconds = time.perf_counter() - rollout_start

        # 2. Scores, per-token rewards with the KL penalty, values, GAE.
        with torch.no_grad():
            reward_at = None
            if conversations is not None:  # the environments' turn rewards, each on the last token of its turn
                scores, reward_at = padded_turns(conversations, device)
                parts = {"reward": float(conversations.returns.mean())}
            elif reward_model is not None:
                ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)
                scores = reward_model.sequence_scores(ids, torch.cat([rollout.prompt_mask, mask], dim=1)).float()
                parts = {"reward": float(scores.mean())}  # the reward model's mean score
            else:
                scored = reward_set.score(prompts, rollout.texts, [ex.answer for ex in examples],
                                          [ex.columns for ex in examples])  # fmt: skip
                scores, parts = scored.total.to(device), scored.metrics()
            old_logprobs = completion_logprobs_entropy(model, rollout, rows, config.temperature)[0]
            ref_logprobs = completion_logprobs_entropy(reference, rollout, rows, config.temperature)[0]
            old_values = completion_values(critic, rollout, rows)
            rewards, kl = token_rewards(scores, old_logprobs, ref_logprobs, mask, config.kl_coef, reward_at)
            advantages, returns = token_gae(rewards, old_values, mask, config.gamma, config.gae_lambda)
            if config.whiten_advantages:
                advantages = masked_whiten(advantages, mask, world)  # over all ranks' tokens

        # 3. Optimise: ppo_epochs passes, num_minibatches steps each.
        update_start = time.perf_counter()
        totals: dict[str, float] = {}
        updates = 0
        for _epoch in range(config.ppo_epochs):
            for chunk in torch.randperm(len(rows), generator=rng).to(device).tensor_split(config.num_minibatches):
                logprobs, entropy = completion_logprobs_entropy(model, rollout, chunk, config.temperature)
                values = completion_values(critic, rollout, chunk)
                total_tokens = world.sum(mask[chunk].sum().float())  # the minibatch's tokens on all ranks
                policy_loss, value_loss, clip_fraction = ppo_losses(
                    logprobs, old_logprobs[chunk], advantages[chunk], values, old_values[chunk], returns[chunk],
                    mask[chunk], config.clip_range, config.clip_range_value, total_tokens,
                )  # fmt: skip
                loss = policy_loss + config.vf_coef * value_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                world.sync_gradients(policy_params + critic_params)  # summed: the whole minibatch's gradient
                grad_norm = torch.nn.utils.clip_grad_norm_(policy_params, config.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(critic_params, config.max_grad_norm)  # each its own: no crowding out
                optimizer.step()
                mb_mask = mask[chunk].float()
                for name, value in {
                    "policy_loss": policy_loss.detach() * world.size, "value_loss": value_loss.detach() * world.size,
                    "clip_fraction": clip_fraction, "grad_norm": grad_norm,
                    "entropy": (entropy * mb_mask).sum() / mb_mask.sum().clamp(min=1),
                }.items():  # fmt: skip
                    totals[name] = totals.get(name, 0.0) + float(value)
                updates += 1
        step += 1

        # 4. Log, evaluate, checkpoint.
        if conversations is None:
            correct = [
                task.is_correct(t, ex.answer, **ex.columns) for t, ex in zip(rollout.texts, examples, strict=True)
            ]
        else:
            correct = conversations.solved
        real_returns = returns[mask]  # completion tokens only: padding would dilute both variances
        explained = 1 - float((real_returns - old_values[mask]).var()) / max(float(real_returns.var()), 1e-8)
        metrics = {
            **parts,
            **{name: value / updates for name, value in totals.items()},
            "kl": float(kl.sum(1).mean()), "train_accuracy": sum(correct) / len(correct),
            "explained_variance": explained, "completion_length": float(mask.sum(1).float().mean()),
            "tokens_per_second": float(mask.sum()) / rollout_seconds, "rollout_seconds": rollout_seconds,
            "update_seconds": time.perf_counter() - update_start,
            **(conversation_metrics(conversations, envs) if conversations is not None else {}),
        }  # fmt: skip
        if evaluation_due(config, step):
            metrics["accuracy"] = held_out_accuracy(model, tokenizer, task, eval_params, config)
        run.log(step, {k: v for k, v in metrics.items() if math.isfinite(v) or k.startswith("reward")})
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, model):
            break
    run.maybe_checkpoint(step, stateful, final=True)

    return model
