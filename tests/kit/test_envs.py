import numpy as np
import pytest

from plainrl.kit.envs import EpisodeStats, make_env, make_vec_env, true_next_obs
from plainrl.kit.errors import PlainRLError


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
