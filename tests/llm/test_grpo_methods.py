"""The 2025-26 variants of grpo.py against hand-computed values: GSPO's and CISPO's losses and gradients, the RLOO
and REINFORCE++ advantages, Kimi k1.5's length reward, DAPO's overlong shaping."""

import math

import pytest
import torch

import plainrl
from plainrl.kit.errors import ConfigError
from plainrl.llm.grpo import (
    grpo_loss,
    kimi_length_rewards,
    overlong_rewards,
    reinforce_pp_advantages,
    rloo_advantages,
)


def loss_and_grad(policy_loss, shift, advantage, eps_low=0.05, eps_high=0.05, aggregation="sequence_mean"):
    """One sequence whose log-probs moved by `shift` from pi_old: the loss and d loss / d log pi per token."""
    old = torch.log(torch.tensor([[0.5, 0.25]]))
    logprobs = (old + torch.tensor([shift])).requires_grad_(True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, _ = grpo_loss(logprobs, old, torch.tensor([advantage]), mask, eps_low, eps_high, aggregation, 2,
                        policy_loss=policy_loss)  # fmt: skip
    loss.backward()
    return loss.item(), logprobs.grad[0].tolist()


def test_gspo_clips_one_length_normalised_ratio_per_sequence():
    # log ratios 0.1 and -0.3: s = exp(mean) = exp(-0.1) = 0.904837, inside [0.95, 1.05]? No: below 1 - 0.05.
    s = math.exp(-0.1)
    loss, grad = loss_and_grad("gspo", [0.1, -0.3], advantage=1.0)
    assert loss == pytest.approx(-s)  # min(s A, clip(s) A) = min(0.9048, 0.95) = s: unclipped for A > 0
    assert grad == pytest.approx([-s / 2, -s / 2])  # d(-s)/d log pi_t = -s / |y|: every token alike
    loss, grad = loss_and_grad("gspo", [0.1, -0.3], advantage=-1.0)
    assert loss == pytest.approx(0.95)  # min(-s, -0.95) = -0.95: clipped for A < 0, so no gradient
    assert grad == pytest.approx([0.0, 0.0])
    # GRPO on the same tokens clips per token instead: ratio 1.105 (clipped for A > 0) and 0.741 (not)
    loss, grad = loss_and_grad("grpo", [0.1, -0.3], advantage=1.0)
    assert loss == pytest.approx(-(1.05 + math.exp(-0.3)) / 2)
    assert grad == pytest.approx([0.0, -math.exp(-0.3) / 2])


def test_cispo_clips_the_weight_and_keeps_every_tokens_gradient():
    # ratios exp(0.5) = 1.6487 (weight clipped to 1.2) and exp(-0.1) = 0.9048 (inside [0.8, 1.2])
    loss, grad = loss_and_grad("cispo", [0.5, -0.1], advantage=2.0, eps_low=0.2, eps_high=0.2,
                               aggregation="token_mean")  # fmt: skip
    log_pi = [math.log(0.5) + 0.5, math.log(0.25) - 0.1]
    assert loss == pytest.approx(-(1.2 * 2 * log_pi[0] + math.exp(-0.1) * 2 * log_pi[1]) / 2)
    assert grad == pytest.approx([-1.2 * 2 / 2, -math.exp(-0.1) * 2 / 2])  # the clipped token too
    _, grpo_grad = loss_and_grad("grpo", [0.5, -0.1], advantage=2.0, eps_low=0.2, eps_high=0.2,
                                 aggregation="token_mean")  # fmt: skip
    assert grpo_grad[0] == 0.0  # where GRPO's clip stops the gradient


def test_kimi_k15_loss_is_the_policy_gradient_with_a_squared_log_ratio():
    # log pi(y) - log pi_old(y) = 0.1 - 0.3 = -0.2; A = 1, tau = 0.5:
    # objective = A log pi(y) - tau/2 (-0.2)^2, gradient per token = A + tau * 0.2 ... of the loss: -(1 - 0.5 * -0.2)
    old = torch.log(torch.tensor([[0.5, 0.25]]))
    logprobs = (old + torch.tensor([[0.1, -0.3]])).requires_grad_(True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, _ = grpo_loss(logprobs, old, torch.tensor([1.0]), mask, 0.2, 0.2, "sequence_mean", 2, policy_loss="kimi",
                        kimi_tau=0.5)  # fmt: skip
    loss.backward()
    log_pi = math.log(0.5) + 0.1 + math.log(0.25) - 0.3
    assert loss.item() == pytest.approx(-(1.0 * log_pi - 0.25 * 0.04))
    assert logprobs.grad[0].tolist() == pytest.approx([-(1.0 - 0.5 * -0.2)] * 2)  # -(A - tau * log ratio)


def test_rloo_subtracts_the_mean_of_the_others():
    advantages = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]), group_size=4)
    # r = 1: others (1 + 0 + 0) / 3 -> 2/3; r = 0: others (1 + 0 + 1) / 3 -> -2/3
    assert advantages.tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])


def test_reinforce_pp_folds_the_kl_into_the_return_and_whitens_over_the_batch():
    rewards = torch.tensor([1.0, 0.0])
    token_kl = torch.tensor([[0.1, 0.2, 9.0], [0.3, 9.0, 9.0]])  # 9: padding, never read
    mask = torch.tensor([[True, True, False], [True, False, False]])
    advantages = reinforce_pp_advantages(rewards, token_kl, mask, beta=0.5)
    raw = [1 - 0.5 * 0.3, 1 - 0.5 * 0.2, 0 - 0.5 * 0.3]  # r - beta * KL to go: 0.85, 0.9, -0.15
    mean = sum(raw) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in raw) / 3)
    want = [[(raw[0] - mean) / std, (raw[1] - mean) / std, 0.0], [(raw[2] - mean) / std, 0.0, 0.0]]
    assert advantages.tolist() == [pytest.approx(row, abs=1e-5) for row in want]


def test_kimi_length_reward_and_dapo_overlong_shaping():
    lengths, correct = torch.tensor([2, 4, 6, 4, 5, 5, 5, 5]), torch.tensor([1, 1, 0, 0, 1, 0, 1, 0])
    # group 1: min 2, max 6: lambda = 0.5 - (len - 2) / 4 = 0.5, 0, -0.5, 0; wrong answers keep min(0, lambda)
    # group 2: one length: 0
    assert kimi_length_rewards(lengths, correct, 4).tolist() == [0.5, 0.0, -0.5, 0.0, 0, 0, 0, 0]
    assert kimi_length_rewards(torch.tensor([2, 6]), torch.tensor([0, 0]), 2).tolist() == [0.0, -0.5]
    # max_new_tokens 10, buffer 4: free up to 6 tokens, then -1/4 a token down to -1 at 10
    assert overlong_rewards(torch.tensor([5, 6, 8, 10]), 10, 4).tolist() == [0.0, 0.0, -0.5, -1.0]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("policy_loss=ppo", "policy_loss = 'ppo' is not one of grpo, gspo, cispo, kimi"),
        ("advantage_estimator=gae", "advantage_estimator = 'gae' is not one of group, rloo, reinforce++"),
        ("overlong_buffer=16", "overlong_buffer = 16 must be < max_new_tokens = 16"),
        ("length_penalty=-1", "length_penalty"),
    ],
)
def test_bad_method_settings_are_one_line(setting, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        plainrl.train("grpo", set_items=[setting], progress=False)


def digit_fraction(prompt: str, completion: str, answer: str) -> float:
    """A dense verifiable reward: the share of the completion's characters that are digits."""
    return sum(c.isdigit() for c in completion) / max(len(completion), 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [["policy_loss=gspo", "epsilon_low=3e-4", "epsilon_high=4e-4"], ["policy_loss=cispo", "epsilon_high=0.5",
     "loss_aggregation=token_mean"], ["advantage_estimator=rloo"], ["advantage_estimator=reinforce++", "beta=0.01"],
     ["length_penalty=0.2", "overlong_buffer=4", "mask_truncated=true"], ["policy_loss=kimi", "scale_rewards=false",
     "kimi_tau=0.1"]],
    ids=["gspo", "cispo", "rloo", "reinforce++", "kimi-length+dapo-overlong", "kimi-loss"],
)  # fmt: skip
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["learns", "sign-flipped"])
def test_each_method_learns_a_verifiable_reward_and_unlearns_it_with_the_sign_flipped(tmp_path, method, sign,
                                                                                      monkeypatch):  # fmt: skip
    """From an untrained tiny model (digit share ~0.1), 12 steps with mu = 2 push the reward far up; with every
    advantage negated it falls instead."""
    from plainrl.llm import grpo

    if sign < 0:
        for name in ("group_advantages", "rloo_advantages", "reinforce_pp_advantages"):
            original = getattr(grpo, name)
            monkeypatch.setattr(grpo, name, lambda *a, _f=original, **k: -_f(*a, **k))
    settings = ["eval_every=0", "eval_n=10", "max_new_tokens=8", "prompts_per_step=8", "group_size=8",
                "learning_rate=3e-3", "num_iterations=2", "beta=0", 'rewards=["tests.llm.test_grpo:digit_fraction"]',
                *method]  # fmt: skip
    run = plainrl.train("grpo", task="arithmetic:digits=1,n_test=10", total_steps=12, set_items=settings,
                        run_dir=tmp_path, progress=False)  # fmt: skip
    rewards = [row["reward"] for row in run.metrics]
    first, last = rewards[0], sum(rewards[-3:]) / 3
    assert first < 0.2
    assert (last >= 0.5) if sign > 0 else (last < first), (first, last)


def starts_with_digit(prompt: str, completion: str, answer: str) -> float:
    """A sparse 0/1 reward: many groups of an untrained model score all 0, some do not."""
    return float(completion[:1].isdigit())


def test_keeping_groups_from_several_draws_pads_prompts_left_and_completions_right():
    from plainrl.llm.grpo import keep_groups
    from plainrl.llm.rewards import RewardScores
    from plainrl.llm.sampling import Rollout

    def rollout(P, N, first):
        ids = torch.arange(4 * P).view(4, P) + 100 * first
        ones = torch.ones(4, P + N, dtype=torch.bool)
        return Rollout(ids, ones[:, :P], torch.full((4, N), first), ones[:, P:], torch.full((4, N), -1.0),
                       [f"t{first}{i}" for i in range(4)], ["eos"] * 4)  # fmt: skip

    def scores(values):
        return RewardScores(torch.tensor(values), {"accuracy": torch.tensor(values)}, {"accuracy": 1})

    parts = [(list("abcd"), list("ABCD"), rollout(2, 3, 1), scores([0.0, 0.0, 1.0, 0.0]), [1]),
             (list("efgh"), list("EFGH"), rollout(3, 1, 2), scores([1.0, 0.0, 1.0, 1.0]), [0, 1])]  # fmt: skip
    examples, prompts, kept, kept_scores = keep_groups(parts, wanted=2, group_size=2, pad_id=0)
    assert examples == list("cdef") and prompts == list("CDEF")  # group 1 of the first draw, group 0 of the second
    assert kept.prompt_ids.shape == (4, 3) and kept.completion_ids.shape == (4, 3)
    assert kept.prompt_mask[:2].tolist() == [[False, True, True]] * 2  # left padding of the shorter prompts
    assert kept.completion_mask[2:].tolist() == [[True, False, False]] * 2  # right padding of the shorter completions
    assert kept_scores.total.tolist() == [1.0, 0.0, 1.0, 0.0] and kept_scores.failures == {"accuracy": 2}
    assert kept.texts == ["t12", "t13", "t20", "t21"]


@pytest.mark.slow
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["learns", "sign-flipped"])
def test_dynamic_sampling_fills_the_batch_with_groups_that_differ(tmp_path, sign, monkeypatch):
    from plainrl.llm import grpo

    if sign < 0:
        original = grpo.group_advantages
        monkeypatch.setattr(grpo, "group_advantages", lambda *a, **k: -original(*a, **k))
    settings = ["eval_every=0", "eval_n=10", "max_new_tokens=4", "prompts_per_step=8", "group_size=8",
                "learning_rate=3e-3", "beta=0", "dynamic_sampling=true", "max_rounds=4", "num_iterations=2",
                'rewards=["tests.llm.test_grpo_methods:starts_with_digit"]']  # fmt: skip
    run = plainrl.train("grpo", task="arithmetic:digits=1,n_test=10", total_steps=12, set_items=settings,
                        run_dir=tmp_path, progress=False)  # fmt: skip
    rows = run.metrics
    assert rows[0]["sampling_rounds"] > 1 and rows[0]["groups_kept"] == 8  # drew more, kept a full batch
    drawn = [row["reward_drawn"] for row in rows]  # every sample drawn, before the groups are chosen
    last = sum(drawn[-3:]) / 3
    assert (last > 0.6) if sign > 0 else (last < drawn[0]), drawn


def no_reward(prompt: str, completion: str, answer: str) -> float:
    return 0.0


@pytest.mark.slow
def test_the_entropy_bonus_raises_the_entropy_when_rewards_teach_nothing(tmp_path):
    """All rewards equal: the advantages are 0, so the bonus is the whole loss. With entropy_coef > 0 the policy's
    entropy must rise step by step (a flipped sign would lower it); with 0 nothing moves."""
    settings = ["eval_every=0", "eval_n=4", "max_new_tokens=6", "prompts_per_step=4", "group_size=4", "beta=0",
                "learning_rate=3e-3", 'rewards=["tests.llm.test_grpo_methods:no_reward"]']  # fmt: skip
    entropies = {}
    for coef in (0.0, 0.5):
        run = plainrl.train("grpo", task="arithmetic:digits=1,n_test=10", total_steps=8, progress=False,
                            set_items=[*settings, f"entropy_coef={coef}"], run_dir=tmp_path / str(coef))  # fmt: skip
        entropies[coef] = [row["entropy"] for row in run.metrics]
    assert entropies[0.5][-1] > entropies[0.5][0] + 0.05, entropies[0.5]
    assert entropies[0.0][-1] == pytest.approx(entropies[0.0][0], abs=0.2)  # only the samples differ


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_micro_batches_accumulate_exactly_the_minibatch_gradient(tmp_path, aggregation):
    """micro_batch_size = 3 (minibatches of 8 split 3 + 3 + 2) gives the weights and logged numbers of whole
    minibatches: every aggregation divides by minibatch-wide counts, so the micro-batches' losses add up."""
    from plainrl.llm.policies import load_policy

    settings = ["eval_every=0", "eval_n=4", "max_new_tokens=6", "prompts_per_step=4", "group_size=4", "beta=0.04",
                "num_minibatches=2", "num_iterations=2", "learning_rate=1e-3", f"loss_aggregation={aggregation}",
                'rewards=["tests.llm.test_grpo_methods:digit_fraction"]']  # fmt: skip
    runs = {size: plainrl.train("grpo", task="arithmetic:digits=1,n_test=10", total_steps=2, progress=False,
                                set_items=[*settings, f"micro_batch_size={size}"], run_dir=tmp_path / str(size))
            for size in (0, 3)}  # fmt: skip
    whole, micro = (dict(load_policy(str(runs[size].path))[0].named_parameters()) for size in (0, 3))
    # float sums in another order; AdamW divides by sqrt(v), which magnifies them where gradients are tiny
    assert max(float((whole[n] - micro[n]).abs().max()) for n in whole) < 1e-4
    for name in ("loss", "grad_norm", "entropy", "clip_low_fraction", "kl"):
        assert runs[3].metrics[-1][name] == pytest.approx(runs[0].metrics[-1][name], rel=1e-4, abs=1e-7), name
