"""Classic algorithms on the observation and action spaces beyond vectors (issue #21): images, Dicts, MultiDiscrete
and MultiBinary actions, action masks, and Atari. Each learning test trains from a fixed seed on a task a random
policy scores far below the threshold on."""

import numpy as np
import pytest

import plainrl
from plainrl.kit.nets import NatureCNN
from plainrl.kit.run import CHECKPOINT, read_checkpoint
from tests.helpers import MaskedChoiceEnv

pytestmark = pytest.mark.slow

FAST = ["eval_episodes=10", "checkpoint_every=100000"]


@pytest.mark.parametrize(
    "algo, env, settings",
    [
        ("ppo", "tests.helpers:MaskedChoiceEnv", []),
        ("a2c", "tests.helpers:MaskedChoiceEnv", []),
        ("dqn", "tests.helpers:MaskedChoiceEnv", ["learning_starts=500", "exploration_fraction=0.3"]),
        ("ppo", "tests.helpers:MaskedChoiceMethodEnv", []),  # the mask from env.action_masks()
        # ... called in subprocesses: their counts stay there, so here only evaluation's count and the return check
        ("ppo", "tests.helpers:MaskedChoiceMethodEnv", ["async_envs=true"]),
    ],
)
def test_masked_actions_are_never_taken_in_training_nor_in_evaluation(algo, env, settings, tmp_path):
    # The forbidden action ends the episode with -10. A policy blind to the masks takes it about a quarter of the
    # time (measured: ~930 times in PPO's 4000 steps, ~200 in A2C's); a random allowed action earns 8/3 per episode.
    MaskedChoiceEnv.forbidden_taken = 0
    run = plainrl.train(algo, env=env, total_steps=4000, seed=0, run_dir=tmp_path / "run", progress=False,
                        set_items=FAST + settings)  # fmt: skip
    assert MaskedChoiceEnv.forbidden_taken == 0
    assert run.eval["mean_return"] >= 7.5  # learned the paying action among the allowed ones (best: 8)
    agent = plainrl.load(run.path)
    obs = np.eye(4, dtype=np.float32)
    allowed = ~np.eye(4, dtype=bool)
    assert (agent.predict(obs, action_masks=allowed) == np.arange(1, 5) % 4).all()
    favourite = agent.predict(obs[1])
    assert agent.predict(obs[1], action_masks=np.arange(4) != favourite) != favourite


def test_dict_observations_train(tmp_path):
    run = plainrl.train("ppo", env="tests.helpers:DictCueEnv", total_steps=4000, seed=0, run_dir=tmp_path / "run",
                        progress=False, set_items=FAST)  # fmt: skip
    assert run.eval["mean_return"] >= 9.5  # a random policy: 5 of 10
    agent = plainrl.load(run.path)
    actions = [int(agent.predict({"cue": cue, "noise": np.zeros(2, np.float32)})) for cue in (0, 1)]
    assert actions == [0, 1]  # observations as the env gives them: a dict


# A2C's default RMSprop (PyTorch's) at 7e-4 collapsed this policy's entropy to 0 (eval 5.7, 5.2, 4.9 on seeds 0-2;
# Adam or 1e-4: 10). TensorFlow's RMSprop, the Atari preset's (kit/optim.py), learns at 7e-4: 10, 10, 4.9.
@pytest.mark.parametrize("algo, settings", [("ppo", []), ("a2c", ["learning_rate=1e-4"]),
                                            ("a2c", ["optimizer=rmsprop_tf"]),
                                            ("dqn", ["learning_starts=200", "exploration_fraction=0.3"])])  # fmt: skip
def test_image_observations_train_through_a_shared_nature_cnn(algo, settings, tmp_path):
    run = plainrl.train(algo, env="tests.helpers:ImageCueEnv", total_steps=2000, seed=0, run_dir=tmp_path / "run",
                        progress=False, set_items=[*FAST, "hidden_sizes=[]", *settings])  # fmt: skip
    assert isinstance(run.load().module.encoder, NatureCNN)
    assert run.eval["mean_return"] >= 9.5  # a random policy: 5 of 10
    lit_right = np.zeros((36, 36, 1), np.uint8)
    lit_right[:, 18:] = 255
    assert int(plainrl.load(run.path).predict(lit_right)) == 1


@pytest.mark.parametrize("env", ["tests.helpers:MultiActionCueEnv", "tests.helpers:make_multi_binary_cue_env"])
def test_multi_discrete_and_multi_binary_actions_train(env, tmp_path):
    run = plainrl.train("ppo", env=env, total_steps=4000, seed=0, run_dir=tmp_path / "run", progress=False,
                        set_items=FAST)  # fmt: skip
    assert run.eval["mean_return"] >= 9.5  # random: 4.2 (MultiDiscrete [3, 2]), 5 (MultiBinary 3)


def test_ppo_and_dqn_run_on_atari_with_the_preset_shapes(tmp_path):
    pytest.importorskip("ale_py")
    ppo = plainrl.train("ppo", env="ALE/Pong-v5", total_steps=64, seed=0, run_dir=tmp_path / "ppo", progress=False,
                        set_items=["num_envs=2", "num_steps=32", "num_minibatches=2", "update_epochs=1",
                                   "eval_episodes=1"])  # fmt: skip
    agent = ppo.load().module
    assert isinstance(agent.encoder, NatureCNN) and agent.actor[0].in_features == 512  # the preset's shape
    assert ppo.config["clip_coef"] == 0.1 and ppo.config["hidden_sizes"] == []
    # The game's score from the unclipped rewards: an untrained agent loses nearly every point (0 if none were read).
    assert -21 <= ppo.eval["mean_return"] <= -15
    settings = ["learning_starts=100", "buffer_size=300", "batch_size=8", "eval_episodes=1"]
    dqn = plainrl.train("dqn", env="ALE/Pong-v5", total_steps=200, seed=0, run_dir=tmp_path / "dqn", progress=False,
                        set_items=settings)  # fmt: skip
    assert isinstance(dqn.load().module.encoder, NatureCNN)
    replay = read_checkpoint(dqn.path / CHECKPOINT)["replay"]
    assert replay["obs"].dtype == np.uint8 and replay["obs"].shape[1:] == (4, 84, 84)  # frames kept as bytes


def test_ppo_steps_atari_through_envpool(tmp_path, monkeypatch):
    pytest.importorskip("envpool")
    from plainrl.kit import atari

    made = []
    make_pool = atari.EnvPoolAtari._make_pool
    monkeypatch.setattr(atari.EnvPoolAtari, "_make_pool", lambda self, seed: made.append(seed) or make_pool(self, seed))
    run = plainrl.train("ppo", env="ALE/Pong-v5", total_steps=64, seed=5, run_dir=tmp_path / "ppo", progress=False,
                        set_items=["envpool=true", "num_envs=2", "num_steps=32", "num_minibatches=2",
                                   "update_epochs=1", "eval_episodes=1"])  # fmt: skip
    assert made == [5]  # trained on EnvPool's games, seeded with the run's seed (evaluation plays ale-py's)
    assert run.config["envpool"] is True and -21 <= run.eval["mean_return"] <= -15  # the untrained agent loses
