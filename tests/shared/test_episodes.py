"""SharedEpisodeBuffer: PyMARL-shaped episodes (per-agent groups, one-hot actions), refusals, processes, checkpoints."""

import multiprocessing

import numpy as np
import pytest
import torch

from xreplay.buffers import EpisodeBuffer
from xreplay.compat.pymarl import OneHot
from xreplay.errors import FieldShapeError, FieldValueError, PriorityError, UnknownFieldError
from xreplay.persistence import load
from xreplay.scheme import Field, Scheme
from xreplay.shared import SharedEpisodeBuffer

AGENTS, ACTIONS, T = 3, 5, 12


def pymarl_scheme():
    """Return the scheme of a PyMARL run: per-agent fields, actions one-hot encoded at read time."""
    scheme = {
        "state": {"vshape": 6},
        "obs": {"vshape": 4, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
        "runner": {"vshape": (2,), "dtype": torch.long, "episode_const": True},  # (writer, seq): who wrote it
        "actions_onehot": {"vshape": (ACTIONS,), "group": "agents"},
    }
    preprocess = {"actions": ("actions_onehot", [OneHot(out_dim=ACTIONS)])}
    return Scheme.from_pymarl(scheme, {"agents": AGENTS}, preprocess, compact=True)


def episodes(writer, seqs, t=T):
    """Return PyMARL episodes whose every value is a function of (writer, seq, step)."""
    seqs = np.asarray(seqs, dtype=np.int64)
    n = seqs.shape[0]
    base = torch.from_numpy(seqs * 1000 + writer).float()[:, None, None]
    step = torch.arange(t).float()[None, :, None]
    actions = ((torch.from_numpy(seqs)[:, None, None, None] + torch.arange(t)[None, :, None, None]
                + torch.arange(AGENTS)[None, None, :, None]) % ACTIONS).long()
    return {
        "state": (base + step).expand(n, t, 6).clone(),
        "obs": (base + step).unsqueeze(-1).expand(n, t, AGENTS, 4).clone(),
        "actions": actions,
        "avail_actions": torch.ones(n, t, AGENTS, ACTIONS, dtype=torch.int),
        "reward": (base + step) * 0.5,
        "terminated": (torch.arange(t) == t - 1).to(torch.uint8)[None, :, None].expand(n, t, 1).clone(),
        "runner": torch.stack([torch.full((n,), writer), torch.from_numpy(seqs)], dim=1),
    }


def consistent(batch):
    """Return whether every sampled episode's fields agree with its (writer, seq) and length."""
    for i in range(batch.batch_size):
        writer, seq = batch["runner"][i].tolist()
        length = int(batch.lengths[i])
        want = episodes(writer, [seq], batch.max_seq_length)
        for name in ("state", "obs", "reward", "actions"):
            got, expected = batch[name][i, :length], want[name][0, :length]
            if not torch.equal(got.to(expected.dtype), expected):
                return False
        onehot = torch.nn.functional.one_hot(want["actions"][0, :length, :, 0], ACTIONS).float()
        if not torch.equal(batch["actions_onehot"][i, :length], onehot):
            return False
        if batch["filled"][i, :, 0].tolist() != [s < length for s in range(batch.max_seq_length)]:
            return False
    return True


def write_episodes(handle, writer, total, seed):
    rng = np.random.default_rng(seed)
    seq = 0
    while seq < total:
        n = int(min(total - seq, rng.integers(1, 5)))
        lengths = rng.integers(1, T + 1, n)
        handle.add(episodes(writer, np.arange(seq, seq + n)), lengths=lengths)
        seq += n
    handle.close()


def test_pymarl_episodes_sample_like_a_local_episode_buffer():
    scheme = pymarl_scheme()
    local = EpisodeBuffer(scheme, 16, T, seed=0)
    data, lengths = episodes(0, np.arange(10)), [12, 3, 7, 12, 1, 5, 9, 12, 2, 11]
    local.add(data, lengths=lengths)
    with SharedEpisodeBuffer(scheme, 16, T, seed=0) as buf:
        assert buf.writer().add(data, lengths=lengths).tolist() == list(range(10))
        batch = buf.sample(6)
        expected = local.get(batch.indices)
        assert sorted(batch) == sorted(expected) and "actions_onehot" in batch and "filled" in batch
        for name in expected:
            assert batch[name].dtype == expected[name].dtype, name
            assert torch.equal(batch[name], expected[name]), name
        assert len(set(batch.indices.tolist())) == 6  # without replacement, as PyMARL samples
        short = buf.sample(10, truncate=True)
        assert short.max_seq_length == 12 and consistent(short)


def test_a_shorter_episode_overwriting_a_longer_one_leaves_no_stale_steps():
    with SharedEpisodeBuffer(pymarl_scheme(), 2, T, seed=0) as buf:
        buf.add(episodes(0, [0, 1]))
        buf.add(episodes(1, [0], t=4))  # 4 steps, over slot 0
        batch = buf.sample(2)
        row = int(np.flatnonzero(batch.indices.numpy() == 0)[0])
        assert consistent(batch) and batch["state"][row, 4:].abs().sum() == 0
        assert batch["actions_onehot"][row, 4:].sum() == 0


BAD = [
    pytest.param(lambda d: {**d, "bogus": d["reward"]}, None, UnknownFieldError, id="unknown_field"),
    pytest.param(lambda d: {**d, "actions_onehot": d["reward"]}, None, UnknownFieldError, id="derived_field"),
    pytest.param(lambda d: {k: v for k, v in d.items() if k != "obs"}, None, UnknownFieldError, id="missing_field"),
    pytest.param(lambda d: {**d, "obs": d["obs"][:, :, :2]}, None, FieldShapeError, id="agent_count"),
    pytest.param(lambda d: episodes(0, [0, 1], T + 1), None, FieldShapeError, id="too_many_steps"),
    pytest.param(lambda d: d, [3], FieldShapeError, id="lengths_count"),
    pytest.param(lambda d: d, [3, T + 1], FieldValueError, id="lengths_range"),
    pytest.param(lambda d: {**d, "actions": d["actions"] + ACTIONS}, None, FieldValueError, id="onehot_class"),
    pytest.param(lambda d: {**d, "terminated": d["terminated"].long() + 300}, None, FieldValueError, id="uint8_range"),
]


@pytest.mark.parametrize(("corrupt", "lengths", "error"), BAD)
def test_bad_episodes_raise_the_local_buffers_error_and_reserve_nothing(corrupt, lengths, error):
    scheme = pymarl_scheme()
    local = EpisodeBuffer(scheme, 8, T)
    bad = corrupt(episodes(0, [0, 1]))
    with pytest.raises(error):
        local.add(bad, lengths=lengths)
    with SharedEpisodeBuffer(scheme, 8, T) as buf:
        with pytest.raises(error):
            buf.writer().add(bad, lengths=lengths)
        assert buf.stats()["reserved"] == 0


def test_episode_priorities():
    scheme = Scheme({"reward": Field((1,))})
    with SharedEpisodeBuffer(scheme, 8, 4, sampler="prioritized", seed=0) as buf:
        writer = buf.writer()
        with pytest.raises(PriorityError):
            writer.add({"reward": torch.ones(2, 4, 1)}, priorities=[1.0, -2.0])
        writer.add({"reward": torch.arange(4.0).view(4, 1, 1).expand(4, 4, 1)}, priorities=[1.0, 1.0, 1.0, 0.0])
        batch = buf.sample(400)
        assert batch.weights.shape == (400,) and batch.generations.shape == (400,)
        counts = np.bincount(batch.indices.numpy(), minlength=4)
        assert counts[3] < counts[:3].min() / 10  # priority 0 (plus epsilon) is almost never drawn
        assert buf.update_priorities(batch, np.ones(400)) == 0
        with pytest.raises(ValueError, match="replacement"):
            buf.sample(2, replace=False)


def test_runner_processes_write_whole_episodes():
    ctx = multiprocessing.get_context("fork")
    with SharedEpisodeBuffer(pymarl_scheme(), 400, T, sampler="prioritized", seed=0) as buf:
        procs = [ctx.Process(target=write_episodes, args=(buf.writer(), w, 100, w)) for w in range(4)]
        for p in procs:
            p.start()
        checked = 0
        while any(p.is_alive() for p in procs):
            if len(buf):
                batch = buf.sample(8)
                assert consistent(batch)
                buf.update_priorities(batch, np.ones(8))
                checked += 1
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        local = buf.snapshot()
        runners = local.get(np.arange(len(local)))["runner"].tolist()
        assert len(local) == 400 and sorted(map(tuple, runners)) == [(w, s) for w in range(4) for s in range(100)]


@pytest.mark.parametrize("sampler", ["uniform", "prioritized"])
def test_save_and_load_keep_episodes_and_priorities(tmp_path, sampler):
    scheme = pymarl_scheme()
    with SharedEpisodeBuffer(scheme, 8, T, sampler=sampler, seed=3) as buf:
        given = np.arange(10) + 1.0 if sampler == "prioritized" else None
        buf.add(episodes(0, np.arange(10)), lengths=np.arange(10) % T + 1, priorities=given)
        buf.save(tmp_path / "ckpt")
        before = buf.snapshot()
    again = load(tmp_path / "ckpt", name=None)
    try:
        assert isinstance(again, SharedEpisodeBuffer) and len(again) == 8
        after = again.snapshot()
        for name, value in before.get(np.arange(8)).items():
            assert torch.equal(after.get(np.arange(8))[name], value), name
        if sampler == "prioritized":  # slot j holds the j-th oldest episode, with the priority it was given
            seqs = after.get(np.arange(8))["runner"][:, 1].numpy()
            np.testing.assert_allclose(again.sampler.priorities(np.arange(8)), (seqs + 1.0 + 1e-6) ** 0.6)
        batch = again.sample(4)
        assert consistent(batch)
    finally:
        again.close()
