"""A shard's reply in one packed buffer, and the client's merge of the shards' rows: the arrays come back exactly."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreplay.distributed.packing import BlockPool, merge, pack, rows, unpack
from xreplay.distributed.protocol import decode_updates, encode_updates

DTYPES = [np.bool_, np.uint8, np.int16, np.float32, np.int64, np.float64]


@given(
    kinds=st.lists(st.sampled_from(DTYPES), min_size=1, max_size=6),
    n=st.integers(0, 9),
    width=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_returns_every_array_bit_for_bit_and_aligned(kinds, n, width, seed):
    rng = np.random.default_rng(seed)
    fields = {f"f{i}": (rng.random((n, width)) * 100).astype(kind) for i, kind in enumerate(kinds)}
    meta = {"slots": rng.integers(0, 1 << 40, n), "lengths": rng.integers(0, 5, n).astype(np.int32)}
    data, (field_layout, meta_layout) = pack(fields, meta)
    assert data.dtype == np.uint8 and data.nbytes == sum(a.nbytes for a in [*fields.values(), *meta.values()])
    for original, layout in ((fields, field_layout), (meta, meta_layout)):
        back = unpack(data, layout)
        assert list(back) == list(original)  # names, in order, kept apart from the other group's
        for name, array in original.items():
            assert back[name].dtype == array.dtype and back[name].shape == array.shape
            np.testing.assert_array_equal(back[name], array)
            if back[name].size:
                assert back[name].ctypes.data % array.dtype.itemsize == 0  # aligned for numpy and torch
                torch.from_numpy(back[name].copy())
    assert rows(meta_layout, "slots") == n and rows(meta_layout, "missing") == 0


def test_unpacked_arrays_of_a_received_buffer_are_read_only_views():
    data, (layout,) = pack({"obs": np.arange(6.0).reshape(3, 2)})
    received = np.frombuffer(data.tobytes(), dtype=np.uint8)  # what another process gets: read-only
    obs = unpack(received, layout)["obs"]
    assert not obs.flags.writeable and obs.base is not None
    with pytest.raises(ValueError, match="read-only"):
        obs[0, 0] = 1.0


@given(sizes=st.lists(st.integers(0, 7), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_merge_takes_each_position_from_the_row_the_source_names(sizes, seed):
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    source = rng.permutation(total)
    parts = {
        "obs": [rng.random((size, 2, 3)).astype(np.float32) for size in sizes],
        ("meta", "slots"): [rng.integers(0, 99, size) for size in sizes],
        "done": [rng.random(size) > 0.5 for size in sizes],
    }
    merged = merge(parts, source, total)
    for key, arrays in parts.items():
        expected = np.concatenate(arrays)[source]
        np.testing.assert_array_equal(merged[key], expected)
        assert merged[key].dtype == arrays[0].dtype and merged[key].shape == expected.shape
        assert merged[key].flags.writeable and merged[key].flags.c_contiguous


def test_block_pool_hands_out_again_only_memory_nothing_uses():
    pool = BlockPool(keep=2)
    first = pool.take(1000)
    tensor = torch.from_numpy(first[100:200].view(np.float32))  # a batch the learner keeps
    del first
    second = pool.take(1000)
    assert not np.shares_memory(second, tensor.numpy())  # in use: a new block
    second[:] = 7
    del second
    third = pool.take(900)  # the second block is free again: reused, not the one the tensor holds
    assert third[0] == 7 and not np.shares_memory(third, tensor.numpy())
    del tensor
    assert len(pool.blocks) == 2


@pytest.mark.parametrize("shards", [1, 2])
def test_batches_a_learner_keeps_are_never_overwritten_by_later_requests(shards):
    from tests.distributed.helpers import transitions
    from xreplay import TransitionBuffer
    from xreplay.distributed import ClientOptions, InProcessBackend, ReplayClient

    backend = InProcessBackend(lambda: TransitionBuffer(64, sampler="prioritized", seed=0), num_shards=shards)
    client = ReplayClient(backend, ClientOptions(prefetch=1, batches_per_call=3), seed=0)
    client.extend(transitions(64))
    kept = [client.sample(16) for _ in range(4)]
    copies = [(batch["item"].clone(), batch.weights.clone(), batch.indices.copy()) for batch in kept]
    for _ in range(60):  # later requests reuse only the memory of batches that are gone
        client.sample(16)
    for batch, (items, weights, indices) in zip(kept, copies, strict=True):
        assert torch.equal(batch["item"], items) and torch.equal(batch.weights, weights)
        np.testing.assert_array_equal(batch.indices, indices)


@given(n=st.integers(0, 40), with_generations=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_a_priority_update_travels_as_bytes_and_comes_back_exactly_and_writable(n, with_generations, seed):
    rng = np.random.default_rng(seed)
    slots, priorities = rng.integers(0, 1 << 40, n), rng.random(n) * 10
    generations = rng.integers(0, 1 << 31, n).astype(np.int32) if with_generations else None
    data = encode_updates(slots, priorities, generations)
    assert isinstance(data, bytes)
    back_slots, back_priorities, back_generations = decode_updates(data)
    np.testing.assert_array_equal(back_slots, slots)
    np.testing.assert_array_equal(back_priorities, priorities)  # bit for bit: float64 throughout
    if generations is None:
        assert back_generations is None
    else:
        np.testing.assert_array_equal(back_generations, generations)
    assert back_slots.flags.writeable and back_priorities.flags.writeable


def test_a_large_priority_update_travels_as_one_array():
    slots, priorities, generations = np.arange(5000), np.linspace(0.0, 1.0, 5000), np.ones(5000, np.int32)
    data = encode_updates(slots, priorities, generations)  # 120 KB: one array, not bytes
    assert isinstance(data, np.ndarray) and data.dtype == np.uint8
    received = np.frombuffer(data.tobytes(), dtype=np.uint8)  # read-only, as another process gets it
    for back, sent in zip(decode_updates(received), (slots, priorities, generations), strict=True):
        np.testing.assert_array_equal(back, sent)
        assert back.flags.writeable


@pytest.mark.parametrize("data", [b"", b"\x01", np.int64(3).tobytes() + b"\x00" * 10, np.int64(-1).tobytes()])
def test_bytes_that_are_no_update_batch_are_refused(data):
    with pytest.raises(ValueError, match="not an encoded priority-update batch"):
        decode_updates(data)
