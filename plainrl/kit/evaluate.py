"""Deterministic evaluation of a policy on an env (eval.json, optional GIF of one episode), and `Agent`, what
`plainrl.load` gives for an env run: `agent.predict(obs)`."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from plainrl.kit.envs import encode_observation, make_env, mask_reader
from plainrl.kit.run import BEST_CHECKPOINT, read_checkpoint

MaskedPolicy = Callable[..., np.ndarray]  # (obs (B, ...), masks (B, n) | None = None) -> actions (B, ...)
EVAL_SEED_OFFSET = 10_000  # evaluation episodes never reuse the training envs' seeds
UNTIMED_EPISODE_LIMIT = 10_000  # envs without a time limit (CliffWalking-v1): a policy that loops still ends


def agent_policy(agent: Any, device: torch.device | str | None = None, deterministic: bool = True) -> MaskedPolicy:
    """numpy obs (B, *obs_shape) [, action masks (B, n)] -> numpy actions (B, ...), without gradients
    (deterministic by default). Masks reach agents that take them (PPO, A2C, DQN: act(..., mask=)); others, which
    trained without them, act as they learned to."""
    device = device or next(agent.parameters()).device
    takes_masks = "mask" in inspect.signature(agent.act).parameters

    def policy(obs: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        with torch.inference_mode():
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
            if masks is None or not takes_masks:
                return agent.act(obs_tensor, deterministic=deterministic).cpu().numpy()
            mask_tensor = torch.as_tensor(masks, device=device)
            return agent.act(obs_tensor, deterministic=deterministic, mask=mask_tensor).cpu().numpy()

    return policy


def evaluate_episodes(
    policy: MaskedPolicy,
    env_id: str,
    episodes: int,
    seed: int,
    video_path: str | Path | None = None,
    vectors: bool = False,
) -> dict[str, Any]:
    """Mean and std of the undiscounted return (the game's score where rewards are clipped: info["raw_reward"])
    over `episodes` episodes; optionally a GIF of the first. `vectors`: the env as a classic algorithm sees it
    (registry.reads_vectors). An env that says which actions it allows has the policy choose among them."""
    # Seeded spaces too, as the training envs: an env that draws from its own spaces evaluates the same each time.
    env = make_env(env_id, seed + EVAL_SEED_OFFSET, render_mode="rgb_array" if video_path else None, vectors=vectors)
    timed = env.spec is not None and env.spec.max_episode_steps is not None
    masks_method = env.get_wrapper_attr("action_masks") if env.has_wrapper_attr("action_masks") else None
    returns: list[float] = []
    frames: list[Any] = []
    obs, info = env.reset(seed=seed + EVAL_SEED_OFFSET)
    read_mask = mask_reader(info, masks_method)
    for episode in range(episodes):
        if episode > 0:
            obs, info = env.reset()
        total, done, steps = 0.0, False, 0
        while not done:
            if video_path and episode == 0:
                frames.append(env.render())
            batch = np.asarray(obs, dtype=np.float32)[None]
            action = (policy(batch) if read_mask is None else policy(batch, read_mask(info)[None]))[0]
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(info.get("raw_reward", reward))
            steps += 1
            done = terminated or truncated or (not timed and steps >= UNTIMED_EPISODE_LIMIT)
        returns.append(total)
    env.close()
    if video_path and frames:
        write_videos(Path(video_path), frames, env.metadata.get("render_fps", 30))
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
    }


def write_eval_json(run_dir: str | Path, result: dict[str, Any]) -> Path:
    path = Path(run_dir) / "eval.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def write_videos(gif_path: Path, frames: list[Any], fps: int) -> list[Path]:
    """The frames as a GIF, and beside it as an MP4 when imageio-ffmpeg is installed (pip install 'plainrl[video]':
    its wheel carries an ffmpeg binary). Returns the files written."""
    import importlib.util

    import imageio.v2 as imageio

    imageio.mimsave(str(gif_path), frames, duration=1000 / fps, loop=0)
    written = [gif_path]
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        mp4_path = gif_path.with_suffix(".mp4")
        imageio.mimsave(str(mp4_path), frames, fps=fps, macro_block_size=1)  # any frame size, no resizing
        written.append(mp4_path)
    return written


class PeriodicEvaluation:
    """A step hook (Run.step_hooks) for env runs with eval_every > 0: every eval_every env steps, eval_episodes
    deterministic episodes on a separate env (the same episodes each time), logged as eval_return and
    eval_return_std; the agent of the best one so far is kept in checkpoints/best.pt (`plainrl eval RUN --best`).
    A resumed run keeps the best of before it."""

    def __init__(self, run: Any, config: Any, vectors: bool) -> None:
        self.run, self.config, self.vectors = run, config, vectors
        every = config.eval_every
        self.next = (run.start_step // every + 1) * every
        best_file = run.dir / BEST_CHECKPOINT
        self.best = float(read_checkpoint(best_file)["eval_return"]) if best_file.is_file() else -math.inf

    def __call__(self, step: int, agent: Any) -> bool:
        if step < self.next:
            return False
        self.next = (step // self.config.eval_every + 1) * self.config.eval_every
        result = evaluate_episodes(agent_policy(agent), self.config.env, self.config.eval_episodes, self.config.seed,
                                   vectors=self.vectors)  # fmt: skip
        self.run.log_evaluation(step, {"eval_return": result["mean_return"], "eval_return_std": result["std_return"]})
        if result["mean_return"] > self.best:
            self.best = result["mean_return"]
            self.run.save_best(step, {"agent": agent.state_dict(), "eval_return": self.best})
        return False  # never stops training


class Agent:
    """A trained agent from a run folder: `predict` maps observations to actions, as Stable-Baselines3's does
    (without its second, recurrent-state return value)."""

    def __init__(
        self, module: Any, observation_space: gym.Space, config: Any, raw_space: gym.Space | None = None
    ) -> None:
        self.module, self.observation_space, self.config = module, observation_space, config
        self.raw_space = raw_space  # the env's own space, when the agent reads it encoded (envs.VectorObservations)

    def predict(self, obs: Any, deterministic: bool = True, action_masks: Any = None) -> np.ndarray:
        """One observation -> one action; a batch (B, *obs_shape) -> B actions. Observations as the env gives
        them (a Discrete state as its index, a Dict as a dict: they are encoded here). `action_masks`: the allowed
        actions, (n,) or (B, n) booleans, as for sb3-contrib's MaskablePPO (agents trained with masks)."""
        if self.raw_space is not None:
            obs = encode_observation(self.raw_space, obs)
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == len(self.observation_space.shape or ())
        masks = None if action_masks is None else np.asarray(action_masks, dtype=bool)
        if single and masks is not None:
            masks = masks[None]
        actions = agent_policy(self.module, deterministic=deterministic)(obs[None] if single else obs, masks)
        return actions[0] if single else actions
