import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from plainrl.kit.envs import EpisodeStats, make_env, make_vec_env, true_next_obs
from plainrl.kit.errors import PlainRLError


class BadValueEnv(gym.Env):
    """obs = [steps this episode, 1, 1, ...] and reward 1, except at step `bad_step` (0: the reset) of episode
    `bad_episode` (0: the first), where `what` ("reward", or "obs": its second element) is `value`. Episodes
    last 10 steps."""

    bad_step, bad_episode, what, value, size = 3, 0, "reward", float("nan"), 2

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.episode = 0, -1

    def _bad(self) -> bool:
        return self.t == self.bad_step and self.episode == self.bad_episode

    def _obs(self) -> np.ndarray:
        obs = np.ones(self.size, dtype=np.float32)
        obs[0] = self.t
        if self.what == "obs" and self._bad():
            obs[1] = self.value
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._obs(), {}

    def step(self, action: Any):
        self.t += 1
        reward = self.value if self.what == "reward" and self._bad() else 1.0
        return self._obs(), reward, False, self.t >= 10, {}


class NaNRewardEnv(BadValueEnv):
    pass


class LateNaNRewardEnv(BadValueEnv):
    bad_episode = 1


class InfRewardEnv(BadValueEnv):
    value = float("-inf")


class InfObsEnv(BadValueEnv):
    what, value = "obs", float("inf")


class NaNObsEnv(BadValueEnv):
    what, value, size = "obs", float("nan"), 40  # more than 16 numbers: the numpy check


class InfResetObsEnv(BadValueEnv):
    what, value, bad_step = "obs", float("inf"), 0


class HugeObsEnv(BadValueEnv):
    """Finite observations so large that their squares (and, in float32, their sums) overflow."""

    what, value, size = "obs", 3e38, 40
    bad_step = 1


BAD_ENVS = [  # env class, the words of the error
    (NaNRewardEnv, "returned a NaN reward at its step 3 (episode step 3)"),
    (InfRewardEnv, "returned an inf reward at its step 3 (episode step 3)"),
    (InfObsEnv, "returned an inf observation (obs[1] = inf) at its step 3 (episode step 3)"),
    (NaNObsEnv, "returned a NaN observation (obs[1] = nan) at its step 3 (episode step 3)"),
    (InfResetObsEnv, "returned an inf observation (obs[1] = inf) from reset (after its step 0)"),
]


@pytest.mark.parametrize("terminate", [True, False])
def test_vector_env_yields_no_fake_transition_at_episode_ends(terminate):
    """Gymnasium's default NEXT_STEP autoreset would return one step whose obs is the final state and whose
    next obs is a reset: a transition that never happened. With SAME_STEP every step is real."""
    envs = make_vec_env(
        "tests.helpers:CountingEnv" if terminate else "tests.helpers:make_counting_env", num_envs=2, seed=0
    )
    length = 3 if terminate else 4
    obs, _ = envs.reset(seed=0)
    stats = EpisodeStats(2)
    for _ in range(11):
        next_obs, rewards, terminated, truncated, infos = envs.step(np.zeros(2, dtype=np.int64))
        real_next = true_next_obs(next_obs, infos)
        ends = terminated | truncated
        stats.update(rewards, ends)
        # Every transition moves the counter by exactly one: none starts from a final state.
        assert np.all(real_next[:, 0] == obs[:, 0] + 1)
        assert np.all(obs[:, 0] < length)
        assert np.all(ends == (real_next[:, 0] == length))
        assert np.all(terminated == (ends & terminate)) and np.all(truncated == (ends & (not terminate)))
        assert np.all(next_obs[ends, 0] == 0)  # the env already reset for the next step
        obs = next_obs
    finished = stats.pop()
    assert finished["episode_return"] == length and finished["episode_length"] == length
    assert finished["episodes"] == 2 * (11 // length)


def test_user_env_by_module_and_class_and_factory():
    assert make_env("tests.helpers:CountingEnv").action_space.n == 2
    assert make_env("tests.helpers:make_counting_env").unwrapped.length == 4


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(PlainRLError, match=r"unknown env id 'CartPole-v2'.*CartPole-v1"):
        make_env("CartPole-v2")
    with pytest.raises(PlainRLError, match="cannot import module"):
        make_env("no_such_module_xyz:Env")
    with pytest.raises(PlainRLError, match="has no attribute"):
        make_env("tests.helpers:NoSuchEnv")


def test_float64_observations_arrive_as_float32():
    envs = make_vec_env("tests.helpers:Float64Env", num_envs=2, seed=0)
    obs, _ = envs.reset(seed=0)
    assert envs.single_observation_space.dtype == np.float32 and obs.dtype == np.float32
    assert envs.step(np.zeros((2, 1), dtype=np.float32))[0].dtype == np.float32
    assert make_env("tests.helpers:Float64Env").reset(seed=0)[0].dtype == np.float32


def test_continuous_actions_are_clipped_to_bounds():
    env = make_env("Pendulum-v1", seed=0)
    env.reset(seed=0)
    # A huge torque is clipped to max_torque = 2: the reward penalty is then at most 0.001 * 2^2 + ...
    _, reward, *_ = env.step(np.array([1e6], dtype=np.float32))
    assert reward > -20


def _env_id(cls: type) -> str:
    return f"tests.kit.test_envs:{cls.__name__}"


@pytest.mark.parametrize(("cls", "words"), BAD_ENVS, ids=[cls.__name__ for cls, _ in BAD_ENVS])
def test_a_non_finite_reward_or_observation_is_reported_by_make_env(cls, words):
    env = make_env(_env_id(cls))
    with pytest.raises(PlainRLError, match=re.escape(words)) as caught:
        env.reset(seed=0)
        for _ in range(5):
            env.step(0)
    assert str(caught.value).startswith(f"env '{_env_id(cls)}' returned")
    assert str(caught.value).endswith("plainrl needs finite rewards and observations")


@pytest.mark.parametrize(("cls", "words"), BAD_ENVS, ids=[cls.__name__ for cls, _ in BAD_ENVS])
def test_a_non_finite_reward_or_observation_is_reported_by_make_vec_env(cls, words):
    with pytest.raises(PlainRLError, match=re.escape(words)):  # make_vec_env resets: InfResetObsEnv fails right there
        envs = make_vec_env(_env_id(cls), num_envs=2, seed=0)
        for _ in range(5):
            envs.step(np.zeros(2, dtype=np.int64))


def test_the_step_count_runs_on_across_episodes():
    env = make_env(_env_id(LateNaNRewardEnv), seed=0)
    for _ in range(10):  # the first episode, then two steps of the second: its third step brings the NaN
        env.step(0)
    env.reset()
    env.step(0), env.step(0)
    with pytest.raises(PlainRLError, match=re.escape("NaN reward at its step 13 (episode step 3)")):
        env.step(0)


def test_vector_sub_envs_count_their_steps_across_autoresets():
    envs = make_vec_env(_env_id(LateNaNRewardEnv), num_envs=2, seed=0)
    for _ in range(12):  # SAME_STEP autoreset: step 10 ends the first episode and resets
        envs.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(PlainRLError, match=re.escape("NaN reward at its step 13 (episode step 3)")):
        envs.step(np.zeros(2, dtype=np.int64))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the worker's own report of the error
def test_a_non_finite_value_in_an_async_sub_env_is_reported():
    with pytest.raises(PlainRLError, match="returned a NaN reward at its step 3"):
        envs = make_vec_env(_env_id(NaNRewardEnv), num_envs=2, seed=0, asynchronous=True)
        try:
            for _ in range(5):
                envs.step(np.zeros(2, dtype=np.int64))
        finally:
            envs.close()


def test_finite_envs_pass_unchanged():
    """The check changes nothing: same observations and rewards as the bare env, and huge finite values pass."""
    env, bare = make_env("CartPole-v1"), gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    bare_obs, _ = bare.reset(seed=0)
    actions = np.random.default_rng(0).integers(2, size=300)
    for action in actions:
        assert np.array_equal(obs, bare_obs)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        bare_obs, bare_reward, *_ = bare.step(int(action))
        assert reward == bare_reward
        if terminated or truncated:
            obs, _ = env.reset()
            bare_obs, _ = bare.reset()
    huge = make_env(_env_id(HugeObsEnv))
    huge.reset(seed=0)
    assert huge.step(0)[0][1] == np.float32(3e38)
    envs = make_vec_env(_env_id(HugeObsEnv), num_envs=2, seed=0)
    assert np.all(envs.step(np.zeros(2, dtype=np.int64))[0][:, 1] == np.float32(3e38))


def test_discrete_observations_are_not_checked():
    env = make_env("FrozenLake-v1", seed=0)
    assert env.reset(seed=0)[0] == 0 and env.step(1)[0] in range(16)


def test_the_same_seed_repeats_an_env_that_samples_its_own_spaces():
    import numpy as np

    from plainrl.kit.envs import make_env, make_vec_env

    def rewards(seed: int) -> list[float]:
        envs = make_vec_env("tests.helpers:SelfSamplingEnv", num_envs=3, seed=seed)
        out = [envs.step(np.zeros(3, dtype=np.int64))[1].tolist() for _ in range(10)]
        envs.close()
        return out

    first = rewards(3)
    assert first == rewards(3)
    assert first != rewards(4)
    assert len({tuple(step) for step in zip(*first, strict=True)}) == 3  # each copy its own stream (seed + index)
    one = [make_env("tests.helpers:SelfSamplingEnv", seed=5).step(0)[1] for _ in range(2)]
    assert one[0] == one[1]


def test_discrete_multidiscrete_and_multibinary_observations_are_encoded_as_vectors():
    import gymnasium as gym
    import numpy as np

    from plainrl.kit.envs import encode_observation

    discrete = gym.spaces.Discrete(4, start=1)
    assert encode_observation(discrete, 3).tolist() == [0, 0, 1, 0]
    assert encode_observation(discrete, np.array([1, 4])).tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]  # a batch
    multi = gym.spaces.MultiDiscrete([3, 2])
    assert encode_observation(multi, np.array([2, 0])).tolist() == [0, 0, 1, 1, 0]
    assert encode_observation(multi, np.array([[0, 1], [1, 1]])).tolist() == [[1, 0, 0, 0, 1], [0, 1, 0, 0, 1]]
    binary = gym.spaces.MultiBinary(3)
    assert encode_observation(binary, np.array([1, 0, 1])).tolist() == [1.0, 0.0, 1.0]


def test_classic_algorithms_learn_from_a_discrete_observation_and_agents_take_its_index(tmp_path):
    import numpy as np

    import plainrl

    run = plainrl.train("ppo", env="tests.helpers:DiscreteChainEnv", total_steps=4096, seed=0, progress=False,
                        run_dir=tmp_path / "ppo")  # fmt: skip
    assert run.eval["mean_return"] >= 0.9  # walks right: the best return is 0.96
    agent = plainrl.load(run.path)
    assert [int(agent.predict(state)) for state in range(4)] == [1, 1, 1, 1]  # the state's index, encoded inside
    assert agent.predict(np.array([0, 1, 2])).tolist() == [1, 1, 1]  # a batch of indices


def test_tabular_methods_still_read_discrete_states(tmp_path):
    import plainrl

    run = plainrl.train("q_learning", env="tests.helpers:DiscreteChainEnv", total_steps=2000, seed=0, progress=False,
                        run_dir=tmp_path / "q")  # fmt: skip
    assert run.eval["mean_return"] >= 0.9
