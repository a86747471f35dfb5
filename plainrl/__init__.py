"""plainrl: reinforcement learning written plainly."""

import gymnasium

__version__ = "0.1.0"

# plainrl's own environments; the entry point is a string, so the env's module loads only when one is made.
gymnasium.register("plainrl/GridWorld-v0", entry_point="plainrl.tabular.gridworld:GridWorld", max_episode_steps=100)
