"""A transition shard's draw read into its reply: the bytes of the buffer's own sample, memory reused safely."""

import numpy as np
import pytest

from xreplay import EpisodeBuffer, Field, Scheme, TransitionBuffer
from xreplay.distributed import rows
from xreplay.distributed.packing import pack, unpack
from xreplay.distributed.protocol import index_head
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
    meta = {"indices": batch.indices}
    if isinstance(buffer.sampler, PrioritizedSampler):
        meta["generations"] = batch.generations
        meta["leaves"] = buffer.sampler.priorities(batch.indices)
    data, (fields, meta_layout) = pack({name: value.numpy() for name, value in batch.items()}, meta)
    return data.tobytes(), fields, meta_layout


@pytest.fixture(params=["kernel", "torch"])
def path(request, monkeypatch):
    """Read with the numba kernel, or with torch and numpy (as without numba)."""
    if request.param == "kernel" and rows._kernel() is None:
        pytest.skip("numba is not installed or disabled")
    if request.param == "torch":
        monkeypatch.setattr(rows, "_kernel", lambda: None)
    return request.param


@pytest.mark.parametrize("sampler", ["prioritized", "uniform"])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_a_draw_is_byte_for_byte_the_buffers_own_sample_packed(sampler, n, path):
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
    assert (reader._plans[n].tables is not None) == (path == "kernel")  # the path named ran


@pytest.mark.parametrize(
    "data",
    [
        {"obs": np.arange(40.0, dtype=np.float32).reshape(20, 2)},  # one block read in 4-byte words
        {"flag": np.arange(20) % 3 == 0, "small": np.arange(20, dtype=np.int8).reshape(20, 1, 1)},  # bytes
        {"a": np.arange(60, dtype=np.float16).reshape(20, 3), "b": np.arange(20, dtype=np.float16)},  # 6-byte rows
    ],
    ids=["float32", "bool-and-int8", "float16-odd-rows"],
)
def test_every_block_layout_reads_the_same_bytes(data, path):
    ours, theirs = (TransitionBuffer(32, sampler="prioritized", seed=5) for _ in range(2))
    for buffer in (ours, theirs):
        buffer.extend(data)
        buffer.extend(data)  # wraps around the ring
    reader = RowReader.of(ours)
    for _ in range(2):
        got, fields, meta = reader.draw(50)
        assert (got.tobytes(), fields, meta) == _reference(theirs, 50)


def test_a_shards_head_makes_the_slots_global_indices(path):
    ours, theirs = (TransitionBuffer(40, sampler="prioritized", seed=1) for _ in range(2))
    for buffer in (ours, theirs):
        buffer.extend(_data(30))
    head = index_head(5, 3)
    data, _fields, meta = RowReader.of(ours).draw(20, head)
    np.testing.assert_array_equal(unpack(data, meta)["indices"], theirs.sample(20).indices | head)


@pytest.mark.skipif(rows._kernel() is None, reason="numba is not installed or disabled")
@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"indices": np.array([0, 10])}, id="slot_past_the_capacity"),
        pytest.param({"indices": np.array([-1, 0])}, id="negative_slot"),
        pytest.param({"fields": np.array([[0, 5, 0]])}, id="field_wider_than_its_row"),
        pytest.param({"fields": np.array([[0, 4, 60]])}, id="field_past_the_reply"),
        pytest.param({"meta": np.array([60, -1, -1])}, id="slots_past_the_reply"),
        pytest.param({"leaves": np.zeros(5)}, id="fewer_leaves_than_slots"),
    ],
)
def test_the_kernel_refuses_a_layout_or_slot_out_of_bounds_before_writing(change):
    args = {
        "block": np.arange(40, dtype=np.uint8), "row_words": 4, "capacity": 10,
        "fields": np.array([[0, 4, 0]]), "indices": np.array([1, 9]), "head": 0,
        "generations": np.zeros(2, np.int32), "leaves": np.zeros(10), "meta": np.array([8, 24, 32]),
        "out": np.full(64, 7, np.uint8),
    }  # fmt: skip
    rows._kernel().read_rows(**args)
    np.testing.assert_array_equal(args["out"][:8], [4, 5, 6, 7, 36, 37, 38, 39])  # rows 1 and 9 of the block
    args.update(change, out=np.full(64, 7, np.uint8))
    with pytest.raises(IndexError):
        rows._kernel().read_rows(**args)
    assert (args["out"] == 7).all()


def test_columns_whose_items_are_not_contiguous_are_copied_by_torch():
    import torch

    column = torch.zeros(3, 10).t()  # [10, 3], each item strided
    assert rows._blocks([("x", column, np.dtype(np.float32))]) is None
    assert rows._blocks([("x", torch.zeros(10, 3), np.dtype(np.float32))]) is not None


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
    assert unpack(first, meta)["indices"].shape == (16,)


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


def test_a_field_of_zero_size_items_samples_through_a_client():
    from xreplay.distributed import InProcessBackend, ReplayClient

    data = {"obs": np.arange(24, dtype=np.float32).reshape(8, 3), "mask": np.zeros((8, 0), np.float32)}
    client = ReplayClient(InProcessBackend(lambda: TransitionBuffer(64, seed=0), num_shards=2), seed=0)
    client.extend(data)
    batch = client.sample(4)
    assert tuple(batch["mask"].shape) == (4, 0) and tuple(batch["obs"].shape) == (4, 3)
    assert set(batch["obs"][:, 0].tolist()) <= set(data["obs"][:, 0].tolist())
