"""What each KL estimator optimises when GRPO backpropagates through it (issue #22, docs/grpo.md): the expectation
under the sampling policy of the gradient of the estimator-as-loss, by exact enumeration of a small categorical
(no sampling noise), against the true gradients of the two KL divergences."""

import pytest
import torch

import plainrl
from plainrl.llm.grpo import kl_penalty

V = 6


def setting(drift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits theta and a reference's log-probs, the policy `drift` away from the reference."""
    g = torch.Generator().manual_seed(0)
    ref_logits = torch.randn(V, generator=g, dtype=torch.float64)
    theta = ref_logits + drift * torch.randn(V, generator=g, dtype=torch.float64)
    return theta, ref_logits.log_softmax(0)


def expected_gradient(estimator: str, theta: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """E_{a ~ pi}[grad_theta k(a)] = sum_a pi(a) grad_theta k(a): tokens drawn from pi = pi_old, not differentiated."""
    pi_old = theta.softmax(0)
    total = torch.zeros(V, dtype=torch.float64)
    for a in range(V):
        t = theta.clone().requires_grad_(True)
        logp = t.log_softmax(0)[a]
        k = kl_penalty(logp, ref_logp[a], estimator, old_logprobs=pi_old.log()[a])  # pi_old: a constant
        (grad,) = torch.autograd.grad(k, t)
        total += pi_old[a] * grad
    return total


def true_gradient(direction: str, theta: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    t = theta.clone().requires_grad_(True)
    logp = t.log_softmax(0)
    if direction == "reverse":  # KL(pi || pi_ref), what GRPO means to penalise
        kl = (logp.exp() * (logp - ref_logp)).sum()
    else:  # forward: KL(pi_ref || pi)
        kl = (ref_logp.exp() * (ref_logp - logp)).sum()
    return torch.autograd.grad(kl, t)[0]


@pytest.mark.parametrize("drift", [0.3, 1.0, 2.0])
def test_each_estimator_as_a_loss_has_the_expected_gradient_of(drift: float) -> None:
    theta, ref_logp = setting(drift)
    reverse, forward = true_gradient("reverse", theta, ref_logp), true_gradient("forward", theta, ref_logp)
    assert (reverse - forward).abs().max() > 1e-3  # the two directions really differ here
    torch.testing.assert_close(expected_gradient("k1", theta, ref_logp), torch.zeros(V, dtype=torch.float64),
                               atol=1e-6, rtol=0)  # fmt: skip
    torch.testing.assert_close(expected_gradient("k2", theta, ref_logp), reverse, atol=1e-6, rtol=0)
    torch.testing.assert_close(expected_gradient("k3", theta, ref_logp), forward, atol=1e-6, rtol=0)
    torch.testing.assert_close(expected_gradient("k3_is", theta, ref_logp), reverse, atol=1e-6, rtol=0)


def test_k3_is_has_the_value_of_k3_on_policy_and_a_ratio_gradient():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ref = torch.tensor([-1.5, -1.0])
    k3, k3_is = kl_penalty(logp, ref, "k3"), kl_penalty(logp, ref, "k3_is")  # pi_old = pi: ratio 1
    torch.testing.assert_close(k3_is, k3)
    (g3,) = torch.autograd.grad(k3.sum(), logp, retain_graph=True)
    (g3_is,) = torch.autograd.grad(k3_is.sum(), logp)
    torch.testing.assert_close(g3_is, g3 + k3.detach())  # d(ratio k3) = k3 d log pi + d k3 at ratio 1
    (g2,) = torch.autograd.grad(kl_penalty(logp, ref, "k2").sum(), logp)
    torch.testing.assert_close(g3_is, g2)  # on policy, sample by sample: k2's gradient (-log r d log pi)


def test_kl_in_the_reward_leaves_the_loss_without_a_kl_term(tmp_path):
    run = plainrl.train("grpo", task="arithmetic", total_steps=2, prompts_per_step=2, group_size=4, max_new_tokens=6,
                        beta=0.1, kl_in="reward", eval_every=0, eval_n=4, device="cpu", run_dir=tmp_path / "r",
                        progress=False)  # fmt: skip
    rows = run.metrics
    assert [row["step"] for row in rows] == [1, 2] and all(row["kl"] is not None for row in rows)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # step 1: the policy is the reference
