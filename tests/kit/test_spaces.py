"""Observation spaces and their encoders (kit/spaces.py, kit/nets.py), the MultiDiscrete and MultiBinary policy
heads, action masks, and how buffers keep images and masks."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from plainrl.kit.buffers import NStepTransitions, ReplayBuffer, RolloutBuffer
from plainrl.kit.envs import EpisodeStats, final_masks, make_env, make_vec_env, mask_reader, vector_mask_reader
from plainrl.kit.nets import (
    ActorCritic,
    BernoulliHead,
    DictEncoder,
    MultiCategoricalHead,
    NatureCNN,
    QNetwork,
    mask_logits,
    observation_encoder,
)
from plainrl.kit.spaces import DictObservations, auto_device, observation_kind

IMAGE_CHW = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
IMAGE_HWC = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)


def test_observation_kinds():
    assert observation_kind(IMAGE_CHW) == observation_kind(IMAGE_HWC) == "Image"
    assert observation_kind(gym.spaces.Box(0, 255, (84, 84, 3), np.float32)) == "Box"  # float: not an image
    assert observation_kind(gym.spaces.Box(0, 255, (84, 84), np.uint8)) == "Box"  # rank 2: not an image
    with_image = gym.spaces.Dict({"camera": IMAGE_HWC, "speed": gym.spaces.Box(-1, 1, (1,))})
    assert observation_kind(DictObservations(DictHolder(with_image)).observation_space) == "Image"
    vectors = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(-1, 1, (2,))})
    assert observation_kind(DictObservations(DictHolder(vectors)).observation_space) == "Box"
    assert auto_device(IMAGE_CHW, "cpu") == "cuda" and auto_device(gym.spaces.Box(-1, 1, (3,)), "cpu") == "cpu"


class DictHolder(gym.Env):
    def __init__(self, space: gym.spaces.Dict) -> None:
        self.observation_space, self.action_space = space, gym.spaces.Discrete(2)


def test_dict_observations_flatten_in_key_order_with_discrete_entries_one_hot():
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(3), "b": gym.spaces.Box(-1, 1, (2,))})
    flat = DictObservations.flatten(space, {"a": 2, "b": np.array([0.5, -1.0], np.float32)})
    np.testing.assert_array_equal(flat, [0, 0, 1, 0.5, -1.0])
    assert flat.dtype == np.float32
    batch = DictObservations.flatten(space, {"a": np.array([0, 1]), "b": np.zeros((2, 2), np.float32)})
    np.testing.assert_array_equal(batch, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    wrapped = DictObservations(DictHolder(space))
    assert wrapped.observation_space.shape == (5,) and wrapped.raw_space is space


def test_nature_cnn_reads_channels_last_as_channels_first_and_keeps_leading_dimensions():
    torch.manual_seed(0)
    chw = NatureCNN((3, 84, 84))
    hwc = NatureCNN((84, 84, 3))
    hwc.load_state_dict(chw.state_dict())  # the same weights: only the layout of the input differs
    images = torch.randint(0, 256, (2, 3, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(hwc(images.permute(0, 2, 3, 1)), chw(images))
    assert chw(images.expand(5, 2, 3, 84, 84)).shape == (5, 2, 512)  # (T, N, ...) rollouts
    # Inputs are scaled by 1/255 inside: an all-255 uint8 image equals an all-1.0 float image scaled by 255.
    torch.testing.assert_close(
        chw(torch.full((1, 3, 84, 84), 255, dtype=torch.uint8)), chw(torch.full((1, 3, 84, 84), 255.0))
    )


def test_dict_encoder_gives_the_image_to_a_cnn_and_the_vector_entries_through_as_they_are():
    space = gym.spaces.Dict(
        {"camera": gym.spaces.Box(0, 255, (36, 36, 1), np.uint8), "speed": gym.spaces.Box(-1, 1, (2,))}
    )
    encoder = DictEncoder(space)
    assert encoder.features == 512 + 2
    image = np.zeros((36, 36, 1), np.uint8)
    flat = torch.as_tensor(
        DictObservations.flatten(space, {"camera": image, "speed": np.array([0.25, -0.5], np.float32)})
    )
    features = encoder(flat[None])
    assert features.shape == (1, 514)
    torch.testing.assert_close(features[0, 512:], torch.tensor([0.25, -0.5]))  # "speed" sorts after "camera"
    torch.testing.assert_close(features[0, :512], encoder.encoders[0](torch.as_tensor(image)[None])[0])


def test_vector_encoders_have_no_weights_so_actor_and_critic_stay_separate_mlps():
    encoder, size = observation_encoder(gym.spaces.Box(-1, 1, (3, 2)))
    assert size == 6 and not list(encoder.parameters())
    assert encoder(torch.zeros(5, 7, 3, 2)).shape == (5, 7, 6)  # only the observation's own dimensions flatten
    agent = ActorCritic(IMAGE_CHW, gym.spaces.Discrete(6), hidden_sizes=())
    n_cnn = sum(p.numel() for p in agent.encoder.parameters())
    assert n_cnn == sum(p.numel() for p in NatureCNN((4, 84, 84)).parameters())
    assert agent.actor[0].in_features == 512 and agent.critic[0].in_features == 512  # both heads on one CNN
    with pytest.raises(Exception, match="normalize_obs = true is for vector observations"):
        ActorCritic(IMAGE_CHW, gym.spaces.Discrete(6), normalize_obs=True)


def test_multi_categorical_log_prob_and_entropy_by_hand():
    head = MultiCategoricalHead(np.array([3, 2]))
    logits = torch.tensor([[0.0, math.log(2), math.log(3), 0.0, 0.0]])  # entry 0: p = 1/6, 2/6, 3/6; entry 1: 1/2, 1/2
    log_prob, entropy = head.log_prob_entropy(logits, torch.tensor([[2, 1]]))
    assert log_prob.item() == pytest.approx(math.log(3 / 6) + math.log(1 / 2), abs=1e-6)
    h0 = -sum(p * math.log(p) for p in (1 / 6, 2 / 6, 3 / 6))
    assert entropy.item() == pytest.approx(h0 + math.log(2), abs=1e-6)
    torch.manual_seed(0)
    samples = head.sample(logits.expand(6000, 5))
    assert samples.shape == (6000, 2)
    frequencies = torch.bincount(samples[:, 0], minlength=3).float() / 6000
    torch.testing.assert_close(frequencies, torch.tensor([1 / 6, 2 / 6, 3 / 6]), atol=0.02, rtol=0)
    assert head.mode(logits).tolist() == [[2, 0]]


def test_bernoulli_log_prob_and_entropy_by_hand():
    head = BernoulliHead()
    logits = torch.tensor([[0.0, math.log(3)]])  # P(1) = 0.5 and 0.75
    log_prob, entropy = head.log_prob_entropy(logits, torch.tensor([[1, 0]], dtype=torch.int8))
    assert log_prob.item() == pytest.approx(math.log(0.5) + math.log(0.25), abs=1e-6)
    assert entropy.item() == pytest.approx(math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-6)
    torch.manual_seed(0)
    samples = head.sample(logits.expand(8000, 2)).float().mean(0)
    torch.testing.assert_close(samples, torch.tensor([0.5, 0.75]), atol=0.02, rtol=0)
    assert head.mode(logits).tolist() == [[0, 1]]


def test_masked_actions_get_probability_zero_in_sampling_log_probs_entropy_and_greedy_choice():
    logits = torch.tensor([[5.0, 0.0, 0.0]])  # the masked action 0 would be the favourite
    mask = torch.tensor([[False, True, True]])
    masked = mask_logits(logits, mask)
    agent = ActorCritic(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    log_probs, entropy = agent.head.log_prob_entropy(masked, torch.tensor([1]))
    assert log_probs.item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert entropy.item() == pytest.approx(math.log(2), abs=1e-6)  # finite: no 0 * log 0 NaN
    torch.manual_seed(0)
    assert (agent.head.sample(masked.expand(2000, 3)) != 0).all()
    q_network = QNetwork(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    with torch.no_grad():
        q_network.q[-1].bias.copy_(torch.tensor([100.0, 0.0, 1.0]))  # action 0 has by far the highest Q
    obs = torch.zeros(4, 2)
    assert (q_network.act(obs) == 0).all()
    assert (q_network.act(obs, mask=mask.expand(4, 3)) == 2).all()  # the best allowed action
    # A masked logit's gradient is 0, and the allowed ones' is finite.
    logits = torch.tensor([[5.0, 0.0, 0.0]], requires_grad=True)
    log_prob, entropy = agent.head.log_prob_entropy(mask_logits(logits, mask), torch.tensor([1]))
    (log_prob + entropy).sum().backward()
    assert logits.grad[0, 0] == 0 and torch.isfinite(logits.grad).all()


def test_rollouts_keep_images_as_uint8_and_store_the_masks_each_step_was_taken_with():
    images = gym.spaces.Box(0, 255, (36, 36, 1), np.uint8)
    assert RolloutBuffer(2, 3, images, gym.spaces.Discrete(2)).obs.dtype == np.uint8
    envs = make_vec_env("tests.helpers:MaskedChoiceEnv", 2, seed=0)
    obs, infos = envs.reset(seed=0)
    reader = vector_mask_reader(envs, infos)
    rollout = RolloutBuffer(5, 2, envs.single_observation_space, envs.single_action_space, reader)
    rollout.start(infos)
    seen = []

    def policy(obs, masks):
        seen.append(masks.copy())
        return np.flatnonzero(masks[0])[:1].repeat(2), np.zeros(2, np.float32)

    rollout.collect(envs, obs, policy, EpisodeStats(2))
    assert rollout.masks is not None and rollout.masks.shape == (5, 2, 4)
    np.testing.assert_array_equal(rollout.masks, np.stack(seen))
    for t in range(5):  # each stored mask forbids exactly the state shown in that step's observation
        np.testing.assert_array_equal(rollout.masks[t], rollout.obs[t] == 0)
    assert "masks" in rollout.tensors("cpu")


def test_masks_come_from_info_or_from_an_action_masks_method_and_none_otherwise():
    for env_id in ("tests.helpers:MaskedChoiceEnv", "tests.helpers:MaskedChoiceMethodEnv"):
        envs = make_vec_env(env_id, 3, seed=1)
        obs, infos = envs.reset(seed=1)
        reader = vector_mask_reader(envs, infos)
        assert reader is not None
        np.testing.assert_array_equal(reader(infos), obs == 0)
    for asynchronous in (False, True):  # asking an AsyncVectorEnv must leave it working (no error in its workers)
        envs = make_vec_env("CartPole-v1", 2, seed=0, asynchronous=asynchronous)
        assert vector_mask_reader(envs, envs.reset(seed=0)[1]) is None
        envs.step(np.zeros(2, dtype=np.int64))
        envs.close()


def test_final_masks_are_the_final_states_where_an_episode_ended():
    masks = np.array([[True, False], [False, True]])
    final_info = {"action_mask": np.array([[True, True], [True, False]]), "_action_mask": np.array([False, True])}
    infos = {"action_mask": masks, "_final_obs": np.array([False, True]), "final_info": final_info}
    current = mask_reader(infos, None)(infos)
    np.testing.assert_array_equal(final_masks(current, infos), [[True, False], [True, False]])


def test_replay_keeps_next_state_masks_and_n_step_transitions_carry_the_last_ones():
    replay = ReplayBuffer(4, (2,), (), np.int64, seed=0, obs_dtype=np.uint8, mask_size=3)
    assert replay.obs.dtype == np.uint8
    replay.add(np.ones((2, 2)), np.array([0, 1]), np.zeros(2), np.ones((2, 2)), np.zeros(2), 0.9,
               np.array([[True, False, True], [False, False, True]]))  # fmt: skip
    batch = replay.sample(16)
    assert batch["next_masks"].shape == (16, 3) and batch["next_masks"].dtype == torch.bool
    copy = ReplayBuffer(4, (2,), (), np.int64, seed=5, obs_dtype=np.uint8, mask_size=3)
    copy.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(copy.next_masks, replay.next_masks)

    n_step = NStepTransitions(n=2, gamma=0.5, num_envs=1)
    step = dict(
        obs=np.zeros((1, 1)), actions=np.array([0]), terminated=np.array([False]), episode_ends=np.array([False])
    )
    assert (
        n_step.add(rewards=np.array([1.0]), next_obs=np.ones((1, 1)), next_masks=np.array([[True, False]]), **step)
        == []
    )
    (transition,) = n_step.add(rewards=np.array([2.0]), next_obs=np.full((1, 1), 2.0),
                               next_masks=np.array([[False, True]]), **step)  # fmt: skip
    assert transition[2] == pytest.approx(1.0 + 0.5 * 2.0) and transition[5] == pytest.approx(0.25)
    np.testing.assert_array_equal(transition[6], [False, True])  # the mask of s_{t+2}, the state bootstrapped from
    assert len(NStepTransitions(1, 0.5, 1).add(rewards=np.array([1.0]), next_obs=np.ones((1, 1)), **step)[0]) == 6


def test_make_env_flattens_dict_observations_for_vector_readers_only():
    env = make_env("tests.helpers:DictCueEnv", seed=0, vectors=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and obs[:2].sum() == 1  # "cue" one-hot, then the 2 noise values
    assert isinstance(make_env("tests.helpers:DictCueEnv").observation_space, gym.spaces.Dict)
