import pytest
import torch

from plainrl.kit.optim import RMSpropTF


def test_rmsprop_tf_two_steps_by_hand():
    # p = 1, loss = 3p (gradient 3, then 3 again); alpha 0.9, eps 0.01, lr 0.1
    # v1 = 0.9 * 1 + 0.1 * 9 = 1.8;  p1 = 1 - 0.1 * 3 / sqrt(1.81) = 0.777014...
    # v2 = 0.9 * 1.8 + 0.1 * 9 = 2.52; p2 = p1 - 0.1 * 3 / sqrt(2.53) = 0.588405...
    param = torch.nn.Parameter(torch.tensor(1.0))
    optimizer = RMSpropTF([param], lr=0.1, alpha=0.9, eps=0.01)
    expected = [1 - 0.3 / 1.81**0.5, 1 - 0.3 / 1.81**0.5 - 0.3 / 2.53**0.5]
    for value in expected:
        optimizer.zero_grad()
        (3 * param).backward()
        optimizer.step()
        assert param.item() == pytest.approx(value, rel=1e-6)
    assert optimizer.state[param]["square_avg"].item() == pytest.approx(2.52)


def test_rmsprop_tf_matches_stable_baselines3s_rmsprop_tf_like():
    sb2_compat = pytest.importorskip("stable_baselines3.common.sb2_compat.rmsprop_tf_like")

    def train(optimizer_class: type) -> torch.Tensor:
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 2)
        optimizer = optimizer_class(net.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
        inputs = torch.randn(20, 4)
        for _ in range(20):
            optimizer.zero_grad()
            net(inputs).pow(2).mean().backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    ours, theirs = train(RMSpropTF), train(sb2_compat.RMSpropTFLike)
    torch.testing.assert_close(ours, theirs)
    torch.manual_seed(0)
    assert not torch.allclose(ours, torch.cat([p.flatten() for p in torch.nn.Linear(4, 2).parameters()]))  # moved
