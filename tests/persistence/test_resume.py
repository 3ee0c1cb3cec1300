"""Exact resume: save, continue M steps; load, continue the same M steps: identical samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xreplay
from tests.persistence.persistence_helpers import episodes, filled_buffer
from xreplay import EpisodeBuffer
from xreplay.compat.pymarl import EpisodeBatch, OneHot, ReplayBuffer


def _continue(buffer: EpisodeBuffer, steps: int) -> list[dict[str, torch.Tensor]]:
    """Alternate writes and samples (the buffer's own RNG draws) and return every sample."""
    out = []
    for i in range(steps):
        buffer.add(episodes(1 + i % 3, 100 + i), lengths=[1 + (i + j) % 5 for j in range(1 + i % 3)])
        sample = buffer.sample(4, truncate=True)
        out.append({"indices": sample.indices, **dict(sample)})
    return out


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_episode_buffer_resumes_exactly(tmp_path, mmap):
    buffer = filled_buffer(capacity=12, n=5, seed=3)
    _continue(buffer, 7)  # run a while, wrapping the ring
    xreplay.save(buffer, tmp_path / "ckpt")
    expected = _continue(buffer, 9)
    got = _continue(xreplay.load(tmp_path / "ckpt", mmap=mmap, kind=EpisodeBuffer), 9)
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _pymarl_batch(n: int, seed: int) -> EpisodeBatch:
    rng = np.random.default_rng(seed)
    batch = EpisodeBatch(_SCHEME, {"agents": 2}, n, 4, preprocess=_preprocess())
    batch.update({"obs": rng.standard_normal((n, 4, 2, 3)), "actions": rng.integers(0, 3, (n, 4, 2, 1))})
    return batch


_SCHEME = {"obs": {"vshape": 3, "group": "agents"}, "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long}}


def _preprocess():
    return {"actions": ("actions_onehot", [OneHot(out_dim=3)])}


def _continue_pymarl(buffer: ReplayBuffer, steps: int) -> list[EpisodeBatch]:
    out = []
    for i in range(steps):
        buffer.insert_episode_batch(_pymarl_batch(2, 50 + i))
        out.append(buffer.sample(3))
    return out


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
def test_pymarl_replay_buffer_resumes_exactly_with_numpy_global_rng(tmp_path, compact):
    buffer = ReplayBuffer(_SCHEME, {"agents": 2}, 9, 4, preprocess=_preprocess(), compact=compact)
    np.random.seed(11)
    buffer.insert_episode_batch(_pymarl_batch(4, 0))
    _continue_pymarl(buffer, 4)
    buffer.save(tmp_path / "ckpt")
    at_save = (buffer.buffer_index, buffer.episodes_in_buffer)
    expected = _continue_pymarl(buffer, 6)
    np.random.seed(999)  # the rest of the program moved the global generator on
    loaded = ReplayBuffer.load(tmp_path / "ckpt", restore_numpy_rng=True, scheme=_SCHEME)
    assert (loaded.buffer_index, loaded.episodes_in_buffer) == at_save
    got = _continue_pymarl(loaded, 6)
    for a, b in zip(expected, got, strict=True):
        for key in a.scheme:
            assert torch.equal(a[key], b[key]), key
