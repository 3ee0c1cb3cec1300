"""EPyMARL's and pymarl2's runner write patterns, with the value kinds gymnasium environments return.

Spec §12: where oxwhirl's ``torch.tensor(v, dtype)`` succeeds its result is kept; where it raises
on a list but EPyMARL's ``torch.tensor(np.array(v), dtype)`` succeeds, EPyMARL's result is returned.
The runners below write exactly as EPyMARL's ``EpisodeRunner`` / ``ParallelRunner`` and pymarl2's
runners do (dicts of lists holding tuples of numpy scalars, lists of ndarrays, action tensors,
``bs`` lists with ``mark_filled=False``), then the learner-side reads run on the sampled batches.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

from xreplay.compat.pymarl import EpisodeBatch, OneHot, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.errors import FieldValueRuntimeError

N_AGENTS, N_ACTIONS, OBS, LIMIT = 2, 6, 9, 12
ENV_EXTRA = "the real-environment runs need gymnasium and lbforaging: pip install gymnasium lbforaging (dev extra)"

SCALARS = [
    pytest.param(np.bool_(True), id="numpy_bool_true"),
    pytest.param(np.bool_(False), id="numpy_bool_false"),
    pytest.param(np.True_ != False, id="numpy_bool_comparison"),  # noqa: E712 - the runner's own expression
    pytest.param(np.int64(3), id="numpy_int64"),
    pytest.param(np.int32(2), id="numpy_int32"),
    pytest.param(np.uint8(1), id="numpy_uint8"),
    pytest.param(np.float32(2.5), id="numpy_float32"),
    pytest.param(np.float64(0.75), id="numpy_float64"),
    pytest.param(np.float16(1.5), id="numpy_float16"),
    pytest.param(True, id="python_bool"),
]
DTYPES = [torch.uint8, torch.long, torch.int32, torch.float32, torch.bool]


def epymarl_result(value, dtype):
    """What EPyMARL's update stores for a list value."""
    return torch.tensor(np.array(value), dtype=dtype)


def oxwhirl_result(value, dtype):
    """What oxwhirl's (and pymarl2's) update stores, or None where it raises."""
    try:
        return torch.tensor(value, dtype=dtype)
    except TypeError:
        return None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("container", ["list_of_tuple", "list_of_list"])
@pytest.mark.parametrize("scalar", SCALARS)
def test_numpy_scalars_in_lists_are_stored_as_upstream_stores_them(scalar, container, dtype):
    batch = EpisodeBatch({"x": {"vshape": (1,), "dtype": dtype}}, {}, 1, 3)
    value = [(scalar,)] if container == "list_of_tuple" else [[scalar]]
    batch.update({"x": value}, ts=1)
    expected = oxwhirl_result(value, dtype)
    if expected is None:  # oxwhirl raises (e.g. numpy bool into uint8): EPyMARL's np.array route decides
        expected = epymarl_result(value, dtype)
    assert batch["x"][0, 1].tolist() == expected.reshape(-1).tolist()
    assert batch["x"].dtype == dtype
    assert batch["filled"][0, :, 0].tolist() == [0, 1, 0]


def test_the_epymarl_terminated_expression_of_the_issue():
    batch = EpisodeBatch({"terminated": {"vshape": (1,), "dtype": torch.uint8}}, {}, 1, 4)
    terminated, env_info = np.bool_(True), {}
    batch.update({"terminated": [(terminated != env_info.get("episode_limit", False),)]}, ts=2)
    assert batch["terminated"][0, :, 0].tolist() == [0, 0, 1, 0]


def test_values_neither_upstream_converts_losslessly_are_refused_naming_the_field():
    batch = EpisodeBatch({"terminated": {"vshape": (1,), "dtype": torch.uint8}}, {}, 1, 4)
    with pytest.raises(FieldValueRuntimeError, match="'terminated'.*outside torch.uint8") as info:
        batch.update({"terminated": [(np.bool_(True), 300)]}, ts=0)  # np.array would wrap 300 to 44
    assert isinstance(info.value, RuntimeError)  # what torch.tensor raises for 300 from a list
    assert batch["terminated"].sum().item() == 0 and batch["filled"].sum().item() == 0


# -- environments -----------------------------------------------------------------------------


class NumpyScalarEnv:
    """A tiny multi-agent environment returning gymnasium's value kinds (numpy scalars, float32 arrays).

    ``step`` returns ``(reward, terminated, info)`` as EPyMARL's environment wrappers do: a numpy
    float reward (or a float32 array per agent), a ``numpy.bool_`` terminated flag and an info
    dict with ``episode_limit`` on time-outs.
    """

    def __init__(self, seed: int, common_reward: bool = True):
        self.rng = np.random.default_rng(seed)
        self.common_reward = common_reward
        self.t = 0

    def reset(self):
        self.t = 0
        self.obs = [self.rng.random(OBS, dtype=np.float32) for _ in range(N_AGENTS)]

    def step(self, actions):
        self.t += 1
        self.obs = [self.rng.random(OBS, dtype=np.float32) for _ in range(N_AGENTS)]
        rewards = (self.rng.random(N_AGENTS) < 0.2).astype(np.float32) * np.float32(0.5)
        done = np.all(self.rng.random(N_AGENTS) < 0.1)  # numpy.bool_, as np.all returns
        info = {}
        if self.t >= LIMIT and not done:
            done, info = np.True_, {"episode_limit": True}
        reward = rewards.sum() if self.common_reward else rewards  # np.float32, or a float32 array
        return reward, done, info

    def get_obs(self):
        return self.obs

    def get_state(self):
        return np.concatenate(self.obs).astype(np.float32)

    def get_avail_actions(self):
        return [[1] * N_ACTIONS for _ in range(N_AGENTS)]


class ForagingEnv:
    """Level-based foraging (gymnasium + lbforaging) seen through EPyMARL's wrapper conventions."""

    def __init__(self, seed: int, common_reward: bool = True):
        gym = pytest.importorskip("gymnasium", reason=ENV_EXTRA)
        pytest.importorskip("lbforaging", reason=ENV_EXTRA)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbforaging's registration may warn about gymnasium's API
            self.env = gym.make(
                "Foraging-5x5-2p-1f-v3", max_episode_steps=LIMIT, disable_env_checker=True
            )
        self.seed, self.common_reward = seed, common_reward

    def reset(self):
        obs, _info = self.env.reset(seed=self.seed)
        self.seed += 1
        self.obs = [np.pad(o, (0, OBS - len(o))) for o in obs]

    def step(self, actions):
        obs, reward, done, truncated, info = self.env.step([int(a) for a in actions])
        self.obs = [np.pad(o, (0, OBS - len(o))) for o in obs]
        info = dict(info)
        if truncated:
            info["episode_limit"] = True
        rewards = np.asarray(reward, dtype=np.float32)
        terminated = np.logical_or(np.all(done), truncated)  # numpy.bool_
        return (rewards.sum() if self.common_reward else rewards), terminated, info

    get_obs = NumpyScalarEnv.get_obs
    get_state = NumpyScalarEnv.get_state
    get_avail_actions = NumpyScalarEnv.get_avail_actions


ENVS = [pytest.param(NumpyScalarEnv, id="numpy_scalars"), pytest.param(ForagingEnv, id="lbforaging")]


def scheme(common_reward: bool = True, probs: bool = False):
    """EPyMARL's run.py scheme (pymarl2 adds ``probs``)."""
    s = {
        "state": {"vshape": N_AGENTS * OBS},
        "obs": {"vshape": OBS, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,) if common_reward else (N_AGENTS,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    if probs:
        s["probs"] = {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.float}
    return s


GROUPS = {"agents": N_AGENTS}
PREPROCESS = {"actions": ("actions_onehot", [OneHot(out_dim=N_ACTIONS)])}


def select_actions(batch, t, bs=slice(None)):
    """A stand-in for the MAC: read what a MAC reads, return random long actions on the batch's device."""
    avail = batch["avail_actions"][bs, t]
    assert avail.shape[-1] == N_ACTIONS
    return torch.randint(0, N_ACTIONS, (avail.shape[0], N_AGENTS))


def run_episode_runner(env, common_reward=True, probs=False):
    """EPyMARL's EpisodeRunner.run (and pymarl2's, which writes the same keys)."""
    batch = EpisodeBatch(scheme(common_reward, probs), GROUPS, 1, LIMIT + 1, preprocess=PREPROCESS)
    env.reset()
    terminated, t = False, 0
    while not terminated:
        batch.update(
            {"state": [env.get_state()], "avail_actions": [env.get_avail_actions()], "obs": [env.get_obs()]}, ts=t
        )
        actions = select_actions(batch, t)
        reward, terminated, env_info = env.step(actions[0])
        post = {"actions": actions, "terminated": [(terminated != env_info.get("episode_limit", False),)]}
        post["reward"] = [(reward,)] if common_reward else [tuple(reward)]
        if probs:
            post["probs"] = torch.softmax(torch.rand(1, N_AGENTS, N_ACTIONS), -1).numpy()
        batch.update(post, ts=t)
        t += 1
    batch.update({"state": [env.get_state()], "avail_actions": [env.get_avail_actions()], "obs": [env.get_obs()]}, ts=t)
    batch.update({"actions": select_actions(batch, t)}, ts=t)
    return batch, t


def run_parallel_runner(envs, common_reward=True):
    """EPyMARL's ParallelRunner.run: ``bs`` lists of running envs, ``mark_filled=False`` for step results."""
    n = len(envs)
    batch = EpisodeBatch(scheme(common_reward), GROUPS, n, LIMIT + 1, preprocess=PREPROCESS)
    pre = {"state": [], "avail_actions": [], "obs": []}
    for env in envs:
        env.reset()
        pre["state"].append(env.get_state())
        pre["avail_actions"].append(env.get_avail_actions())
        pre["obs"].append(env.get_obs())
    batch.update(pre, ts=0)
    terminated = [False] * n
    running = [b for b, done in enumerate(terminated) if not done]
    t, lengths = 0, [0] * n
    while True:
        actions = select_actions(batch, t, bs=running)
        batch.update({"actions": actions.unsqueeze(1)}, bs=running, ts=t, mark_filled=False)
        results = {idx: envs[idx].step(actions[k]) for k, idx in enumerate(running) if not terminated[idx]}
        running = [b for b, done in enumerate(terminated) if not done]
        if all(terminated):
            break
        post, pre = {"reward": [], "terminated": []}, {"state": [], "avail_actions": [], "obs": []}
        for idx in range(n):
            if terminated[idx]:
                continue
            reward, done, info = results[idx]
            post["reward"].append((reward,))
            post["terminated"].append((bool(done) and not info.get("episode_limit", False),))
            terminated[idx] = done  # a numpy.bool_
            lengths[idx] += 1
            pre["state"].append(envs[idx].get_state())
            pre["avail_actions"].append(envs[idx].get_avail_actions())
            pre["obs"].append(envs[idx].get_obs())
        batch.update(post, bs=running, ts=t, mark_filled=False)
        t += 1
        batch.update(pre, bs=running, ts=t, mark_filled=True)
    return batch, lengths


def learner_reads(sample):
    """What QMIX/pymarl2 learners read from a sampled batch."""
    max_t = sample.max_t_filled()
    sample = sample[:, :max_t]
    rewards = sample["reward"][:, :-1]
    actions = sample["actions"][:, :-1]
    terminated = sample["terminated"][:, :-1].float()
    mask = sample["filled"][:, :-1].float()
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    onehot = sample["actions_onehot"]
    assert actions.dtype == torch.long and terminated.dtype == torch.float32
    valid = sample["filled"][:, :-1].bool().unsqueeze(2).expand_as(actions)  # [batch, t, agents, 1]
    assert torch.equal(onehot.argmax(-1, keepdim=True)[:, :-1][valid], actions[valid])
    return rewards, mask


@pytest.mark.parametrize("env_class", ENVS)
@pytest.mark.parametrize("common_reward", [True, False], ids=["common_reward", "per_agent_reward"])
def test_epymarl_episode_runner_end_to_end(env_class, common_reward):
    env = env_class(seed=0, common_reward=common_reward)
    buffer = ReplayBuffer(scheme(common_reward), GROUPS, 8, LIMIT + 1, preprocess=PREPROCESS)
    episodes = []
    for _ in range(5):
        batch, length = run_episode_runner(env, common_reward)
        assert batch["filled"][0, :, 0].tolist() == [1] * (length + 1) + [0] * (LIMIT - length)
        assert batch["terminated"].dtype == torch.uint8 and int(batch["terminated"].sum()) <= 1
        buffer.insert_episode_batch(batch)
        episodes.append(batch)
    np.random.seed(0)
    sample = buffer.sample(4)
    rewards, mask = learner_reads(sample)
    assert rewards.shape[-1] == (1 if common_reward else N_AGENTS)
    assert mask.sum() > 0
    for slot, episode in enumerate(episodes):  # the buffer holds exactly what the runner wrote
        for key in ("state", "obs", "actions", "reward", "terminated", "filled", "actions_onehot"):
            assert torch.equal(buffer[key][slot], episode[key][0]), key


@pytest.mark.parametrize("env_class", ENVS)
def test_epymarl_parallel_runner_end_to_end(env_class):
    envs = [env_class(seed=s) for s in range(3)]
    buffer = ReplayBuffer(scheme(), GROUPS, 10, LIMIT + 1, preprocess=PREPROCESS)
    for _ in range(3):
        batch, lengths = run_parallel_runner(envs)
        for b, length in enumerate(lengths):
            assert batch["filled"][b, :, 0].tolist() == [1] * (length + 1) + [0] * (LIMIT - length)
        buffer.insert_episode_batch(batch)
    np.random.seed(1)
    learner_reads(buffer.sample(5))
    assert buffer.episodes_in_buffer == 9


@pytest.mark.parametrize("env_class", ENVS)
def test_pymarl2_runner_with_prioritized_buffer_end_to_end(env_class):
    env = env_class(seed=3)
    buffer = PrioritizedReplayBuffer(
        scheme(probs=True), GROUPS, 6, LIMIT + 1, alpha=0.6, beta=0.4, t_max=100, preprocess=PREPROCESS
    )
    for _ in range(6):
        batch, _length = run_episode_runner(env, probs=True)
        buffer.insert_episode_batch(batch)
    random.seed(0)
    sample, idxes, weights = buffer.sample(4, t=10)
    rewards, _mask = learner_reads(sample)
    assert sample["probs"].dtype == torch.float32 and weights.shape == (4,)
    td_errors = torch.rand(4, dtype=torch.float64)
    buffer.update_priorities(idxes, td_errors.numpy() + 1e-6)  # pymarl2 passes numpy priorities
    recent = buffer.sample_latest(2)
    assert recent.batch_size == 2
    assert rewards.shape[0] == 4
