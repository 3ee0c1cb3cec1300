"""The seed scenario end to end: QMIX on MarineMicro_MvsM_4 through PyMARL's runner write patterns.

Spec §4 (runner writes) and §11 (run.py / QLearner / BasicMAC reads). Every step is
mirrored on the reference model and compared. Buffers are small (64 instead of 5000)
to keep the run fast; one test allocates the real 5000-episode buffer.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pymarl_compare import assert_same_batch, assert_same_buffer, assert_same_tensor, rng_state_equal
from pymarl_reference import RefEpisodeBatch, RefOneHot, RefReplayBuffer

from xreplay.compat.pymarl import EpisodeBatch, OneHot, ReplayBuffer

N_AGENTS, N_ACTIONS, OBS, STATE, LIMIT = 4, 10, 40, 68, 60
T = LIMIT + 1  # max_seq_length 61
GROUPS = {"agents": N_AGENTS}
BATCH = 32


def run_scheme():
    """The scheme run.py builds for MarineMicro_MvsM_4 (int vshapes stay ints)."""
    return {
        "state": {"vshape": STATE},
        "obs": {"vshape": OBS, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int32},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }


def pre(one_hot):
    return {"actions": ("actions_onehot", [one_hot(out_dim=N_ACTIONS)])}


def make_pair(buffer_size, compact=False, device="cpu"):
    ref = RefReplayBuffer(run_scheme(), GROUPS, buffer_size, T, preprocess=pre(RefOneHot), device="cpu")
    ours = ReplayBuffer(run_scheme(), GROUPS, buffer_size, T, preprocess=pre(OneHot), device=device, compact=compact)
    return ref, ours


class FakeEnv:
    """Random SMAC-shaped observations; an episode lasts ``length`` steps."""

    def __init__(self, rng, length, hits_limit):
        self.rng, self.length, self.hits_limit = rng, length, hits_limit

    def step_data(self):
        avail = self.rng.integers(0, 2, (N_AGENTS, N_ACTIONS))
        avail[:, 0] = 1
        return {
            "state": [self.rng.standard_normal(STATE).astype(np.float32)],
            "avail_actions": [avail.tolist()],
            "obs": [[self.rng.standard_normal(OBS).astype(np.float32) for _ in range(N_AGENTS)]],
        }

    def actions(self, avail):
        # BasicMAC returns a (batch, n_agents) long tensor of available actions.
        picks = [int(self.rng.choice(np.flatnonzero(np.array(a)))) for a in avail[0]]
        return torch.tensor([picks], dtype=torch.long)


def episode_runner(batches, rng, length, hits_limit, device="cpu"):
    """EpisodeRunner.run: per-step writes at ts=t, the bootstrap row at ts=length."""
    env = FakeEnv(rng, length, hits_limit)
    for t in range(length):
        pre_data = env.step_data()
        actions = env.actions(pre_data["avail_actions"][0:1])
        reward = float(rng.standard_normal())
        terminated = t == length - 1
        post = {
            "actions": actions.to(device),
            "reward": [(reward,)],
            "terminated": [(terminated and not hits_limit,)],
        }
        for b in batches:
            b.update(pre_data, ts=t)
            b.update(post, ts=t)
    last = env.step_data()
    actions = env.actions(last["avail_actions"][0:1])
    for b in batches:
        b.update(last, ts=length)
        b.update({"actions": actions.to(device)}, ts=length)


def new_runner_batches(n=1, compact=False, device="cpu"):
    ref = RefEpisodeBatch(run_scheme(), GROUPS, n, T, preprocess=pre(RefOneHot), device="cpu")
    ours = EpisodeBatch(run_scheme(), GROUPS, n, T, preprocess=pre(OneHot), device=device, compact=compact)
    return ref, ours


def fill_with_episode_runner(ref_buf, our_buf, n_episodes, seed, compact_runner=False, device="cpu"):
    rng = np.random.default_rng(seed)
    for _ in range(n_episodes):
        ref_ep, our_ep = new_runner_batches(1, compact_runner, device)
        length = int(rng.integers(3, LIMIT + 1))
        episode_runner([ref_ep, our_ep], rng, length, hits_limit=length == LIMIT, device=device)
        ref_buf.insert_episode_batch(ref_ep)
        our_buf.insert_episode_batch(our_ep)


def on_cpu(batch):
    """A CPU copy of a batch (for comparing a CUDA batch with the CPU reference)."""
    batch.to("cpu")
    return batch


def check_training_reads(ref_sample, our_sample, device="cpu"):
    """run.py + QLearner + BasicMAC reads of a sample must match the reference exactly."""
    ref_max_t, our_max_t = ref_sample.max_t_filled(), our_sample.max_t_filled()
    assert our_max_t.shape == (1,) and our_max_t.dtype == torch.int64
    assert_same_tensor(ref_max_t, our_max_t.cpu(), "max_t_filled")
    ref_b, our_b = ref_sample[:, :ref_max_t], our_sample[:, :our_max_t]
    assert our_sample.to(device) is None
    our_b.to(device)
    assert our_b.device == device

    assert type(our_b.batch_size) is int and type(our_b.max_seq_length) is int
    assert (our_b.batch_size, our_b.max_seq_length) == (ref_b.batch_size, ref_b.max_seq_length)
    for _ in range(our_b.max_seq_length):  # used as range() bounds
        pass

    def both(fn, what):
        ours = fn(our_b)
        assert ours.device.type == torch.device(device).type, what
        assert_same_tensor(fn(ref_b), ours.cpu(), what)
        return ours

    both(lambda b: b["reward"][:, :-1], "reward[:, :-1]")
    actions = both(lambda b: b["actions"][:, :-1], "actions[:, :-1]")
    assert actions.dtype == torch.long
    terminated = both(lambda b: b["terminated"][:, :-1].float(), "terminated.float()")
    mask = both(lambda b: b["filled"][:, :-1].float(), "filled.float()")
    mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
    both(lambda b: b["avail_actions"] == 0, "avail_actions == 0")
    q = torch.randn(our_b.batch_size, our_b.max_seq_length - 1, N_AGENTS, N_ACTIONS, device=actions.device)
    chosen = torch.gather(q, dim=3, index=actions).squeeze(3)  # actions as a gather index
    assert chosen.shape == (our_b.batch_size, our_b.max_seq_length - 1, N_AGENTS)
    for t in (0, 1, our_b.max_seq_length - 1):
        both(lambda b, t=t: b["obs"][:, t], f"obs[:, {t}]")
        both(lambda b, t=t: b["avail_actions"][:, t], f"avail_actions[:, {t}]")
        if t > 0:
            both(lambda b, t=t: b["actions_onehot"][:, t - 1], f"actions_onehot[:, {t - 1}]")
    eye = torch.eye(N_AGENTS, device=our_b.device)  # BasicMAC passes batch.device to torch
    assert eye.device.type == torch.device(device).type


# ======================================================================================


@pytest.mark.parametrize(
    ("compact_buffer", "compact_runner"),
    [
        pytest.param(False, False, id="default"),
        pytest.param(True, False, id="compact-buffer"),
        pytest.param(True, True, id="compact-buffer-and-runner"),
    ],
)
def test_episode_runner_training_loop(compact_buffer, compact_runner):
    ref_buf, our_buf = make_pair(64, compact_buffer)
    assert our_buf.scheme["state"]["vshape"] == STATE and list(our_buf.scheme)[-2:] == ["actions_onehot", "filled"]
    rng = np.random.default_rng(0)
    seeds = iter(range(10_000))
    # Fill past can_sample(32), sample like run.py after every insert, and wrap the ring.
    for episode in range(72):
        fill_with_episode_runner(ref_buf, our_buf, 1, next(seeds), compact_runner)
        assert our_buf.can_sample(BATCH) == ref_buf.can_sample(BATCH)
        if episode in (31, 32, 50, 71) and our_buf.can_sample(BATCH):
            seed = int(rng.integers(2**31))
            np.random.seed(seed)
            ref_s = ref_buf.sample(BATCH)
            ref_state = np.random.get_state()
            np.random.seed(seed)
            our_s = our_buf.sample(BATCH)
            assert rng_state_equal(ref_state, np.random.get_state())
            assert_same_batch(ref_s, our_s, f"sample after episode {episode}")
            check_training_reads(ref_s, our_s)
    assert (our_buf.buffer_index, our_buf.episodes_in_buffer) == (72 % 64, 64)
    assert_same_buffer(ref_buf, our_buf)


def test_episode_runner_filled_and_terminated_rows():
    ref_ep, our_ep = new_runner_batches()
    episode_runner([ref_ep, our_ep], np.random.default_rng(1), length=7, hits_limit=False)
    assert_same_batch(ref_ep, our_ep)
    assert our_ep["filled"][0, :, 0].tolist() == [1] * 8 + [0] * (T - 8)  # L+1 rows incl. bootstrap
    assert our_ep["terminated"][0, :, 0].tolist() == [0] * 6 + [1] + [0] * (T - 7)
    assert our_ep.max_t_filled().tolist() == [8]
    assert our_ep["actions_onehot"][0, 7].sum().item() == N_AGENTS  # actions written at ts=L too


def test_episode_runner_time_limit_is_not_terminal():
    ref_ep, our_ep = new_runner_batches()
    episode_runner([ref_ep, our_ep], np.random.default_rng(2), length=LIMIT, hits_limit=True)
    assert_same_batch(ref_ep, our_ep)
    assert our_ep["filled"][0, :, 0].sum().item() == T
    assert our_ep["terminated"].sum().item() == 0


def parallel_runner(batches, rng, lengths, device="cpu"):
    """ParallelRunner.run: initial ts=0 write for all envs, then list-bs writes with mark_filled rules."""
    envs = [FakeEnv(rng, n, n == LIMIT) for n in lengths]
    n_envs = len(envs)
    first = [e.step_data() for e in envs]
    init = {k: [d[k][0] for d in first] for k in first[0]}
    for b in batches:
        b.update(init, ts=0)
    terminated = [False] * n_envs
    avail = [d["avail_actions"][0] for d in first]
    t = 0
    while True:
        envs_not_terminated = [i for i, done in enumerate(terminated) if not done]
        if not envs_not_terminated:
            break
        actions = torch.stack([envs[i].actions([avail[i]])[0] for i in range(n_envs)])
        for b in batches:
            b.update(
                {"actions": actions.unsqueeze(1).to(device)[envs_not_terminated]},
                bs=envs_not_terminated,
                ts=t,
                mark_filled=False,
            )
        post = {"reward": [], "terminated": []}
        pre_data = {"state": [], "avail_actions": [], "obs": []}
        for i in envs_not_terminated:
            done = t == envs[i].length - 1
            post["reward"].append((float(rng.standard_normal()),))
            post["terminated"].append((done and not envs[i].hits_limit,))
            d = envs[i].step_data()
            for k in pre_data:
                pre_data[k].append(d[k][0])
            avail[i] = d["avail_actions"][0]
            terminated[i] = done
        for b in batches:
            b.update(post, bs=envs_not_terminated, ts=t, mark_filled=False)
            b.update(pre_data, bs=envs_not_terminated, ts=t + 1, mark_filled=True)
        t += 1


@pytest.mark.parametrize(
    "compact",
    [
        pytest.param(False, id="default"),
        pytest.param(True, id="compact"),
    ],
)
def test_parallel_runner_training_loop(compact):
    ref_buf, our_buf = make_pair(16)
    rng = np.random.default_rng(3)
    for _ in range(5):
        ref_ep, our_ep = new_runner_batches(4, compact)
        lengths = [int(x) for x in rng.integers(2, 20, 4)]
        lengths[0] = LIMIT if _ == 0 else lengths[0]
        parallel_runner([ref_ep, our_ep], rng, lengths)
        assert_same_batch(ref_ep, our_ep, "parallel runner batch")
        for i, n in enumerate(lengths):
            assert our_ep["filled"][i, :, 0].sum().item() == n + 1
        ref_buf.insert_episode_batch(ref_ep)
        our_buf.insert_episode_batch(our_ep)
    assert_same_buffer(ref_buf, our_buf)
    np.random.seed(11)
    ref_s = ref_buf.sample(8)
    np.random.seed(11)
    our_s = our_buf.sample(8)
    assert_same_batch(ref_s, our_s)
    check_training_reads(ref_s, our_s)


def test_real_size_buffer():
    """The real qmix.yaml buffer (5000 x 61); sampled episodes are the ones numpy.random.choice names."""
    buf = ReplayBuffer(run_scheme(), GROUPS, 5000, T, preprocess=pre(OneHot))
    assert buf["obs"].shape == (5000, T, N_AGENTS, OBS)
    assert buf["actions_onehot"].shape == (5000, T, N_AGENTS, N_ACTIONS)
    rng = np.random.default_rng(4)
    episodes = []
    for _ in range(40):
        ref_ep, our_ep = new_runner_batches()
        episode_runner([ref_ep, our_ep], rng, int(rng.integers(3, 30)), False)
        buf.insert_episode_batch(our_ep)
        episodes.append(ref_ep)
    assert (buf.buffer_index, buf.episodes_in_buffer) == (40, 40)
    np.random.seed(9)
    ids = np.random.choice(40, BATCH, replace=False)
    np.random.seed(9)
    s = buf.sample(BATCH)
    for row, i in enumerate(ids[:4]):
        for k in ("state", "obs", "actions", "avail_actions", "reward", "terminated", "actions_onehot", "filled"):
            assert_same_tensor(episodes[i][k][0], s[k][row], f"{k} of episode {i}")
    check_training_reads(_stack(episodes, ids), s)


def _stack(episodes, ids):
    """A reference batch holding ``episodes[ids]`` in order."""
    first = episodes[0]
    data = SimpleNamespace(
        transition_data={k: torch.cat([episodes[i][k] for i in ids]) for k in first.data.transition_data},
        episode_data={},
    )
    return RefEpisodeBatch(first.scheme, first.groups, len(ids), T, data=data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compact", [pytest.param(False, id="default"), pytest.param(True, id="compact")])
def test_cuda_buffer_training_loop(compact):
    ref_buf, our_buf = make_pair(64, compact, device="cuda")
    assert our_buf["obs"].device.type == "cuda"
    fill_with_episode_runner(ref_buf, our_buf, 40, seed=5, device="cuda")
    assert (our_buf.buffer_index, our_buf.episodes_in_buffer) == (40, 40)
    np.random.seed(6)
    ref_s = ref_buf.sample(BATCH)
    ref_state = np.random.get_state()
    np.random.seed(6)
    our_s = our_buf.sample(BATCH)
    assert rng_state_equal(ref_state, np.random.get_state())
    assert our_s.device == "cuda" and our_s["obs"].device.type == "cuda"
    check_training_reads(ref_s, our_s, device="cuda")
    assert_same_batch(ref_s, on_cpu(our_s), "cuda sample")
