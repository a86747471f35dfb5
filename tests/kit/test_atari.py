import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("cv2")  # AtariPreprocessing resizes with OpenCV

from plainrl.kit.atari import (  # noqa: E402
    ClipRewardToSign,
    EnvPoolAtari,
    FireReset,
    envpool_task,
    is_atari,
    make_atari,
    wrap_atari,
)
from plainrl.kit.envs import env_rewards  # noqa: E402
from plainrl.kit.errors import PlainRLError  # noqa: E402

SIDE = 168  # the fake screen: twice 84, so AtariPreprocessing's area resize averages 2x2 blocks


class FakeAle:
    """The part of the emulator's interface that AtariPreprocessing reads."""

    def __init__(self, env: "FakeAtari") -> None:
        self.env = env

    def getScreenGrayscale(self, out: np.ndarray) -> None:  # the ALE's name for it
        out[...] = self.env.screen()

    def lives(self) -> int:
        return 3


class FakeAtari(gym.Env):
    """A 168x168 grayscale game. After inner step n (0 at reset) the screen is black but for two 2x2 blocks:
    one of value 100 at rows 2n, 2n+1, columns 0-1 (so its row says which step drew it), and one at the bottom-right
    corner of value 200 on odd steps and 50 on even ones (so the max of two frames differs from the last and the
    mean). Every step gives reward `reward`; the episode ends after `episode_steps` steps."""

    _frameskip = 1  # AtariPreprocessing checks that the env does not skip frames itself

    def __init__(self, meanings: tuple[str, ...] = ("NOOP", "UP"), reward: float = 1.0, episode_steps: int = 10**6):
        self.meanings, self.reward, self.episode_steps = meanings, reward, episode_steps
        self.observation_space = gym.spaces.Box(0, 255, (SIDE, SIDE), np.uint8)
        self.action_space = gym.spaces.Discrete(len(meanings))
        self.ale = FakeAle(self)
        self.steps, self.actions, self.resets = 0, [], 0  # steps and actions since the last reset

    def get_action_meanings(self) -> list[str]:
        return list(self.meanings)

    def screen(self) -> np.ndarray:
        frame = np.zeros((SIDE, SIDE), np.uint8)
        frame[2 * self.steps : 2 * self.steps + 2, 0:2] = 100
        frame[-2:, -2:] = 200 if self.steps % 2 else 50
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.steps, self.actions, self.resets = 0, [], self.resets + 1
        return self.screen(), {}

    def step(self, action: Any):
        self.steps += 1
        self.actions.append(int(action))
        return self.screen(), self.reward, self.steps >= self.episode_steps, False, {}


def expected_observation(steps: int) -> np.ndarray:
    """What AtariPreprocessing makes of inner frames steps-1 and steps, by hand: their pixel-wise max (both moving
    blocks, and the corner's brighter value, 200), each 2x2 block of the 168x168 screen one pixel of the 84x84."""
    obs = np.zeros((84, 84), np.uint8)
    obs[steps - 1, 0] = obs[steps, 0] = 100
    obs[83, 83] = 200
    return obs


def test_is_atari():
    assert is_atari("ALE/Pong-v5") and is_atari("ALE/Breakout-v5") and is_atari("BreakoutNoFrameskip-v4")
    assert not is_atari("CartPole-v1") and not is_atari("plainrl/GridWorld-v0")


def test_make_atari_pong_observations_and_episode_limit():
    env = make_atari("ALE/Pong-v5")
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs in env.observation_space
    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0  # the court, not a black screen
    assert reward in (-1.0, 0.0, 1.0) and info["raw_reward"] == reward  # Pong's points are already +-1
    ale = env.unwrapped.ale  # the v5 protocol is kept: sticky actions and the 30-minute episode limit
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert ale.getInt("max_num_frames_per_episode") == 108_000 and ale.getInt("frame_skip") == 1


def test_make_atari_unknown_id():
    with pytest.raises(PlainRLError, match="unknown Atari env id 'ALE/Pongg-v5'.*ALE/Pong-v5"):
        make_atari("ALE/Pongg-v5")


def test_one_step_is_four_frames_max_pooled_over_the_last_two_and_resized():
    fake = FakeAtari(reward=2.0)
    env = wrap_atari(fake)
    obs, _ = env.reset(seed=0)
    noops = fake.steps
    assert 1 <= noops <= 30 and fake.actions == [0] * noops  # the random no-ops, each one frame
    for _ in range(3):
        before = fake.steps
        obs, reward, _, _, info = env.step(1)
        assert fake.steps == before + 4 and fake.actions[-4:] == [1] * 4  # the action repeated for 4 frames
        assert info["raw_reward"] == 8.0 and reward == 1.0  # 4 frames' rewards summed, then clipped
        np.testing.assert_array_equal(obs[-1], expected_observation(fake.steps))


def test_reset_observation_is_the_reset_frame_resized():
    fake = FakeAtari()
    obs, _ = wrap_atari(fake).reset(seed=1)
    expected = np.zeros((84, 84), np.uint8)  # one frame, nothing to pool with (AtariPreprocessing zeroes the other)
    expected[fake.steps, 0] = 100
    expected[83, 83] = 200 if fake.steps % 2 else 50
    np.testing.assert_array_equal(obs[-1], expected)


class RewardSequence(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    rewards = (4.0, -2.0, 0.0, 0.5, -0.25)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any):
        self.t += 1
        return np.zeros(1, np.float32), self.rewards[self.t - 1], self.t == len(self.rewards), False, {}


def test_clip_reward_to_sign_keeps_the_raw_reward():
    env = ClipRewardToSign(RewardSequence())
    env.reset()
    steps = [env.step(0) for _ in RewardSequence.rewards]
    assert [step[1] for step in steps] == [1.0, -1.0, 0.0, 1.0, -1.0]
    assert [step[4]["raw_reward"] for step in steps] == [4.0, -2.0, 0.0, 0.5, -0.25]


def test_raw_rewards_from_a_same_step_vector_env_include_the_last_step_of_an_episode():
    envs = gym.vector.SyncVectorEnv(
        [lambda: ClipRewardToSign(RewardSequence())] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    envs.reset(seed=0)
    raws = []
    for _ in RewardSequence.rewards:
        _, rewards, terminated, _, infos = envs.step(np.zeros(2, np.int64))
        raws.append(env_rewards(rewards, infos))
    assert terminated.all() and "raw_reward" not in infos  # the last step's infos are the resets' ...
    np.testing.assert_array_equal(np.stack(raws)[:, 0], RewardSequence.rewards)  # ... yet its -0.25 is recovered
    np.testing.assert_array_equal(env_rewards(np.array([1.0, -1.0]), {}), [1.0, -1.0])  # no raw rewards: as given


def test_fire_reset_presses_fire_only_in_games_that_have_it():
    with_fire = FakeAtari(meanings=("NOOP", "FIRE", "RIGHT", "LEFT"))
    obs, _ = FireReset(with_fire).reset()
    assert with_fire.actions == [1] and with_fire.steps == 1
    np.testing.assert_array_equal(obs, with_fire.screen())  # the observation after the press
    without_fire = FakeAtari(meanings=("NOOP", "UP", "DOWN"))
    FireReset(without_fire).reset()
    assert without_fire.actions == []


def test_fire_reset_starts_over_when_the_press_ends_the_game():
    fake = FakeAtari(meanings=("NOOP", "FIRE"), episode_steps=1)
    FireReset(fake).reset()
    assert fake.resets == 2 and fake.actions == []


def test_fire_in_the_full_pipeline_is_held_for_one_agent_step():
    fake = FakeAtari(meanings=("NOOP", "FIRE"))
    wrap_atari(fake).reset(seed=0)
    assert fake.actions[-4:] == [1] * 4 and set(fake.actions[:-4]) == {0}


def test_frame_stack_repeats_the_reset_frame_and_puts_the_newest_last():
    fake = FakeAtari()
    env = wrap_atari(fake)
    reset_obs, _ = env.reset(seed=2)
    assert all(np.array_equal(frame, reset_obs[0]) for frame in reset_obs)
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs[:3], reset_obs[1:])
    np.testing.assert_array_equal(obs[3], expected_observation(fake.steps))
    next_obs, *_ = env.step(0)
    np.testing.assert_array_equal(next_obs[:3], obs[1:])  # the older frames shift one towards the front
    np.testing.assert_array_equal(next_obs[3], expected_observation(fake.steps))
    assert not np.array_equal(next_obs[3], next_obs[2])


def test_make_atari_without_ale_py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` now raises ImportError
    with pytest.raises(PlainRLError, match=r"env 'ALE/Pong-v5' needs the Atari extra: pip install 'plainrl\[atari\]'"):
        make_atari("ALE/Pong-v5")
    assert is_atari("ALE/Pong-v5")


@pytest.fixture
def short_envpool_episodes(monkeypatch):
    """EnvPool's Pong truncated after 40 agent steps, so tests see episode ends quickly."""
    pytest.importorskip("envpool")
    from plainrl.kit import atari

    monkeypatch.setitem(atari.ENVPOOL_ATARI, "max_episode_steps", 40)


def test_envpool_task_names():
    assert envpool_task("ALE/Pong-v5") == ("Pong-v5", 0.25)  # v5: sticky actions
    assert envpool_task("BreakoutNoFrameskip-v4") == ("Breakout-v5", 0.0)
    with pytest.raises(PlainRLError, match="'CartPole-v1' is not an Atari id EnvPool has"):
        envpool_task("CartPole-v1")


def test_envpool_atari_has_make_atari_spaces_and_clipped_rewards_with_raw_ones():
    pytest.importorskip("envpool")
    envs = EnvPoolAtari("ALE/Pong-v5", num_envs=2, seed=0)
    assert envs.single_observation_space == make_atari("ALE/Pong-v5").observation_space  # uint8 (4, 84, 84)
    assert envs.single_action_space == gym.spaces.Discrete(6) and envs.num_envs == 2
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0
    rng = np.random.default_rng(0)
    raw_rewards = []
    for _ in range(200):
        obs, rewards, terminated, truncated, infos = envs.step(rng.integers(0, 6, 2))
        np.testing.assert_array_equal(rewards, np.sign(infos["raw_reward"]))
        raw_rewards.append(env_rewards(rewards, infos))
        assert not (terminated | truncated).any() and "final_obs" not in infos
    assert np.array(raw_rewards).min() == -1.0  # a random player lets a point in within 200 steps


def test_envpool_atari_resets_an_ended_game_in_the_same_step(short_envpool_episodes):
    """SAME_STEP autoreset, as make_vec_env's: at the 40th step the returned observation is the new episode's and
    the last one is in infos["final_obs"]; the next episode then lasts 40 steps again, not 41 (which it would if
    EnvPool reset it itself on the following step, ignoring that step's action)."""
    envs = EnvPoolAtari("ALE/Pong-v5", num_envs=2, seed=3)
    obs, _ = envs.reset()
    ends = []
    for step in range(1, 81):
        previous = obs
        obs, _, terminated, truncated, infos = envs.step(np.zeros(2, dtype=np.int64))
        if (terminated | truncated).any():
            ends.append(step)
            assert truncated.all() and infos["_final_obs"].all()
            # the final stack continues the previous one (shifted by a frame); the reset one starts over
            np.testing.assert_array_equal(infos["final_obs"][:, :3], previous[:, 1:])
            assert not np.array_equal(obs[:, :3], previous[:, 1:])
            np.testing.assert_array_equal(obs[:, 0], obs[:, 3])  # a reset stack repeats the reset frame
    assert ends == [40, 80]


def test_envpool_atari_same_seed_same_games_and_reseeding(short_envpool_episodes):
    def first_observations(seed_at_reset: int | None) -> np.ndarray:
        envs = EnvPoolAtari("ALE/Pong-v5", num_envs=2, seed=0)
        envs.reset(seed=seed_at_reset)
        actions = np.ones(2, dtype=np.int64)
        return np.stack([envs.step(actions)[0] for _ in range(30)])

    same = first_observations(None)
    np.testing.assert_array_equal(same, first_observations(0))
    assert not np.array_equal(same, first_observations(7))  # reset(seed=...) makes the pool again with that seed
