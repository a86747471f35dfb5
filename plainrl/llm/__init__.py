"""The LLM track: policy models, the rollout engine, tasks and rewards, LoRA, and one file per trainer."""
