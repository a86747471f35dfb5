"""dtype = "bfloat16": bf16 matmuls under autocast, fp32 master weights and optimizer state, a bf16 reference;
gradient_checkpointing."""

import torch

import plainrl
from plainrl.kit.run import load_checkpoint_file, precision
from plainrl.llm.grpo import Config as GRPOConfig
from plainrl.llm.policies import frozen_copy, load_policy


def test_bfloat16_runs_matmuls_in_bf16_and_keeps_the_rest_fp32():
    config = GRPOConfig(dtype="bfloat16", device="cpu")
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with precision(config):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32
    torch.testing.assert_close(y.float(), layer(x), atol=0.05, rtol=0.02)  # bf16: ~3 significant digits
    with precision(GRPOConfig(device="cpu")):
        assert layer(x).dtype == torch.float32  # float32 (the default): nothing changes


def test_the_reference_is_a_frozen_bf16_copy_only_in_bfloat16_runs():
    model, _ = load_policy("tiny")
    reference = frozen_copy(model, GRPOConfig(dtype="bfloat16"))
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    assert {p.dtype for p in frozen_copy(model, GRPOConfig()).parameters()} == {torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the policy itself is untouched


def test_a_bfloat16_sft_run_learns_like_float32_and_saves_fp32_weights(tmp_path):
    losses = {}
    for dtype in ("float32", "bfloat16"):
        run = plainrl.train("sft", task="arithmetic", total_steps=30, batch_size=32, warmup_steps=0,
                            eval_every=0, eval_n=8, dtype=dtype, device="cpu", run_dir=tmp_path / dtype,
                            progress=False)  # fmt: skip
        losses[dtype] = [row["loss"] for row in run.metrics]
        weights = load_checkpoint_file(run.path)["model"]
        assert {v.dtype for v in weights.values()} == {torch.float32}
    assert losses["bfloat16"][-1] < 0.9 * losses["bfloat16"][0]  # it learns
    assert abs(losses["bfloat16"][-1] - losses["float32"][-1]) < 0.05 * losses["float32"][-1]


def test_a_bfloat16_grpo_run_with_a_reference_trains(tmp_path):
    run = plainrl.train("grpo", task="arithmetic", total_steps=2, prompts_per_step=2, group_size=4,
                        max_new_tokens=6, beta=0.1, eval_every=0, eval_n=4, dtype="bfloat16", device="cpu",
                        run_dir=tmp_path / "grpo", progress=False)  # fmt: skip
    assert [row["step"] for row in run.metrics] == [1, 2]
    assert all(row["kl"] is not None for row in run.metrics)


def test_a_grpo_run_with_gradient_checkpointing_reaches_the_same_weights(tmp_path):
    weights, flags = [], []
    for on in (False, True):
        run = plainrl.train("grpo", task="arithmetic", total_steps=2, prompts_per_step=2, group_size=4,
                            max_new_tokens=6, beta=0.1, eval_every=0, eval_n=4, gradient_checkpointing=on,
                            device="cpu", run_dir=tmp_path / str(on), progress=False,
                            callbacks=[lambda step, model: flags.append(model.gradient_checkpointing)])  # fmt: skip
        weights.append(load_checkpoint_file(run.path)["model"])
    assert max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0]) <= 1e-5
    assert flags == [False, False, True, True]  # the second run's policy really was checkpointed
