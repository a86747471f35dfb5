"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300), trained on verifiable
rewards as in DeepSeek-R1-Zero (arXiv 2501.12948).

    for step = 1 .. total_steps:
        draw prompts_per_step prompts q; for each, sample G completions o_1..o_G from pi_old (the current policy)
        r_i = verifier rewards of o_i (accuracy, format, ... weighted)                          rewards.py
        A_i = (r_i - mean(r_1..G)) / std(r_1..G)    (scale_rewards = false: no division; Dr. GRPO)
        optionally drop groups whose rewards are all equal (DAPO): their tokens leave the loss mask
        for iteration = 1 .. num_iterations (mu), for each minibatch:
            ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)
            L_t     = min(ratio_t A, clip(ratio_t, 1 - eps_low, 1 + eps_high) A) - beta KL_t(pi || pi_ref)
            loss    = -aggregate_t(L_t)                  (per sequence then over sequences | per token | constant)
            one optimizer step

KL_t is estimated from the sampled token alone, with log r = log pi_ref(o_t) - log pi(o_t) (Schulman 2020):
    k1 = -log r      unbiased, can be negative
    k2 = (log r)^2 / 2     biased, non-negative
    k3 = r - 1 - log r     unbiased, non-negative (DeepSeek's choice)
    k3_is = (pi / pi_old) k3    DeepSeek-V3.2's correction: as a loss, the gradient of KL(pi || pi_ref) itself
As losses their expected gradients differ from their values' (docs/grpo.md): k1's is 0, k2's and k3_is's are
the gradient of KL(pi || pi_ref), k3's that of the forward KL(pi_ref || pi). kl_in = "reward" instead subtracts
beta sum_t KL_t from each completion's reward before the advantages (no KL term in the loss).
Loss aggregation: "sequence_mean" (the original GRPO: mean over each completion's tokens, then over
completions), "token_mean" (DAPO, arXiv 2503.14476: every token of the batch weighs the same),
"constant" (Dr. GRPO, arXiv 2503.20783: sum over tokens divided by batch size x max_new_tokens, so neither
length nor group statistics bias the gradient). Clip-higher (DAPO): epsilon_high > epsilon_low.

Variants (docs/grpo.md):
    policy_loss          gspo: one length-normalised ratio per sequence, clipped | cispo: the IS weight clipped
                         and detached, every token keeps its gradient | kimi (Kimi k1.5): a squared log-ratio, no clip
    advantage_estimator  rloo: A_i = r_i - the mean of the others | reinforce++: A_t = r - beta sum_{s>=t} KL_s,
                         whitened over the batch
    rewards and batch    length_penalty (Kimi k1.5's length reward); overlong_buffer, overlong_penalty, mask_truncated
                         (DAPO's overlong shaping and filtering); dynamic_sampling (DAPO: more prompts until
                         prompts_per_step groups have differing rewards); entropy_coef (an entropy bonus)

With an `environment` (environments.py) each sample is a conversation (multi_turn.py): the model's turns and the
environment's replies in one token sequence, the replies masked out of the loss, the KL term and the entropy;
the conversation's return (the sum of its turn rewards) is r_i.

Under torchrun each rank takes prompts_per_step / N whole groups; the aggregations divide by counts over all ranks
and gradients are summed (kit/distributed.py), so N processes compute the single-process gradient.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from plainrl.kit import distributed
from plainrl.kit.config import require, require_ranges
from plainrl.kit.distributed import Shard, World, masked_whiten
from plainrl.kit.errors import ConfigError
from plainrl.kit.run import Run, set_up_torch
from plainrl.llm.config import PolicyConfig
from plainrl.llm.evaluate import evaluation_due, held_out_accuracy
from plainrl.llm.generate import SamplingParams, completion_logprobs_entropy, generate
from plainrl.llm.multi_turn import conversation_metrics, rollout_conversations
from plainrl.llm.policies import build_policy, checkpointed, frozen_copy, load_policy, model_prompt
from plainrl.llm.rewards import RewardScores, check_reward_fields, rewards_by_name
from plainrl.llm.sampling import select_rollouts

KL_ESTIMATORS = ("k1", "k2", "k3", "k3_is")
KL_PLACES = ("loss", "reward")
AGGREGATIONS = ("sequence_mean", "token_mean", "constant")
POLICY_LOSSES = ("grpo", "gspo", "cispo", "kimi")
ADVANTAGES = ("group", "rloo", "reinforce++")


@dataclass
class Config(PolicyConfig):
    AUTO_LEARNING_RATES: ClassVar[dict[str, float]] = {"tiny": 5e-5, "lora": 1e-5, "full": 1e-6}

    model: str = "tiny"  # an SFT run folder, smollm2-135m, a Hugging Face folder (tiny: untrained)
    total_steps: int = 100  # GRPO steps: one batch of rollouts each
    checkpoint_every: int = 20  # GRPO steps
    prompts_per_step: int = 16
    group_size: int = 8  # G completions per prompt
    num_iterations: int = 1  # mu: optimisation passes over each batch of rollouts
    num_minibatches: int = 1  # optimizer steps per pass
    micro_batch_size: int = 0  # > 0: forward and backward this many completions at a time (gradient accumulation)
    adam_betas: tuple[float, ...] = (0.9, 0.99)
    weight_decay: float = 0.0
    beta: float = 0.04  # KL coefficient; 0 loads no reference model
    kl_estimator: str = "k3"  # k1 | k2 | k3 | k3_is (DeepSeek-V3.2: k3 x pi / pi_old); see docs/grpo.md
    kl_in: str = "loss"  # loss: beta KL_t in the loss (GRPO) | reward: beta sum_t KL_t subtracted from each reward
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2  # > epsilon_low: DAPO's clip-higher
    loss_aggregation: str = "sequence_mean"
    policy_loss: str = "grpo"  # grpo | gspo (one length-normalised ratio per sequence) | cispo (clipped IS weight)
    # | kimi (Kimi k1.5: A log pi(y) - tau/2 (log pi(y)/pi_old(y))^2, no clipping)
    kimi_tau: float = 0.1  # Kimi k1.5's tau: how strongly the squared log-ratio keeps pi near pi_old
    advantage_estimator: str = "group"  # group (GRPO) | rloo (leave-one-out) | reinforce++ (KL in the reward)
    scale_rewards: bool = True  # divide advantages by the group's reward std
    drop_zero_variance_groups: bool = False
    dynamic_sampling: bool = False  # DAPO: draw more prompts until prompts_per_step groups have differing rewards
    max_rounds: int = 4  # ... at most this many draws a step (then the groups found so far)
    length_penalty: float = 0.0  # Kimi k1.5's length reward, with this weight (0: off)
    overlong_buffer: int = 0  # DAPO's soft overlong penalty over the last N tokens before max_new_tokens (0: off)
    overlong_penalty: float = 1.0  # ... reaching this at max_new_tokens
    mask_truncated: bool = False  # DAPO's overlong filtering: completions cut at max_new_tokens leave the loss
    entropy_coef: float = 0.0  # an entropy bonus: loss - entropy_coef x the token-mean entropy (0: off)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    draft: str = ""  # a draft model (e.g. a distill run folder): rollouts by speculative sampling, same distribution
    draft_k: int = 4  # draft tokens per target forward
    rewards: tuple[str, ...] = ("accuracy",)  # accuracy | format | module:function (yours)
    reward_weights: tuple[float, ...] = ()  # one per reward; empty: all 1
    reward_timeout_s: float = 5.0
    eval_every: int = 10  # GRPO steps between held-out evaluations (0: only at the end)
    eval_n: int = 200
    eval_batch_size: int = 200

    def validate(self) -> None:
        super().validate()
        require_ranges(self, at_least_one=("draft_k", "num_iterations"),
                       non_negative=("beta", "top_k", "weight_decay", "micro_batch_size"),
                       positive=("epsilon_low", "epsilon_high", "temperature"), discount=("top_p",))  # fmt: skip
        require(
            1 <= self.prompts_per_step <= 100_000, f"prompts_per_step = {self.prompts_per_step} must be in [1, 100000]"
        )
        require(self.group_size >= 2, f"group_size = {self.group_size} must be >= 2 (advantages compare a group)")
        batch = self.prompts_per_step * self.group_size
        require(1 <= self.num_minibatches <= batch, f"num_minibatches = {self.num_minibatches} must be in [1, {batch}]")
        require(len(self.adam_betas) == 2, f"adam_betas = {self.adam_betas} must be two numbers")
        require(
            self.kl_estimator in KL_ESTIMATORS,
            f"kl_estimator = {self.kl_estimator!r} is not one of {', '.join(KL_ESTIMATORS)}",
        )
        require(self.kl_in in KL_PLACES, f"kl_in = {self.kl_in!r} is not one of {', '.join(KL_PLACES)}")
        for name, allowed in (("policy_loss", POLICY_LOSSES), ("advantage_estimator", ADVANTAGES)):
            value = getattr(self, name)
            require(value in allowed, f"{name} = {value!r} is not one of {', '.join(allowed)}")
        require(not (self.dynamic_sampling and self.environment), "dynamic_sampling works on single completions, "
                "not with an environment")  # fmt: skip
        require_ranges(self, non_negative=("length_penalty", "overlong_penalty", "overlong_buffer", "entropy_coef",
                                           "kimi_tau"),
                       at_least_one=("max_rounds",))  # fmt: skip
        require(
            self.overlong_buffer < self.max_new_tokens,
            f"overlong_buffer = {self.overlong_buffer} must be < max_new_tokens = {self.max_new_tokens}",
        )
        require(
            self.loss_aggregation in AGGREGATIONS,
            f"loss_aggregation = {self.loss_aggregation!r} is not one of {', '.join(AGGREGATIONS)}",
        )
        check_reward_fields(self.rewards, self.reward_weights)


PRESETS: dict[str, dict[str, Any]] = {}
SHARDED_BATCH = "prompts_per_step"  # under torchrun each rank takes prompts_per_step / N whole groups
MULTI_TURN = True  # environment = ...: conversations (multi_turn.py) instead of single completions


def check_world(config: Config, world: World) -> None:
    """Enough completions on every rank for its num_minibatches; dynamic sampling in one process only."""
    require(not config.dynamic_sampling, "dynamic_sampling draws a batch of its own size in each process: "
            "train it in one process (ranks would keep different numbers of groups)")  # fmt: skip
    rows = config.prompts_per_step // world.size * config.group_size
    require(config.num_minibatches <= rows, f"num_minibatches = {config.num_minibatches} must be <= the {rows} "
            f"completions each of the {world.size} processes holds")  # fmt: skip


# ----- the pieces of the GRPO objective -----------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """A_i = (r_i - mean of its group) / (std of its group + 1e-4), (B*G,) -> (B*G,); groups are consecutive."""
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + 1e-4)
    return centred.flatten()


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): A_i = r_i - mean of the other G - 1 rewards of its group, (B*G,) -> (B*G,)."""
    groups = rewards.view(-1, group_size)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).flatten()


def reinforce_pp_advantages(
    rewards: torch.Tensor, token_kl: torch.Tensor, mask: torch.Tensor, beta: float, world: World | None = None
) -> torch.Tensor:
    """REINFORCE++ (Hu 2025): token rewards -beta KL_t, plus r on the last token; the advantage of token t is its
    return (gamma = 1), A_t = r - beta sum_{s >= t} KL_s, whitened over every completion token of the batch
    (all ranks) instead of within the group. (B,), (B, N), (B, N) -> (B, N), 0 where masked."""
    kl_to_go = (token_kl * mask).flip(1).cumsum(1).flip(1)
    return masked_whiten((rewards[:, None] - beta * kl_to_go) * mask, mask, world)


def kimi_length_rewards(lengths: torch.Tensor, correct: torch.Tensor, group_size: int) -> torch.Tensor:
    """Kimi k1.5 (section 2.3.3): lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len) over the group; a correct
    answer gets lambda_i, a wrong one min(0, lambda_i): short and right is best, long and wrong worst. A group of
    one length gets 0. (B*G,) lengths and 0/1 correctness -> (B*G,)."""
    groups = lengths.float().view(-1, group_size)
    low, high = groups.min(dim=1, keepdim=True).values, groups.max(dim=1, keepdim=True).values
    lam = torch.where(high > low, 0.5 - (groups - low) / (high - low).clamp(min=1e-8), torch.zeros_like(groups))
    return torch.where(correct.view(-1, group_size).bool(), lam, lam.clamp(max=0)).flatten()


def overlong_rewards(lengths: torch.Tensor, max_new_tokens: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to max_new_tokens - buffer tokens, then falling linearly to -1 at
    max_new_tokens. (B,) -> (B,)."""
    start = max_new_tokens - buffer
    return ((start - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


def varied_groups(rewards: torch.Tensor, group_size: int) -> list[int]:
    """The groups whose rewards are not all equal (DAPO's dynamic sampling keeps these)."""
    return (rewards.view(-1, group_size).std(dim=1) > 0).nonzero().flatten().tolist()


def keep_groups(parts: list[tuple[Any, ...]], wanted: int, group_size: int, pad_id: int) -> tuple[Any, ...]:
    """(examples, prompts, rollout, scores) of the first `wanted` kept groups of several draws, each part being
    (examples, prompts, rollout, scores, kept group indices); the first draw whole if no group was kept."""
    if not any(part[-1] for part in parts):
        return parts[0][:4]
    chosen, left = [], wanted
    for examples, prompts, rollout, scores, kept in parts:
        rows = [g * group_size + j for g in kept[:left] for j in range(group_size)]
        left -= len(kept[:left])
        if rows:
            chosen.append((examples, prompts, rollout, scores, rows))
    scores = RewardScores(
        torch.cat([s.total[rows] for *_, s, rows in chosen]),
        {name: torch.cat([s.parts[name][rows] for *_, s, rows in chosen]) for name in chosen[0][3].parts},
        {name: sum(s.failures.get(name, 0) for *_, s, _ in chosen) for name in chosen[0][3].failures},
    )
    return ([e[i] for e, _, _, _, rows in chosen for i in rows], [p[i] for _, p, _, _, rows in chosen for i in rows],
            select_rollouts([(r, rows) for _, _, r, _, rows in chosen], pad_id), scores)  # fmt: skip


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str, old_logprobs: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from log-probs of tokens sampled from pi_old (see the module doc).

    k3_is (DeepSeek-V3.2, section 3.1) weighs k3 by pi / pi_old, gradient through both factors as the paper writes
    it: as a loss, its expected gradient is then that of KL(pi || pi_ref), where k3's is that of KL(pi_ref || pi)
    (docs/grpo.md derives both). old_logprobs: log pi_old (default: logprobs detached, ratio 1 with its gradient)."""
    log_ratio = ref_logprobs - logprobs  # log r = log pi_ref - log pi
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.exp(log_ratio) - 1 - log_ratio
    if estimator == "k3_is":
        old = logprobs.detach() if old_logprobs is None else old_logprobs
        return torch.exp(logprobs - old) * (torch.exp(log_ratio) - 1 - log_ratio)
    raise ConfigError(f"kl_estimator = {estimator!r} is not one of {', '.join(KL_ESTIMATORS)}")


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    aggregation: str,
    max_new_tokens: int,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    kl_estimator: str = "k3",
    total_rows: torch.Tensor | float | None = None,
    total_tokens: torch.Tensor | float | None = None,
    policy_loss: str = "grpo",
    kimi_tau: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss on a batch of completions. logprobs, old_logprobs, ref_logprobs, mask: (B, N); advantages: (B,)
    or per token (B, N) (REINFORCE++).

    policy_loss, the clipped surrogate L_t of the module doc in three forms (ratio_t = pi / pi_old per token):
        grpo   min(ratio_t A, clip(ratio_t, 1 - eps_low, 1 + eps_high) A)
        gspo   (Zheng et al. 2025) s = exp(mean_t log ratio_t), one ratio per sequence, length-normalised;
               min(s A, clip(s, 1 - eps_low, 1 + eps_high) A) on every token of the sequence (GSPO's own eps are
               about 3e-4 and 4e-4), so sequence_mean is the paper's objective
        cispo  (MiniMax-M1) sg(clip(ratio_t, 1 - eps_low, 1 + eps_high)) A log pi_t: the IS weight is clipped and
               detached, so every token keeps a gradient (the clipped ones too), token_mean in the paper
        kimi   (Kimi k1.5, arXiv 2501.12599, eq. 4) per sequence A log pi(y) - tau/2 (log pi(y) - log pi_old(y))^2,
               log pi(y) the sum over its tokens, on each of them (sequence_mean: the paper's 1/k sum);
               no clip: the squared log-ratio keeps pi near pi_old (A = r - mean: scale_rewards = false)

    total_rows, total_tokens: the completions and tokens of the whole batch when this is one rank's part of it (the
    loss is then this rank's share of the batch loss); default: this batch's own. Returns (loss, diagnostics: kl,
    clip fractions).
    """
    mask = mask.float()
    total_rows = mask.shape[0] if total_rows is None else total_rows
    total_tokens = mask.sum() if total_tokens is None else total_tokens
    ratio = torch.exp(logprobs - old_logprobs)
    A = advantages[:, None] if advantages.dim() == 1 else advantages
    if policy_loss == "gspo":
        ratio = torch.exp(((logprobs - old_logprobs) * mask).sum(1) / mask.sum(1).clamp(min=1))[:, None]  # (B, 1)
        surrogate = torch.min(ratio * A, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * A).expand_as(mask)
    elif policy_loss == "cispo":
        surrogate = ratio.clamp(1 - epsilon_low, 1 + epsilon_high).detach() * A * logprobs
    elif policy_loss == "kimi":
        sequence_logprob = (logprobs * mask).sum(1, keepdim=True)  # (B, 1)
        sequence_log_ratio = ((logprobs - old_logprobs) * mask).sum(1, keepdim=True)
        objective = A * sequence_logprob - 0.5 * kimi_tau * sequence_log_ratio**2  # (B, 1)
        surrogate = objective.expand_as(mask)  # on each token: sequence_mean gives the objective back
    elif policy_loss == "grpo":
        surrogate = torch.min(ratio * A, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * A)
    else:
        raise ConfigError(f"policy_loss = {policy_loss!r} is not one of {', '.join(POLICY_LOSSES)}")
    per_token = -surrogate
    diagnostics: dict[str, torch.Tensor] = {}
    if beta > 0 and ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, kl_estimator, old_logprobs)
        per_token = per_token + beta * kl
        diagnostics["kl"] = (kl * mask).sum().detach() / mask.sum().clamp(min=1)
    if aggregation == "sequence_mean":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / total_rows
    elif aggregation == "token_mean":
        loss = (per_token * mask).sum() / torch.as_tensor(total_tokens).clamp(min=1)
    elif aggregation == "constant":
        loss = (per_token * mask).sum() / (total_rows * max_new_tokens)
    else:
        raise ConfigError(f"loss_aggregation = {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1)
        ratio, A = ratio.expand_as(mask), A.expand_as(mask)  # gspo: the sequence's ratio on each of its tokens
        diagnostics["clip_low_fraction"] = (((ratio < 1 - epsilon_low) & (A < 0)).float() * mask).sum() / tokens
        diagnostics["clip_high_fraction"] = (((ratio > 1 + epsilon_high) & (A > 0)).float() * mask).sum() / tokens
    return loss, diagnostics


# ----- the training loop ------------------------------------------------------------------------------------------
def train(config: Config, run: Run) -> Any:
    device = set_up_torch(config)  # seeds Python, numpy and torch; CPU threads; the device
    world = distributed.world()  # one rank of one, or this process's rank under torchrun
    groups = world.shard(config.prompts_per_step, "prompts_per_step")  # this rank's whole groups
    task = config.make_task()
    model, tokenizer = build_policy(config, device)
    reference = frozen_copy(model, config) if config.beta > 0 else None
    if config.fsdp:  # weights sharded over the ranks (FSDP2), the reference's too
        for module in (model, reference) if reference is not None else (model,):
            distributed.shard_model(module)  # in place
    draft = load_policy(config.draft, device)[0].eval() if config.draft else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.resolved_learning_rate(),
                                  betas=(config.adam_betas[0], config.adam_betas[1]),
                                  weight_decay=config.weight_decay)  # fmt: skip
    reward_set = rewards_by_name(config.rewards, config.reward_weights, task, config.reward_timeout_s)
    sampling = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                              top_p=config.top_p, top_k=config.top_k)  # fmt: skip
    eval_params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True)
    G = config.group_size
    samples = Shard(groups.start * G, groups.stop * G, groups.total * G)  # this rank's completions of the batch

    def draw(rng: torch.Generator, generator: torch.Generator) -> tuple[Any, ...]:
        """(examples, prompts, rollout, conversations or None, environments, reward scores) of prompts_per_step
        prompts (this rank's groups), G samples each."""
        picks = torch.randint(len(task.train), (config.prompts_per_step,), generator=rng).tolist()[groups.rows]
        examples = [task.train[i] for i in picks for _ in range(G)]
        prompts = [model_prompt(task, ex, tokenizer) for ex in examples]
        if task.environment is not None:  # multi-turn: one conversation per sample, env tokens out of the loss
            envs = [task.environment() for _ in examples]
            conversations = rollout_conversations(model, tokenizer, envs, examples, sampling, generator,
                                                  config.max_env_tokens, shard=samples)  # fmt: skip
            returns = conversations.returns  # each conversation's return is its reward
            return examples, prompts, conversations.rollout, conversations, envs, RewardScores(
                returns, {"environment": returns}, {})  # fmt: skip
        rollout = generate(model, tokenizer, [tokenizer.prompt_ids(p) for p in prompts], sampling, generator,
                           draft=draft, draft_k=config.draft_k, shard=samples)  # fmt: skip
        scores = reward_set.score(
            prompts, rollout.texts, [ex.answer for ex in examples], [ex.columns for ex in examples]
        )
        return examples, prompts, rollout, None, [], scores

    stateful = checkpointed(optimizer, model=model)
    run.restore(stateful)
    step = run.start_step

    while step < config.total_steps:
        # 1. Rollouts: G completions for each prompt, sampled from the current policy (= pi_old), and their rewards.
        rollout_start = time.perf_counter()
        rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # data and samples: f(seed, step)
        sample_generator = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + step)
        model.eval()
        examples, prompts, rollout, conversations, envs, scores = draw(rng, sample_generator)
        rounds, drawn = 1, [scores.total]
        if config.dynamic_sampling:  # DAPO: draw more prompts until prompts_per_step groups have differing rewards
            parts = [(examples, prompts, rollout, scores, varied_groups(scores.total, G))]
            while sum(len(part[-1]) for part in parts) < config.prompts_per_step and rounds < config.max_rounds:
                more = draw(rng, sample_generator)
                parts.append((more[0], more[1], more[2], more[5], varied_groups(more[5].total, G)))
                rounds, drawn = rounds + 1, [*drawn, more[5].total]
            examples, prompts, rollout, scores = keep_groups(parts, config.prompts_per_step, G, tokenizer.pad_id)
        model.train()
        generated_tokens = int(rollout.completion_mask.sum())
        rollout_seconds = time.perf_counter() - rollout_start

        # 2. pi_old's and pi_ref's log-probs (fixed for the whole batch), rewards, group-relative advantages.
        rows = torch.arange(len(examples), device=device)
        with torch.no_grad():
            old_logprobs = None
            if config.num_iterations > 1:
                old_logprobs = completion_logprobs_entropy(model, rollout, rows, config.temperature)[0]
            ref_logprobs = None
            if reference is not None:
                ref_logprobs = completion_logprobs_entropy(reference, rollout, rows, config.temperature)[0]
        if conversations is None:
            correct = [
                task.is_correct(t, ex.answer, **ex.columns) for t, ex in zip(rollout.texts, examples, strict=True)
            ]
        else:
            correct = conversations.solved
        rewards, kl_metrics, shaping = scores.total, {}, {}
        lengths = rollout.completion_mask.sum(dim=1).cpu()  # the model's tokens of each completion
        if config.length_penalty > 0:  # Kimi k1.5: short and right is best, long and wrong worst
            shaping["reward/length"] = kimi_length_rewards(lengths, torch.tensor(correct), G)
            rewards = rewards + config.length_penalty * shaping["reward/length"]
        if config.overlong_buffer > 0:  # DAPO: completions near max_new_tokens lose up to overlong_penalty
            shaping["reward/overlong"] = overlong_rewards(lengths, config.max_new_tokens, config.overlong_buffer)
            rewards = rewards + config.overlong_penalty * shaping["reward/overlong"]
        token_kl = torch.zeros_like(rollout.logprobs)
        if ref_logprobs is not None:  # the k1 estimate: unbiased for KL(pi || pi_ref) per token, the same in every run
            real = rollout.completion_mask
            kl_metrics["kl_k1"] = float(((rollout.logprobs - ref_logprobs) * real).sum() / real.sum().clamp(min=1))
            token_kl = kl_penalty(rollout.logprobs, ref_logprobs, config.kl_estimator) * rollout.completion_mask
        kl_in_reward = config.kl_in == "reward" or config.advantage_estimator == "reinforce++"
        if kl_in_reward and ref_logprobs is not None:  # on the sampler's log-probs
            kl_metrics["kl"] = float(token_kl.sum() / rollout.completion_mask.sum().clamp(min=1))
        if config.advantage_estimator == "reinforce++":  # A_t = r - beta sum_{s>=t} KL_s, whitened over the batch
            advantages = reinforce_pp_advantages(rewards.to(device), token_kl, rollout.completion_mask, config.beta,
                                                 world)  # fmt: skip
        else:
            if config.kl_in == "reward":  # r_i - beta sum_t KL_t
                rewards = rewards - config.beta * token_kl.sum(dim=1).cpu()
            if config.advantage_estimator == "rloo":
                advantages = rloo_advantages(rewards, G).to(device)
            else:
                advantages = group_advantages(rewards, G, config.scale_rewards).to(device)
        loss_mask = rollout.completion_mask
        if config.drop_zero_variance_groups:  # masked, not removed: every rank keeps the same minibatch shapes
            varied = scores.total.view(-1, G).std(dim=1) > 0
            loss_mask = loss_mask & varied.repeat_interleave(G).to(device)[:, None]
        if config.mask_truncated:  # DAPO's overlong filtering: a cut completion says nothing about its answer
            cut = torch.tensor([reason == "length" for reason in rollout.finish_reasons], device=device)
            loss_mask = loss_mask & ~cut[:, None]
        kept_rows = world.sum(loss_mask.any(dim=1).sum())  # over all ranks

        # 3. Optimise: num_iterations passes over the rollouts, num_minibatches optimizer steps each.
        update_start = time.perf_counter()
        totals: dict[str, float] = {}
        updates = 0
        beta_in_loss = 0.0 if kl_in_reward else config.beta
        if kept_rows > 0:
            for _iteration in range(config.num_iterations):
                order = torch.randperm(len(rows), generator=rng).to(device)
                for chunk in order.tensor_split(config.num_minibatches):
                    mb_mask = loss_mask[rows[chunk]]
                    # The minibatch's completions and tokens on all ranks: the aggregations' denominators. Every
                    # aggregation is a sum over rows divided by them, so micro-batches' losses add up to the
                    # minibatch's: accumulating their gradients is exact.
                    total_rows, total_tokens = world.sum(torch.stack([mb_mask.any(1).sum(), mb_mask.sum()]).float())
                    optimizer.zero_grad(set_to_none=True)
                    step_totals: dict[str, float] = {}
                    shown = rollout.completion_mask[rows[chunk]].sum().clamp(min=1)  # this rank's tokens: weights
                    for micro in chunk.split(config.micro_batch_size or len(chunk)):
                        micro_rows, micro_mask = rows[micro], loss_mask[rows[micro]]
                        logprobs, entropy = completion_logprobs_entropy(model, rollout, micro_rows, config.temperature,
                                                                        config.entropy_coef > 0)  # fmt: skip
                        # With one pass, pi_old is the policy being optimised: ratio = 1, gradient = A grad log pi.
                        micro_old = logprobs.detach() if old_logprobs is None else old_logprobs[micro]
                        loss, diagnostics = grpo_loss(
                            logprobs, micro_old, advantages[micro_rows], micro_mask,
                            config.epsilon_low, config.epsilon_high, config.loss_aggregation, config.max_new_tokens,
                            beta_in_loss, None if ref_logprobs is None else ref_logprobs[micro], config.kl_estimator,
                            total_rows, total_tokens, config.policy_loss, config.kimi_tau,
                        )  # fmt: skip
                        if config.entropy_coef > 0:  # the bonus: a token mean over the minibatch on all ranks
                            loss = loss - config.entropy_coef * (entropy * micro_mask).sum() / total_tokens.clamp(min=1)
                        loss.backward()
                        real = rollout.completion_mask[micro_rows].float()
                        weight = real.sum() / shown  # token-mean diagnostics: each micro-batch's share of tokens
                        diagnostics = {name: part * weight for name, part in diagnostics.items()}
                        diagnostics["entropy"] = (entropy.detach() * real).sum() / shown
                        diagnostics["loss"] = loss.detach() * world.size  # the batch loss (ranks' shares, averaged)
                        for name, part in diagnostics.items():
                            step_totals[name] = step_totals.get(name, 0.0) + float(part)
                    world.sync_gradients(trainable)  # summed over ranks: the gradient of the whole batch's loss
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    for name, total in {**step_totals, "grad_norm": float(grad_norm)}.items():
                        totals[name] = totals.get(name, 0.0) + total
                    updates += 1
        step += 1

        # 4. Log (reward parts, accuracy, KL, clipping, lengths, speed), evaluate, checkpoint.
        metrics = {
            **scores.metrics(),
            **{name: float(value.mean()) for name, value in shaping.items()},
            **kl_metrics,
            **{name: value / updates for name, value in totals.items()},
            "train_accuracy": sum(correct) / len(correct),
            "completion_length": generated_tokens / len(examples),
            **(conversation_metrics(conversations, envs) if conversations is not None else {}),
            "groups_kept": float(kept_rows) / G,
            "sampling_rounds": float(rounds),
            "reward_drawn": float(torch.cat(drawn).mean()),  # every sample drawn (dynamic sampling keeps some)
            "tokens_per_second": generated_tokens / rollout_seconds,
            "rollout_seconds": rollout_seconds,
            "update_seconds": time.perf_counter() - update_start,
            "learning_rate": optimizer.param_groups[0]["lr"],
        }
        if evaluation_due(config, step):
            metrics["accuracy"] = held_out_accuracy(model, tokenizer, task, eval_params, config)
        run.log(step, {k: v for k, v in metrics.items() if math.isfinite(v) or k.startswith("reward")})
        run.maybe_checkpoint(step, stateful)
        if run.call_step_hooks(step, model):
            break
    run.maybe_checkpoint(step, stateful, final=True)

    return model
