"""A transition shard's draw read into its reply: the bytes of the buffer's own sample, memory reused safely."""

import numpy as np
import pytest

from xreplay import EpisodeBuffer, Field, Scheme, TransitionBuffer
from xreplay.distributed.packing import pack, unpack
from xreplay.distributed.rows import RowReader
from xreplay.errors import InsufficientDataError
from xreplay.samplers import PrioritizedSampler, SequenceSampler


def _data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.random((n, 2, 3), dtype=np.float32),
        "act": rng.integers(0, 5, n),
        "done": rng.random(n) < 0.1,
        "rew": rng.random(n).astype(np.float16),
        "nested": {"value": rng.random(n)},
    }


def _reference(buffer: TransitionBuffer, n: int) -> tuple[bytes, tuple, tuple]:
    """Return what the shard sent before RowReader: the buffer's own sample, packed."""
    batch = buffer.sample(n)
    meta = {"slots": batch.indices}
    if isinstance(buffer.sampler, PrioritizedSampler):
        meta["generations"] = batch.generations
        meta["leaves"] = buffer.sampler.priorities(batch.indices)
    data, (fields, meta_layout) = pack({name: value.numpy() for name, value in batch.items()}, meta)
    return data.tobytes(), fields, meta_layout


@pytest.mark.parametrize("sampler", ["prioritized", "uniform"])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_a_draw_is_byte_for_byte_the_buffers_own_sample_packed(sampler, n):
    ours, theirs = (TransitionBuffer(100, sampler=sampler, seed=3) for _ in range(2))
    for buffer in (ours, theirs):
        buffer.extend(_data(60))
        if sampler == "prioritized":
            buffer.update_priorities(np.arange(60), np.linspace(0.1, 5.0, 60), "current")
    reader = RowReader.of(ours)
    assert reader is not None and reader.serves()
    for _ in range(3):  # the same generator, the same draws, call after call
        data, fields, meta = reader.draw(n)
        assert (data.tobytes(), fields, meta) == _reference(theirs, n)


def test_a_reply_still_held_is_never_overwritten_by_the_next_draw():
    buffer = TransitionBuffer(50, sampler="prioritized", seed=0)
    buffer.extend(_data(50))
    reader = RowReader.of(buffer)
    first, fields, meta = reader.draw(16)
    kept = first.copy()
    replies = [reader.draw(16)[0] for _ in range(6)]  # more than the pool keeps, all alive
    np.testing.assert_array_equal(first, kept)
    assert all(not np.shares_memory(first, other) for other in replies)
    del replies
    again = reader.draw(16)[0]  # memory nobody holds is reused
    assert any(np.shares_memory(again, block) for block in reader.pool.blocks)
    assert unpack(first, meta)["slots"].shape == (16,)


def test_an_empty_shard_refuses_a_draw_as_the_buffer_does():
    reader = RowReader.of(TransitionBuffer(8, sampler="prioritized"))
    with pytest.raises(InsufficientDataError, match="empty buffer"):
        reader.draw(4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransitionBuffer(8, sampler=SequenceSampler(2)),
        lambda: TransitionBuffer(8, next_obs_from="obs"),
        lambda: EpisodeBuffer(Scheme({"obs": Field((2,))}), 4, 3),
    ],
    ids=["windows", "next-obs-stored-once", "episodes"],
)
def test_buffers_a_reader_cannot_serve_are_sampled_by_the_buffer(make):
    assert RowReader.of(make()) is None
