"""SharedTransitionBuffer in one process: writes, samples, priorities, refusals, checkpoints."""

import os
import pickle
import threading

import numpy as np
import pytest
import torch

import xreplay
from tests.shared.helpers import SPEC, items, torn
from xreplay.buffers import TransitionBuffer
from xreplay.errors import (
    BufferClosedError,
    FieldShapeError,
    FieldTypeError,
    FieldValueError,
    InsufficientDataError,
    PriorityError,
    UnknownFieldError,
)
from xreplay.samplers import PrioritizedSampler
from xreplay.shared import SharedTransitionBuffer


@pytest.fixture
def make():
    made = []

    def factory(capacity=64, **options):
        options.setdefault("seed", 0)
        if "example" not in options:
            options.setdefault("fields", SPEC)
        buf = SharedTransitionBuffer(capacity, **options)
        made.append(buf)
        return buf

    yield factory
    for buf in made:
        buf.close()


def all_items(buf):
    """Return every published item as numpy arrays, oldest first (through a snapshot)."""
    local = buf.snapshot()
    return {k: v.numpy() for k, v in local.gather(np.arange(len(local))).items()}


def test_extend_then_sample_returns_whole_items(make):
    buf = make(64)
    writer = buf.writer()
    slots = writer.extend(items(3, np.arange(10)))
    assert slots.tolist() == list(range(10))
    assert writer.add({k: v[0] for k, v in items(3, [10]).items()}) == 10
    batch = buf.sample(200)
    assert len(buf) == 11 and torn(batch) == 0
    assert set(batch["seq"].tolist()) <= set(range(11)) and batch["obs"].dtype == torch.float32
    assert batch.weights is None and batch.generations is None


def test_fields_from_an_example_with_nested_dicts(make):
    buf = make(8, example={"obs": np.zeros(3, np.float32), "info": {"rew": 0.0, "done": False}})
    buf.extend({"obs": np.ones((2, 3), np.float32), "info": {"rew": np.ones(2), "done": np.array([True, False])}})
    batch = buf.sample(4)
    assert sorted(batch) == ["info/done", "info/rew", "obs"]
    assert batch["info/rew"].dtype == torch.float32 and batch["info/done"].dtype == torch.bool


def test_ring_keeps_the_newest_items_and_wraps(make):
    buf = make(8)
    writer = buf.writer()
    for start in range(0, 21, 3):
        writer.extend(items(0, np.arange(start, start + 3)))
    got = all_items(buf)
    assert got["seq"].tolist() == list(range(13, 21))  # oldest first
    writer.extend(items(1, np.arange(100)))  # larger than the ring: its last 8 items are kept
    assert sorted(all_items(buf)["seq"].tolist()) == list(range(92, 100))


BAD_WRITES = [
    pytest.param(lambda b: {k: v for k, v in b.items() if k != "tag"}, UnknownFieldError, id="missing_field"),
    pytest.param(lambda b: {**b, "extra": b["seq"]}, UnknownFieldError, id="extra_field"),
    pytest.param(lambda b: {**b, "obs": b["obs"][:, :5]}, FieldShapeError, id="item_shape"),
    pytest.param(lambda b: {**b, "seq": b["seq"][:2]}, FieldShapeError, id="batch_sizes_differ"),
    pytest.param(lambda b: {**b, "seq": b["seq"].astype(np.float32)}, FieldValueError, id="float_into_int"),
    pytest.param(lambda b: {**b, "writer": np.full(4, 2**40)}, FieldValueError, id="int_out_of_range"),
    pytest.param(lambda b: {**b, "obs": np.array([["a"] * 8] * 4)}, FieldTypeError, id="strings"),
]


@pytest.mark.parametrize(("corrupt", "error"), BAD_WRITES)
def test_bad_write_raises_the_local_buffers_error_and_reserves_nothing(make, corrupt, error):
    buf = make(16)
    writer = buf.writer()
    writer.extend(items(0, np.arange(4)))
    before = buf.stats()
    bad = corrupt(items(0, np.arange(4, 8)))
    local = TransitionBuffer(16)
    local.extend(items(0, np.arange(4)))
    with pytest.raises(error) as expected:
        local.extend(bad)
    with pytest.raises(error) as raised:
        writer.extend(bad)
    assert str(raised.value) == str(expected.value)
    assert buf.stats()["reserved"] == before["reserved"] == 4 and len(buf) == 4


def test_bad_priorities_raise_priority_error_and_change_nothing(make):
    buf = make(16, sampler="prioritized")
    writer = buf.writer()
    writer.extend(items(0, np.arange(4)), priorities=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(PriorityError):
        writer.extend(items(0, np.arange(4, 6)), priorities=[1.0, np.nan])
    with pytest.raises(PriorityError):
        writer.add({k: v[0] for k, v in items(0, [6]).items()}, priority=-1.0)
    with pytest.raises(FieldShapeError):
        writer.extend(items(0, np.arange(4, 6)), priorities=[1.0])
    assert buf.stats()["reserved"] == 4
    batch = buf.sample(8)
    tree = buf.sampler.priorities(np.arange(4)).copy()
    with pytest.raises(PriorityError):
        buf.update_priorities(batch, [1.0] * 7 + [np.inf])
    np.testing.assert_array_equal(buf.sampler.priorities(np.arange(4)), tree)


def test_writer_priorities_and_max_priority_for_the_rest(make):
    sampler = PrioritizedSampler(8, alpha=1.0, beta=1.0, epsilon=0.0)
    buf = make(8, sampler=sampler)
    buf.extend(items(0, np.arange(3)), priorities=[1.0, 1.0, 8.0])
    buf.extend(items(0, np.arange(3, 4)))  # no priority given: the largest so far (Ape-X)
    assert len(buf) == 4  # the learner learns of new items when it looks (len, sample, stats)
    np.testing.assert_allclose(sampler.priorities(np.arange(4)), [1.0, 1.0, 8.0, 8.0])
    counts = np.bincount(buf.sample(18000).indices, minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [1 / 18, 1 / 18, 8 / 18, 8 / 18], atol=0.015)


def test_update_priorities_skips_overwritten_items(make):
    buf = make(4, sampler="prioritized")
    buf.extend(items(0, np.arange(4)))
    batch = buf.sample(16)
    assert buf.update_priorities(batch, np.ones(16)) == 0
    buf.extend(items(1, np.arange(2)))  # overwrites slots 0 and 1
    stale = int(np.isin(batch.indices, [0, 1]).sum())
    assert buf.update_priorities(batch.indices, np.full(16, 5.0), batch.generations) == stale
    with pytest.raises(FieldValueError):
        buf.update_priorities(batch.indices[:3], [1.0, 1.0, 1.0])  # not the last sample, no generations
    with pytest.raises(TypeError):
        make(4).update_priorities([0], [1.0], "current")


def test_empty_buffer_refuses_to_sample(make):
    with pytest.raises(InsufficientDataError):
        make(4).sample(2)


def test_closed_handle_and_closed_buffer_raise_typed_errors(make):
    buf = make(8)
    writer, never_used = buf.writer(), buf.writer()
    writer.extend(items(0, np.arange(2)))
    writer.close()
    with pytest.raises(BufferClosedError):
        writer.extend(items(0, np.arange(2)))
    path = buf.path
    buf.close()
    with pytest.raises(BufferClosedError):
        never_used.extend(items(0, np.arange(2)))
    with pytest.raises(BufferClosedError):
        buf.sample(1)
    with pytest.raises(BufferClosedError):
        buf.writer()
    assert not os.path.exists(path)


def test_attached_handle_fails_once_the_buffer_closes(make):
    buf = make(8)
    writer = buf.writer()
    writer.extend(items(0, np.arange(2)))
    buf.close()
    assert writer.closed
    with pytest.raises(BufferClosedError):
        writer.add({k: v[0] for k, v in items(0, [2]).items()})


def test_handles_pickle_and_buffers_do_not(make):
    buf = make(8)
    copy = pickle.loads(pickle.dumps(buf.writer()))
    copy.extend(items(5, np.arange(3)))
    assert len(buf) == 3
    with pytest.raises(TypeError, match="writer"):
        pickle.dumps(buf)


@pytest.mark.parametrize(
    "per_thread",
    [pytest.param(800, id="ci"), pytest.param(25_000, id="full", marks=pytest.mark.skipif(
        not os.environ.get("XREPLAY_SLOW"), reason="full-size run: set XREPLAY_SLOW=1"))],
)
def test_threads_share_one_handle_and_the_learner(make, per_thread):
    buf = make(4 * per_thread, sampler="prioritized")
    writer = buf.writer()
    errors, torn_seen = [], []

    def write(w):
        try:
            for start in range(0, per_thread, 16):
                writer.extend(items(w, np.arange(start, min(start + 16, per_thread))))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if len(buf):
            batch = buf.sample(64)
            torn_seen.append(torn(batch))
            buf.update_priorities(batch, np.ones(64))
    for t in threads:
        t.join()
    got = all_items(buf)
    pairs = set(zip(got["writer"].tolist(), got["seq"].tolist(), strict=True))
    assert not errors and sum(torn_seen) == 0
    assert len(got["seq"]) == len(pairs) == 4 * per_thread
    assert pairs == {(w, s) for w in range(4) for s in range(per_thread)}


@pytest.mark.parametrize("sampler", ["uniform", "prioritized"])
def test_save_and_load_keep_items_priorities_and_draws(make, tmp_path, sampler):
    buf = make(16, sampler=sampler)
    buf.extend(items(0, np.arange(20)), priorities=np.arange(20) + 1.0 if sampler == "prioritized" else None)
    if sampler == "prioritized":
        batch = buf.sample(8)
        buf.update_priorities(batch, np.full(8, 3.0))
    buf.save(tmp_path / "ckpt")
    local = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)  # the existing format: a local buffer opens it too
    assert len(local) == 16 and local.gather(np.arange(16))["seq"].tolist() == list(range(4, 20))
    again = SharedTransitionBuffer.load(tmp_path / "ckpt")
    try:
        assert len(again) == 16 and all_items(again)["seq"].tolist() == list(range(4, 20))
        if sampler == "prioritized":
            np.testing.assert_allclose(again.sampler.priorities(np.arange(16)), local.sampler.priorities(np.arange(16)))
            mine = buf.snapshot().sampler.priorities(np.arange(16))
            np.testing.assert_allclose(mine, again.sampler.priorities(np.arange(16)))
            assert again.sample(32).indices.tolist() == local.sample(32).indices.tolist()
    finally:
        again.close()


def test_a_scalar_where_a_batch_belongs_is_refused(make):
    buf = make(8, fields={"a": ((), torch.float32), "b": ((), torch.float32)})
    with pytest.raises(FieldShapeError, match="scalar"):
        buf.extend({"a": np.zeros(2, np.float32), "b": np.float32(1.0)})
    with pytest.raises(FieldShapeError, match="scalar"):
        buf.extend({"a": np.float32(1.0), "b": np.zeros(2, np.float32)})
    assert buf.stats()["reserved"] == 0


def test_from_a_local_buffer_that_stores_next_observations_once():
    local = TransitionBuffer(8, next_obs_from="obs")
    local.extend({"obs": np.arange(5.0, dtype=np.float32), "next_obs": np.arange(1.0, 6.0, dtype=np.float32)})
    with SharedTransitionBuffer.from_buffer(local, seed=0) as buf:
        got = buf.snapshot().gather(np.arange(5))
        assert got["next_obs"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] and got["obs"].tolist() == [0, 1, 2, 3, 4]


def test_copies_of_a_prioritized_buffer_keep_its_tree_back_end():
    from xreplay import PrioritizedSampler

    local = TransitionBuffer(8, sampler=PrioritizedSampler(8, alpha=0.7, beta=0.5, backend="numpy"))
    local.extend({"obs": np.arange(5.0, dtype=np.float32)})
    with SharedTransitionBuffer.from_buffer(local, seed=0) as buf:
        assert buf.sampler.tree.backend == "numpy" and buf.sampler.alpha == 0.7
        assert buf.snapshot().sampler.tree.backend == "numpy"


def test_the_learner_surface_takes_tensors_and_says_what_it_holds(make):
    buf = make(8, sampler="prioritized")
    buf.extend(items(0, np.arange(4)))
    assert repr(buf).startswith("SharedTransitionBuffer(4/8, sampler=prioritized")
    batch = buf.sample(4)
    stale = buf.update_priorities(torch.from_numpy(batch.indices), torch.full((4,), 3.0), batch.generations)
    assert stale == 0
    np.testing.assert_allclose(buf.sampler.priorities(batch.indices), (3.0 + buf.sampler.epsilon) ** buf.sampler.alpha)
    buf.close()
    assert "closed" in repr(buf)
