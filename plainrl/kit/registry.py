"""The one registry: every algorithm and trainer name, of every track, and the module that holds it. Modules are
imported by name only when used, so the kit (and the CLI) never import an algorithm's internals up front.

Every module provides `Config` (a dataclass), `PRESETS` ({env id or task: {field: value}}) and `train(config, run)`,
which seeds, builds, restores a resumed run's state, trains and returns what it trained.

Any module may provide, to train data-parallel under torchrun (kit/distributed.py; without it: refused there)
    SHARDED_BATCH       the config field holding the global batch that each of N ranks takes 1 / N of
    check_world(config, world)   further checks of a config against the number of processes

Env-track modules (Config subclasses kit.config.EnvConfig: classic and tabular) also provide
    ACTION_SPACES   the gymnasium space class names it handles, e.g. ("Discrete", "Box")
    build_agent(config, observation_space, action_space) -> an nn.Module with act(obs, deterministic)
and may provide
    OBSERVATION_SPACES  the observation space class names it handles (tabular methods: ("Discrete",)); one that
                        reads "Box" also gets Discrete, MultiDiscrete and MultiBinary ones, one-hot (reads_vectors),
                        and Dicts of them, flattened; "Image": uint8 images and Dicts holding one (a CNN encoder)
    MASKS_ACTIONS       True if it takes the envs' action masks (info["action_mask"] or env.action_masks())
    check_env(env)      raise PlainRLError if the env lacks something the algorithm needs (a model, ...)
    draw_pictures(run_dir) -> [paths]   pictures beyond curve.png that `plainrl plot` refreshes

Task-track modules (Config subclasses llm.config.TaskConfig: the LLM trainers) may provide
    check(config)       checks that need the model or tokenizer, before the run folder exists
    build_policy(config, device) -> (model, tokenizer)   the policy a run folder holds (default: config.model's)
    load_trained(run_dir, device)   what `plainrl.load` gives (default: llm.policies.Policy)
    final_evaluation(config, trained, run_dir, step) -> dict   eval.json (default: held-out accuracy)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import gymnasium as gym

from plainrl.kit.config import RunConfig
from plainrl.kit.envs import ENCODED_SPACES
from plainrl.kit.errors import PlainRLError, did_you_mean
from plainrl.kit.run import read_run_config, saved_config
from plainrl.kit.spaces import observation_kind

ALGORITHMS: dict[str, str] = {
    "ppo": "plainrl.classic.ppo",
    "a2c": "plainrl.classic.a2c",
    "dqn": "plainrl.classic.dqn",
    "reinforce": "plainrl.classic.reinforce",
    "sarsa": "plainrl.classic.sarsa",
    "ddpg": "plainrl.classic.ddpg",
    "td3": "plainrl.classic.td3",
    "sac": "plainrl.classic.sac",
    "trpo": "plainrl.classic.trpo",
    "qac": "plainrl.classic.qac",
    # tabular (plainrl/tabular/): dynamic programming, Monte Carlo, temporal difference
    "value_iteration": "plainrl.tabular.value_iteration",
    "policy_iteration": "plainrl.tabular.policy_iteration",
    "truncated_policy_iteration": "plainrl.tabular.truncated_policy_iteration",
    "mc_basic": "plainrl.tabular.mc_basic",
    "mc_exploring_starts": "plainrl.tabular.mc_exploring_starts",
    "mc_epsilon_greedy": "plainrl.tabular.mc_epsilon_greedy",
    "tabular_sarsa": "plainrl.tabular.sarsa",
    "expected_sarsa": "plainrl.tabular.expected_sarsa",
    "n_step_sarsa": "plainrl.tabular.n_step_sarsa",
    "q_learning": "plainrl.tabular.q_learning",
    # language models (plainrl/llm/)
    "sft": "plainrl.llm.sft",
    "grpo": "plainrl.llm.grpo",
    "reward-model": "plainrl.llm.reward_model",
    "ppo-llm": "plainrl.llm.ppo",
    "dpo": "plainrl.llm.dpo",
    "distill": "plainrl.llm.distill",
}
ALIASES = {"distill-draft": "distill", "reward_model": "reward-model", "ppo_llm": "ppo-llm"}


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in ALGORITHMS:
        raise PlainRLError(f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)}; see `plainrl list`")
    return name


def load_algorithm(name: str) -> ModuleType:
    return importlib.import_module(ALGORITHMS[canonical_name(name)])


def load_run(run_dir: str | Path) -> tuple[str, ModuleType, RunConfig]:
    """(algorithm name, its module, the validated config) of a saved run folder."""
    name = read_run_config(run_dir)["algo"]
    module = load_algorithm(name)
    return name, module, saved_config(run_dir, module.Config)


def reads_vectors(module: ModuleType) -> bool:
    """Does the algorithm read observations as vectors (the classic ones), so that Discrete, MultiDiscrete and
    MultiBinary observations reach it one-hot encoded (kit/envs.py)? Tabular methods read Discrete states."""
    return "Box" in (getattr(module, "OBSERVATION_SPACES", None) or ("Box",))


def check_spaces(name: str, module: ModuleType, env: gym.Env) -> None:
    """The env's action and observation spaces are kinds the algorithm handles, or one clear error. `env` is made
    as the algorithm sees it (make_env(..., vectors=reads_vectors(module)))."""
    observations = getattr(module, "OBSERVATION_SPACES", None)  # None: any
    if observations is not None and reads_vectors(module):
        observations = (*observations, *(f"{kind} (one-hot)" for kind in ENCODED_SPACES))
    action_kind, obs_kind = type(env.action_space).__name__, observation_kind(env.observation_space)
    for kind, space_kind, allowed in [("action", action_kind, module.ACTION_SPACES),
                                      ("observation", obs_kind, observations)]:  # fmt: skip
        if allowed is not None and space_kind not in allowed:
            raise PlainRLError(
                f"{name} cannot handle the {space_kind} {kind} space of "
                f"{env.spec.id if env.spec else 'this env'} (it handles: {', '.join(allowed)})"
            )
