"""SFT of the built-in model with grouped-query and with latent attention, the same budget (issue #20): held-out
accuracy at the end and the KV cache per token of each.

    python benchmarks/mla_vs_gqa.py [--steps 1500] [--task arithmetic]      one after the other, same seed
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import plainrl
    from plainrl.llm.policies import load_policy

    stamp = int(time.time())
    for attention in ("gqa", "mla"):
        started = time.perf_counter()
        run = plainrl.train("sft", task=args.task, model="tiny", total_steps=args.steps, seed=args.seed,
                            tiny_attention=attention, run_dir=f"runs/sft_{attention}_{stamp}", progress=False,
                            set_items=["eval_every=0"])  # fmt: skip
        model, _ = load_policy(str(run.path))
        parameters = sum(p.numel() for p in model.parameters())
        cache = model.new_cache(1, 1).bytes_per_token()
        print(f"{attention}: held-out accuracy {run.eval['accuracy']:.3f} on {run.eval['n']}, {parameters} parameters, "
              f"KV cache {cache} B per token (fp32), {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
