import math

import pytest
import torch
from torch.distributions import Categorical, Normal

from plainrl.kit.nets import CategoricalHead, DiagGaussianHead, mlp
from plainrl.kit.normalize import ObsNormalizer, RunningMeanStd


def test_categorical_head_matches_torch_distribution():
    torch.manual_seed(0)
    logits, actions = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    log_prob, entropy = CategoricalHead(3).log_prob_entropy(logits, actions)
    reference = Categorical(logits=logits)
    assert torch.allclose(log_prob, reference.log_prob(actions), atol=1e-6)
    assert torch.allclose(entropy, reference.entropy(), atol=1e-6)


def test_categorical_head_samples_with_the_right_frequencies():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.2, 0.8]])).expand(20_000, 2)
    assert CategoricalHead(2).sample(logits).float().mean().item() == pytest.approx(0.8, abs=0.01)


def test_gaussian_head_matches_hand_formula_and_torch():
    head = DiagGaussianHead(2, initial_log_std=math.log(0.5))
    mean, actions = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 1.0]])
    log_prob, entropy = head.log_prob_entropy(mean, actions)
    by_hand = (-0.5 * 1.0**2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)) + (
        -0.0 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    )
    assert log_prob.item() == pytest.approx(by_hand, abs=1e-6)
    reference = Normal(mean, torch.full_like(mean, 0.5))
    assert entropy.item() == pytest.approx(reference.entropy().sum().item(), abs=1e-6)


def test_mlp_shapes_and_output_gain():
    net = mlp(4, (16, 16), 3, "tanh", out_gain=0.01)
    assert net(torch.zeros(7, 4)).shape == (7, 3)
    assert net[-1].weight.abs().max() < 0.05


def test_running_mean_std_merges_batches_exactly():
    torch.manual_seed(0)
    data = torch.randn(1000, 3, dtype=torch.float64) * 3 + 1
    stats = RunningMeanStd((3,))
    for chunk in data.split(137):
        stats.update(chunk)
    assert torch.allclose(stats.mean, data.mean(0), atol=1e-6)
    assert torch.allclose(stats.var, data.var(0, unbiased=False), atol=1e-4)


def test_obs_normalizer_is_saved_with_the_state_dict():
    normalizer = ObsNormalizer((2,))
    normalizer.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    copy = ObsNormalizer((2,))
    copy.load_state_dict(normalizer.state_dict())
    x = torch.tensor([[2.0, 4.0]])
    assert torch.allclose(copy(x), normalizer(x)) and torch.allclose(copy(x), torch.zeros(1, 2), atol=1e-3)


def test_device_auto_means_the_cpu_for_env_agents_and_a_gpu_for_language_models(monkeypatch):
    from plainrl.kit.config import EnvConfig
    from plainrl.kit.nets import resolve_device
    from plainrl.llm.config import TaskConfig

    monkeypatch.undo()  # the declared defaults, not tests/conftest.py's --device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert resolve_device("auto", EnvConfig.AUTO_DEVICE) == torch.device("cpu")  # small MLPs: launch-bound on a GPU
    assert resolve_device("auto", TaskConfig.AUTO_DEVICE) == torch.device("cuda")
    assert resolve_device("cuda", EnvConfig.AUTO_DEVICE) == torch.device("cuda")  # asked for: given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", TaskConfig.AUTO_DEVICE) == torch.device("cpu")
