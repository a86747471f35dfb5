"""plainrl: reinforcement learning written plainly.

    import plainrl
    run = plainrl.train("ppo", env="CartPole-v1", total_steps=50_000)
    agent = plainrl.load(run.path); agent.predict(obs)
    plainrl.evaluate(run.path, episodes=20); plainrl.resume(run.path)
    plainrl.export(llm_run.path, "hf_folder")       # Hugging Face format (a LoRA run: a PEFT adapter)

See plainrl/api.py and docs/api.md.
"""

import gymnasium

__version__ = "0.1.0"

# plainrl's own environments; the entry point is a string, so the env's module loads only when one is made.
gymnasium.register("plainrl/GridWorld-v0", entry_point="plainrl.tabular.gridworld:GridWorld", max_episode_steps=100)

from plainrl.api import RunFolder, evaluate, export, load, resume, train  # noqa: E402  (after the env registration)

__all__ = ["RunFolder", "evaluate", "export", "load", "resume", "train", "__version__"]
