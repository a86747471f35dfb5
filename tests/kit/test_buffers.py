import numpy as np
import pytest
import torch

from plainrl.kit.buffers import NStepTransitions, ReplayBuffer, compute_gae, discounted_returns, next_state_values


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_matches_hand_computation_within_one_episode():
    # One env, three steps, no episode end; gamma = 0.9, lambda = 0.8.
    rewards, values = t([[1.0], [2.0], [3.0]]), t([[0.5], [1.0], [1.5]])
    next_values = t([[1.0], [1.5], [2.0]])  # V(s1), V(s2), V(s3)
    zeros = torch.zeros(3, 1)
    adv, ret = compute_gae(rewards, values, next_values, zeros, zeros, gamma=0.9, gae_lambda=0.8)
    d2 = 3 + 0.9 * 2.0 - 1.5  # 3.3
    d1 = 2 + 0.9 * 1.5 - 1.0  # 2.35
    d0 = 1 + 0.9 * 1.0 - 0.5  # 1.4
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 1.5], abs=1e-6)


def test_gae_truncation_bootstraps_and_termination_does_not():
    # Step 0 ends an episode; the next state's value V(final obs) = 10.
    rewards, values = t([[1.0], [1.0]]), t([[2.0], [3.0]])
    next_values = t([[10.0], [4.0]])
    ends = t([[1.0], [0.0]])
    gamma, lam = 0.5, 0.9
    truncated_adv, _ = compute_gae(rewards, values, next_values, torch.zeros(2, 1), ends, gamma, lam)
    terminated_adv, _ = compute_gae(rewards, values, next_values, ends, ends, gamma, lam)
    # Truncated: bootstrap from the final observation's value.
    assert truncated_adv[0, 0].item() == pytest.approx(1 + 0.5 * 10 - 2)
    # Terminated: the final state is worth nothing.
    assert terminated_adv[0, 0].item() == pytest.approx(1 - 2)
    # Either way the recursion does not reach across the boundary into step 1.
    assert truncated_adv[1, 0].item() == pytest.approx(1 + 0.5 * 4 - 3)
    assert terminated_adv[1, 0].item() == pytest.approx(1 + 0.5 * 4 - 3)


def test_gae_with_lambda_one_and_no_ends_is_return_minus_value():
    rewards = t([[1.0], [1.0], [1.0]])
    values = t([[0.3], [0.2], [0.1]])
    next_values = t([[0.2], [0.1], [0.0]])
    zeros = torch.zeros(3, 1)
    adv, ret = compute_gae(rewards, values, next_values, zeros, zeros, gamma=0.5, gae_lambda=1.0)
    assert ret[:, 0].tolist() == pytest.approx([1.75, 1.5, 1.0], abs=1e-6)  # Monte Carlo returns


def test_discounted_returns_reward_to_go():
    assert discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5).tolist() == pytest.approx([1.5, 1.0, 2.0])
    # A truncated episode bootstraps its tail: G_2 = 2 + 0.5 * 8.
    assert discounted_returns(np.array([1.0, 0.0, 2.0]), 0.5, final_value=8.0).tolist() == pytest.approx([2.5, 3, 6])


def test_replay_buffer_wraps_around_and_keeps_the_newest():
    buffer = ReplayBuffer(capacity=5, obs_shape=(1,), action_shape=(), action_dtype=np.int64, seed=0)
    for step in range(4):  # 2 envs per add: 8 transitions into 5 slots
        obs = np.array([[2 * step], [2 * step + 1]], dtype=np.float32)
        buffer.add(obs, np.array([0, 1]), obs[:, 0], obs + 100, np.array([0.0, 1.0]), 0.99)
    assert buffer.size == 5
    assert buffer.position == 8 % 5
    assert sorted(buffer.obs[:, 0].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]  # 0, 1, 2 were overwritten
    batch = buffer.sample(64)
    assert set(batch["obs"][:, 0].tolist()) <= {3.0, 4.0, 5.0, 6.0, 7.0}
    # Each sampled row is one consistent transition.
    assert torch.equal(batch["next_obs"], batch["obs"] + 100)
    assert torch.equal(batch["rewards"], batch["obs"][:, 0])
    assert torch.equal(batch["terminated"], (batch["obs"][:, 0] % 2 == 1).float())
    assert torch.allclose(batch["discounts"], torch.full((64,), 0.99))


def test_replay_buffer_state_round_trip():
    buffer = ReplayBuffer(capacity=4, obs_shape=(2,), action_shape=(1,), seed=3)
    buffer.add(np.ones((3, 2)), np.zeros((3, 1)), np.arange(3.0), np.ones((3, 2)), np.zeros(3), 0.9)
    copy = ReplayBuffer(capacity=4, obs_shape=(2,), action_shape=(1,), seed=99)
    copy.load_state_dict(buffer.state_dict())
    assert torch.equal(copy.sample(8)["rewards"], buffer.sample(8)["rewards"])


def test_n_step_transitions_match_hand_computation():
    # One env, n = 3, gamma = 0.5; states s0..s4, rewards 1, 2, 3, 4; s4 is terminal.
    n_step = NStepTransitions(n=3, gamma=0.5, num_envs=1)
    ready = []
    for t in range(4):
        ended = t == 3
        obs, next_obs = np.array([[float(t)]]), np.array([[float(t + 1)]])
        ready += n_step.add(obs, np.array([t]), np.array([t + 1.0]), next_obs, np.array([ended]), np.array([ended]))
    got = [(float(o[0]), r, float(nxt[0]), term, d) for o, _, r, nxt, term, d in ready]
    assert got == [
        (0.0, 1 + 0.5 * 2 + 0.25 * 3, 3.0, False, 0.125),  # a full 3-step transition
        (1.0, 2 + 0.5 * 3 + 0.25 * 4, 4.0, True, 0.125),  # reaches the terminal state in 3 steps
        (2.0, 3 + 0.5 * 4, 4.0, True, 0.25),  # flushed at the episode end: only 2 steps left
        (3.0, 4.0, 4.0, True, 0.5),
    ]


def test_one_step_transitions_pass_through_with_gamma():
    n_step = NStepTransitions(n=1, gamma=0.9, num_envs=2)
    ready = n_step.add(np.zeros((2, 1)), np.array([0, 1]), np.array([1.0, 2.0]), np.ones((2, 1)),
                       np.array([False, True]), np.array([False, True]))  # fmt: skip
    assert [(r, term, d) for _, _, r, _, term, d in ready] == [(1.0, False, 0.9), (2.0, True, 0.9)]


def test_next_state_values_reuse_the_next_steps_values_within_episodes():
    # T = 3 steps, N = 2 envs; env 1's episode ends at t = 0, so its reached state there is a final observation.
    obs_values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    next_obs = torch.tensor([[[10.0], [20.0]], [[30.0], [40.0]], [[50.0], [60.0]]])
    episode_ends = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    calls = []

    def value(obs):
        calls.append(len(obs))
        return obs[:, 0] * 100  # V of a reached observation: distinguishable from the reused values

    next_values = next_state_values(value, obs_values, next_obs, episode_ends)
    torch.testing.assert_close(next_values, torch.tensor([[3.0, 2000.0], [5.0, 6.0], [5000.0, 6000.0]]))
    assert calls == [3]  # one pass, over the 3 rows that need it: (0, 1) and the last step's two
    assert episode_ends[-1].sum() == 0  # the caller's tensor is left as it was
