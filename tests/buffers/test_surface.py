"""One buffer surface: every buffer kind x sampler has len, capacity, repr, clear(), stats() and the same sampling."""

import numpy as np
import pytest
import torch

import xreplay
from xreplay import (
    EpisodeBuffer,
    Field,
    InsufficientDataError,
    PrioritizedSampler,
    PrioritizedSequenceSampler,
    Scheme,
    SequenceSampler,
    TransitionBuffer,
    UniformSampler,
)

CAPACITY = 16


def _episode_buffer(sampler):
    return EpisodeBuffer(Scheme({"reward": Field((1,))}), capacity=CAPACITY, max_seq_length=4, seed=0, sampler=sampler)


def _write(buffer, n, start=0):
    if isinstance(buffer, EpisodeBuffer):
        buffer.add({"reward": torch.arange(start, start + 4 * n, dtype=torch.float32).reshape(n, 4, 1)})
    else:
        done = np.zeros(n, np.float32)
        done[4 - 1 :: 4] = 1
        buffer.extend({"obs": np.arange(start, start + n, dtype=np.float32), "done": done})


KINDS = [
    pytest.param(lambda: _episode_buffer("uniform"), False, id="episodes-uniform"),
    pytest.param(lambda: _episode_buffer("prioritized"), True, id="episodes-prioritized"),
    pytest.param(lambda: TransitionBuffer(CAPACITY, seed=0), False, id="transitions-uniform"),
    pytest.param(lambda: TransitionBuffer(CAPACITY, sampler="prioritized", seed=0), True, id="transitions-prioritized"),
    pytest.param(
        lambda: TransitionBuffer(CAPACITY, sampler=SequenceSampler(2, end_fields=("done",)), seed=0),
        False,
        id="transitions-sequences",
    ),
    pytest.param(
        lambda: TransitionBuffer(
            CAPACITY, sampler=PrioritizedSequenceSampler(SequenceSampler(2, end_fields=("done",))), seed=0
        ),
        True,
        id="transitions-prioritized-sequences",
    ),
]


@pytest.mark.parametrize(("make", "prioritized"), KINDS)
def test_every_buffer_has_the_same_surface(make, prioritized):
    buffer = make()
    assert len(buffer) == 0 and buffer.capacity == CAPACITY
    _write(buffer, 8)
    stats = buffer.stats()
    assert stats["size"] == len(buffer) > 0 and stats["capacity"] == CAPACITY and stats["fill"] == len(buffer) / 16
    assert stats["inserts"] == len(buffer) and stats["samples"] == 0
    sample = buffer.sample(4)
    assert buffer.stats()["samples"] == 1 and buffer.stats()["sampled"] == 4
    assert (sample.weights is not None) == prioritized and (sample.generations is not None) == prioritized
    assert type(buffer).__name__ in repr(buffer) and type(buffer.sampler).__name__ in repr(buffer)
    if prioritized:
        assert {"stale_updates", "priority_min", "priority_max", "priority_sum"} <= set(buffer.stats())
        shape = (4, 2) if sample.indices.ndim == 2 else (4,)
        assert buffer.update_priorities(sample, np.ones(shape)) == 0
    else:
        with pytest.raises(TypeError, match="prioritized|Prioritized"):
            buffer.update_priorities(sample, np.ones(4))
    moved = sample.to("cpu", non_blocking=True)
    assert list(moved) == list(sample)


@pytest.mark.parametrize(("make", "prioritized"), KINDS)
def test_clear_forgets_everything_and_old_samples_go_stale(make, prioritized):
    buffer = make()
    _write(buffer, 8)
    sample = buffer.sample(4)
    buffer.clear()
    assert len(buffer) == 0 and buffer.stats()["inserts"] == 0
    with pytest.raises(InsufficientDataError):
        buffer.sample(1)
    _write(buffer, 8, start=100)
    again = buffer.sample(4)
    field = "reward" if isinstance(buffer, EpisodeBuffer) else "obs"
    assert float(again[field].min()) >= 100  # only the new items come out
    if prioritized:
        shape = (4, 2) if sample.indices.ndim == 2 else (4,)
        assert buffer.update_priorities(sample, np.ones(shape)) > 0  # the items sampled before the clear are gone


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _episode_buffer("prioritized"), id="episodes"),
        pytest.param(lambda: TransitionBuffer(CAPACITY, sampler="prioritized", seed=0), id="transitions"),
    ],
)
def test_a_save_after_clear_and_new_writes_restores_the_new_state(tmp_path, make):
    buffer = make()
    _write(buffer, 8)
    xreplay.save(buffer, tmp_path / "ckpt")
    buffer.clear()
    _write(buffer, 8, start=100)
    report = xreplay.save(buffer, tmp_path / "ckpt")
    assert not report.incremental  # a clear makes the ring deltas meaningless
    loaded = xreplay.load(tmp_path / "ckpt")
    assert len(loaded) == len(buffer) and loaded.stats()["inserts"] == buffer.stats()["inserts"]
    a, b = buffer.sample(6), loaded.sample(6)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_sampler_of_another_capacity_is_refused_naming_both():
    with pytest.raises(ValueError, match="holds 8 slots but the buffer has capacity 16"):
        TransitionBuffer(16, sampler=PrioritizedSampler(8))
    with pytest.raises(ValueError, match="holds 8 slots but the buffer has capacity 16"):
        _episode_buffer(PrioritizedSampler(8))


def test_something_that_is_not_a_sampler_is_refused():
    with pytest.raises(TypeError, match="'uniform', 'prioritized' or a sampler object"):
        TransitionBuffer(16, sampler=object())


def test_replacement_is_named_and_defaulted_the_same_way_in_both_buffers():
    episodes, transitions = _episode_buffer("uniform"), TransitionBuffer(CAPACITY, seed=0)
    _write(episodes, 4)
    _write(transitions, 4)
    assert episodes.sample(10).batch_size == 10 and transitions.sample(10).indices.shape == (10,)  # with replacement
    for buffer in (episodes, transitions):
        with pytest.raises(InsufficientDataError, match="sample size 10 exceeds the 4 stored"):
            buffer.sample(10, replace=False)
    without = TransitionBuffer(CAPACITY, sampler=UniformSampler(replace=False), seed=0)
    _write(without, 4)
    assert sorted(without.sample(4).indices.tolist()) == [0, 1, 2, 3]
    prioritized = TransitionBuffer(CAPACITY, sampler="prioritized", seed=0)
    _write(prioritized, 4)
    with pytest.raises(TypeError, match="draws with replacement"):
        prioritized.sample(2, replace=False)
