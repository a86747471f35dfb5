"""Reward model: the Bradley-Terry loss, scores read at each sequence's last real token whatever the padding,
verifier-built pairs, and a seeded learning test that a sign flip fails."""

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch

import plainrl
from plainrl.llm import reward_model
from plainrl.llm.generate import SamplingParams, pad_sequences
from plainrl.llm.policies import load_policy
from plainrl.llm.preferences import verifier_pairs
from plainrl.llm.tasks import make_task


def test_bradley_terry_loss_matches_hand_computation():
    loss = reward_model.bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2  # -log sigmoid(1), -log sigmoid(-2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_sequence_scores_read_the_last_real_token_for_any_padding():
    torch.manual_seed(0)
    backbone, tokenizer = load_policy("tiny")
    rm = reward_model.ScalarModel(backbone).eval()
    sequences = [tokenizer.prompt_ids("12+34=") + tokenizer.encode("46"), tokenizer.prompt_ids("1+1=")]
    alone = torch.stack([rm(torch.tensor([s]))[0, -1] for s in sequences])  # no padding at all
    for side in ("left", "right"):
        ids, mask = pad_sequences(sequences, tokenizer.pad_id, side)
        assert torch.allclose(rm.sequence_scores(ids, mask), alone, atol=1e-5), side


class SevenOrEight(torch.nn.Module):
    """A stub policy: after the prompt it says "7" or "8" (even odds), then EOS."""

    def __init__(self, tokenizer):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # the engine reads the device from a parameter
        self.seven, self.eight = tokenizer.encode("78")
        self.eos, self.vocab_size = tokenizer.eos_id, tokenizer.vocab_size

    def new_cache(self, batch_size, max_len):
        return SimpleNamespace(length=0)

    def forward(self, tokens, positions=None, key_mask=None, cache=None, last_only=False):
        said = ((tokens == self.seven) | (tokens == self.eight)).float()
        logits = torch.full((*tokens.shape, self.vocab_size), -1e9)
        logits[..., self.seven] = logits[..., self.eight] = -1e9 * said
        logits[..., self.eos] = -1e9 * (1 - said)
        return logits[:, -1:] if last_only else logits


def test_verifier_pairs_pair_a_correct_with_an_incorrect_sample():
    task = make_task("arithmetic:digits=1,n_test=10")
    _, tokenizer = load_policy("tiny")
    examples = [next(e for e in task.train + task.test if e.prompt == p) for p in ("3+4=", "1+1=")]
    params = SamplingParams(max_new_tokens=3, temperature=1.0)
    generator = torch.Generator().manual_seed(0)
    pairs = verifier_pairs(SevenOrEight(tokenizer), tokenizer, task, examples, 64, params, generator=generator)
    # 3+4= gets about 32 sevens and 32 eights: min(#7, #8) pairs; 1+1= has no correct sample, so no pair.
    assert 24 <= len(pairs) <= 32
    assert all(pair.prompt == "3+4=" and pair.chosen == "7" and pair.rejected == "8" for pair in pairs)


def write_pairs(path):
    """Chosen: the right single-digit sum; rejected: the same with a 0 appended."""
    lines = [json.dumps({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": f"{a + b}0"})
             for a in range(10) for b in range(10)]  # fmt: skip
    path.write_text("\n".join(lines))


def test_reward_model_learns_held_out_preferences(tmp_path):
    """20 steps from an untrained trunk rank >= 90% of held-out pairs right; a flipped loss ranks them wrong."""
    pairs_file = tmp_path / "pairs.jsonl"
    write_pairs(pairs_file)
    settings = [f"pairs={str(pairs_file)!r}", "eval_every=10", "learning_rate=1e-3", "batch_size=32",
                "test_fraction=0.2"]  # fmt: skip
    plainrl.train(
        "reward-model",
        task="arithmetic:digits=1,n_test=10",
        total_steps=20,
        set_items=settings,
        run_dir=tmp_path / "run",
        progress=False,
    )
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evaluation["n"] == 20 and evaluation["pairwise_accuracy"] >= 0.9
    with (tmp_path / "run" / "metrics.csv").open() as f:
        assert "accuracy" in next(csv.DictReader(f))  # the held-out pairwise accuracy curve.png shows
    loaded = plainrl.load(tmp_path / "run")  # the scorer itself, frozen, with the trained head
    assert isinstance(loaded, reward_model.ScalarModel) and not any(p.requires_grad for p in loaded.parameters())
    assert plainrl.evaluate(tmp_path / "run") == evaluation  # the saved run re-scores its held-out pairs alike


def test_weights_of_another_model_are_refused_not_silently_dropped():
    """A reward model's checkpoint (backbone.*, head.*) loaded into a bare policy would leave it untrained."""
    from plainrl.kit.errors import ConfigError
    from plainrl.llm.policies import TrainableWeights

    policy, _ = load_policy("tiny")
    scorer_state = reward_model.ScalarModel(load_policy("tiny")[0]).state_dict()
    with pytest.raises(ConfigError, match=r"the checkpoint holds \d+ weights this model lacks \(backbone\."):
        TrainableWeights(policy).load_state_dict(scorer_state)
