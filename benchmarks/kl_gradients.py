"""The expected gradient of each KL estimator used as a loss, against the true gradient of KL(pi || pi_ref), as
pi drifts from pi_ref on a toy categorical (exact enumeration, no sampling): docs/img/kl_gradients.png.

    python benchmarks/kl_gradients.py [--tokens 6] [--out docs/img/kl_gradients.png]

For each drift, pi's logits are pi_ref's plus drift x a fixed random direction; tokens are drawn from pi = pi_old.
Plotted: the relative error |E[grad k] - grad KL(pi || pi_ref)| / |grad KL(pi || pi_ref)| of k1, k2, k3, k3_is,
against the KL itself. k2 and k3_is lie on 0; k1 on 1 (its expected gradient is 0); k3 follows the forward KL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from plainrl.llm.grpo import kl_penalty  # noqa: E402


def expected_gradient(estimator: str, theta: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """sum_a pi(a) grad_theta k(a): the sampled token's distribution held fixed, the estimator differentiated."""
    pi = theta.softmax(0)
    total = torch.zeros_like(theta)
    for a in range(len(theta)):
        t = theta.clone().requires_grad_(True)
        k = kl_penalty(t.log_softmax(0)[a], ref_logp[a], estimator, old_logprobs=pi.log()[a])
        total += pi[a] * torch.autograd.grad(k, t)[0]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("docs/img/kl_gradients.png"))
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    ref_logits = torch.randn(args.tokens, generator=g, dtype=torch.float64)
    direction = torch.randn(args.tokens, generator=g, dtype=torch.float64)
    ref_logp = ref_logits.log_softmax(0)
    kls, errors = [], {name: [] for name in ("k1", "k2", "k3", "k3_is")}
    for drift in torch.linspace(0.05, 3.0, 40).tolist():
        theta = (ref_logits + drift * direction).requires_grad_(True)
        logp = theta.log_softmax(0)
        kl = (logp.exp() * (logp - ref_logp)).sum()
        (true,) = torch.autograd.grad(kl, theta)
        kls.append(float(kl.detach()))
        for name, series in errors.items():
            series.append(float((expected_gradient(name, theta.detach(), ref_logp) - true).norm() / true.norm()))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, series in errors.items():
        ax.plot(kls, series, label=name, linestyle="--" if name == "k3_is" else "-")
    ax.set_xlabel("KL(pi || pi_ref)")
    ax.set_ylabel("relative error of E[grad k]")
    ax.set_title("What the KL estimators' gradients follow (exact, 6 tokens)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"{'KL':>8} " + " ".join(f"{n:>8}" for n in errors))
    for i in range(0, len(kls), 8):
        print(f"{kls[i]:8.3f} " + " ".join(f"{errors[n][i]:8.3f}" for n in errors))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
