"""plainrl: reinforcement learning written plainly."""

__version__ = "0.1.0"
