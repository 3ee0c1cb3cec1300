"""ReplayClient over the in-process backend: writes, routing, updates, faults, limits, checkpoints."""

import sys

import numpy as np
import pytest
import torch

from tests.distributed.helpers import shards_of, transitions
from xreplay import EpisodeBuffer, Field, MinSize, SampleToInsertRatio, Scheme, TransitionBuffer
from xreplay.distributed import (
    ClientOptions,
    InProcessBackend,
    ReplayClient,
    ShardCheckpoints,
    decode_indices,
    encode_indices,
)
from xreplay.distributed.persist import read_replay
from xreplay.errors import (
    CheckpointError,
    CheckpointMismatchError,
    FieldShapeError,
    FieldValueError,
    IndexOutOfRangeError,
    InsufficientDataError,
    RateLimiterTimeout,
    ShardFactoryError,
    ShardUnavailableError,
    UnknownFieldError,
)


def prioritized(capacity=64):
    return lambda: TransitionBuffer(capacity, sampler="prioritized", seed=0)


def make(num_shards=2, factory=None, options=None, **backend):
    store = InProcessBackend(factory or prioritized(), num_shards=num_shards, **backend)
    return store, ReplayClient(store, options, seed=0)


def test_samples_have_the_local_buffers_fields_dtypes_and_shapes():
    _store, client = make()
    local = TransitionBuffer(64, sampler="prioritized", seed=0)
    for data in (transitions(10), transitions(6, 10)):
        client.extend(data)
        local.extend(data)
    client.add({"item": np.int64(16), "obs": np.ones(3, np.float32), "info": {"rew": np.float32(1)}})
    remote, here = client.sample(7), local.sample(7)
    assert sorted(remote) == sorted(here) == ["info/rew", "item", "obs"]
    for name in here:
        assert remote[name].dtype == here[name].dtype and remote[name].shape == here[name].shape
    assert remote.weights.dtype == torch.float32 and remote.generations.dtype == np.int32
    assert len(client) == 17 and client.can_sample(1)


def test_round_robin_spreads_writes_and_by_writer_keeps_a_writer_in_one_shard():
    store, client = make(num_shards=3)
    for i in range(6):
        client.extend(transitions(2, 2 * i))
    client.flush()
    assert [len(core.buffer) for core in store.shards] == [4, 4, 4]
    store, client = make(num_shards=3)
    client = ReplayClient(store, routing="by_writer", writer_id=0)
    actor = client.clone(writer_id=4)
    for i in range(3):
        actor.extend(transitions(5, 5 * i))
    actor.flush()
    assert [len(core.buffer) for core in store.shards] == [0, 15, 0]


def test_priority_updates_reach_the_item_in_its_shard():
    store, client = make()
    client.extend(transitions(8))
    client.extend(transitions(8, 8))
    sample = client.sample(32)
    priorities = sample["item"].numpy().astype(float) + 1.0
    assert client.update_priorities(sample, priorities, wait=True) == 0
    shards, _epochs, slots = decode_indices(sample.indices)
    for shard, slot, priority in zip(shards, slots, priorities, strict=True):
        stored = store.shards[shard].buffer.sampler.priorities([slot])[0]
        assert stored == pytest.approx((priority + 1e-6) ** 0.6)


def test_updates_ride_with_the_next_sample_request():
    store, client = make()
    client.extend(transitions(8))
    sample = client.sample(4)
    client.update_priorities(sample, np.full(4, 5.0))
    assert client.updates.pending_count == 4  # nothing sent yet
    client.sample(4)
    assert client.updates.pending_count == 0
    shard, _epoch, slot = decode_indices(sample.indices[:1])
    assert store.shards[shard[0]].buffer.sampler.priorities(slot)[0] == pytest.approx((5 + 1e-6) ** 0.6)


def test_unknown_shard_and_stale_epoch_updates_are_skipped_and_counted(tmp_path):
    store, client = make(checkpoints=ShardCheckpoints(str(tmp_path)), run_id=1)
    client.extend(transitions(8))
    client.extend(transitions(8, 8))
    sample = client.sample(16)
    bogus = encode_indices(9, 0, np.array([0, 1]))
    assert client.update_priorities(bogus, [1.0, 1.0], np.zeros(2, np.int32)) == 2
    client.checkpoint()
    store.kill(0)
    store.restart(0)  # epoch 1: the indices sampled before are of epoch 0
    client.refresh()
    on_zero = int((shards_of(sample.indices) == 0).sum())
    assert client.update_priorities(sample, np.ones(16), wait=True) == on_zero
    stats = client.stats()
    assert stats["unknown_shard_updates"] == 2 and stats["stale_updates"] == on_zero


def test_overwritten_items_are_skipped_by_their_shard():
    _store, client = make(num_shards=1, factory=prioritized(8))
    client.extend(transitions(8))
    sample = client.sample(8)
    client.extend(transitions(8, 8))  # every slot overwritten since the sample
    assert client.update_priorities(sample, np.ones(8), wait=True) == 8
    assert client.stats()["stale_updates"] == 8


@pytest.mark.parametrize(
    ("priorities", "generations", "error", "match"),
    [
        pytest.param([1.0, np.nan], None, FieldValueError, "priority nan", id="nan"),
        pytest.param([1.0, -1.0], None, FieldValueError, "must be finite and >= 0", id="negative"),
        pytest.param([1.0], None, FieldShapeError, "2 indices but 1 priorities", id="short"),
        pytest.param([1.0, 1.0], np.zeros(1, np.int32), FieldShapeError, "1 generations", id="generations"),
    ],
)
def test_bad_updates_raise_and_queue_nothing(priorities, generations, error, match):
    _store, client = make()
    client.extend(transitions(4))
    sample = client.sample(2)
    with pytest.raises(error, match=match):
        if generations is None:
            client.update_priorities(sample, priorities)
        else:
            client.update_priorities(sample.indices, priorities, generations)
    assert client.updates.pending_count == 0


def test_plain_indices_need_generations_and_slots_must_fit():
    _store, client = make()
    client.extend(transitions(4))
    sample = client.sample(2)
    with pytest.raises(FieldValueError, match="without generations"):
        client.update_priorities(sample.indices, [1.0, 1.0])
    with pytest.raises(IndexOutOfRangeError, match="slot 64 of shard 0"):
        client.update_priorities(encode_indices(0, 0, np.array([64])), [1.0], np.zeros(1, np.int32))
    assert client.update_priorities(sample.indices, [1.0, 1.0], "current") == 0


def test_uniform_shards_refuse_priority_updates():
    _store, client = make(factory=lambda: TransitionBuffer(16, seed=0))
    client.extend(transitions(4))
    with pytest.raises(TypeError, match="prioritized"):
        client.update_priorities(client.sample(2), [1.0, 1.0])


def test_a_bad_write_raises_later_and_leaves_the_shard_unchanged():
    store, client = make(num_shards=1)
    client.extend(transitions(4))
    client.extend({"other": np.zeros(3)})
    with pytest.raises(UnknownFieldError, match="missing"):
        client.flush()
    assert len(store.shards[0].buffer) == 4


def test_a_down_shard_is_sampled_around_exactly_and_reported(tmp_path):
    store, client = make(num_shards=3, checkpoints=ShardCheckpoints(str(tmp_path)), run_id=2)
    for i in range(6):
        client.extend(transitions(10, 10 * i))
    client.checkpoint()
    client.extend(transitions(7, 60))  # goes to shard 0: written after its checkpoint
    client.flush()
    store.kill(0)
    shards = np.concatenate([shards_of(client.sample(50).indices) for _ in range(20)])
    assert set(shards.tolist()) == {1, 2}
    stats = client.stats()
    assert stats["degraded"] and stats["down"] == [0] and stats["size"] == 40
    client.extend(transitions(5, 100))  # writes go around the down shard
    client.flush()
    store.restart(0)
    client.options = ClientOptions(probe_interval=1e-3)
    for _ in range(3):
        client.sample(10)
    stats = client.stats()
    assert not stats["degraded"] and stats["lost_items"] == 7 and stats["restarts"] == 1
    assert stats["per_shard"][0]["size"] == 20 and stats["shard_recoveries"] == 1


def test_a_shard_down_past_its_timeout_raises_a_typed_error():
    store, client = make(options=ClientOptions(shard_timeout=0.05))
    client.extend(transitions(4))
    client.extend(transitions(4, 4))
    store.kill(1)
    client.sample(2)  # marks it down, samples shard 0
    import time

    time.sleep(0.1)
    with pytest.raises(ShardUnavailableError, match="shard 1 has not answered"):
        client.sample(2)


def test_episode_shards_truncate_and_fill_like_a_local_buffer():
    scheme = Scheme({"r": Field((1,)), "goal": Field((2,), per_step=False)})
    _store, client = make(factory=lambda: EpisodeBuffer(scheme, 8, 5, seed=0))
    client.add({"r": torch.ones(3, 4, 1), "goal": torch.zeros(3, 2)}, lengths=[1, 2, 4])
    client.add({"r": torch.ones(2, 2, 1), "goal": torch.ones(2, 2)})
    batch = client.sample(5, truncate=True)
    assert batch["r"].shape == (5, 4, 1) and batch["goal"].shape == (5, 2)
    np.testing.assert_array_equal(batch["filled"][:, :, 0].sum(1).numpy(), batch.lengths.numpy())
    assert batch.max_seq_length == 4 and sorted(batch.lengths.tolist()) == [1, 2, 2, 2, 4]
    assert client.can_sample(5) and not client.can_sample(6)
    with pytest.raises(TypeError, match="add"):
        client.extend({"r": np.zeros((1, 1, 1))})


def test_min_size_blocks_samples_until_enough_items_are_held():
    limiter = MinSize(6)
    _store, client = make(options=ClientOptions(rate_limit_timeout=0.01), rate_limiter=limiter)
    client.extend(transitions(4))
    with pytest.raises(RateLimiterTimeout, match="not allowed"):
        client.sample(2)
    client.extend(transitions(4, 4))
    assert client.sample(2)["item"].shape == (2,)
    assert client.stats()["rate_limiter"] == {"inserts": 8, "samples": 2, "deletes": 0}


def test_sample_to_insert_ratio_lets_writers_skip_and_counts_overwrites():
    limiter = SampleToInsertRatio(samples_per_insert=1.0, min_size_to_sample=4, error_buffer=8.0)
    _store, client = make(num_shards=1, factory=prioritized(8), rate_limiter=limiter)
    assert client.extend(transitions(8), block=False) == 8
    assert client.extend(transitions(8), block=False) == 0  # the learner has not sampled: skip
    client.sample(8)
    assert client.extend(transitions(4, 8), block=False) == 4
    client.flush()
    assert limiter.counters() == {"inserts": 12, "samples": 8, "deletes": 4}  # 4 overwritten in the ring
    assert client.stats()["writes_skipped"] == 8


def test_save_and_restore_a_whole_replay(tmp_path):
    store, client = make(num_shards=2)
    for i in range(4):
        client.extend(transitions(5, 5 * i))
    client.sample(4)
    path = client.save(tmp_path / "replay")
    saved = read_replay(path)
    assert saved["num_shards"] == 2 and saved["batches_drawn"] == 1
    restored = InProcessBackend(prioritized(), 2, restore_from=dict(enumerate(saved["shards"])))
    again = ReplayClient(restored, seed=0)
    again.rng = saved["rng"]
    assert len(again) == 20
    np.testing.assert_array_equal(client.sample(6)["item"], again.sample(6)["item"])  # same generator, same items
    with pytest.raises(CheckpointMismatchError, match="not a sharded replay"):
        read_replay(saved["shards"][0])


def test_a_directory_with_shard_checkpoints_is_refused_unless_resumed(tmp_path):
    store, client = make(checkpoints=ShardCheckpoints(str(tmp_path)), run_id=3)
    client.extend(transitions(6))
    client.checkpoint()
    from xreplay.distributed.shard import check_checkpoint_directory

    with pytest.raises(CheckpointError, match="resume=True"):
        check_checkpoint_directory(ShardCheckpoints(str(tmp_path)), 2)
    resumed = InProcessBackend(prioritized(), 2, checkpoints=ShardCheckpoints(str(tmp_path), resume=True), run_id=4)
    assert len(ReplayClient(resumed)) == 6


def test_periodic_checkpoints_follow_the_item_interval(tmp_path):
    store, client = make(num_shards=1, checkpoints=ShardCheckpoints(str(tmp_path), every_items=10), run_id=5)
    for i in range(5):
        client.extend(transitions(4, 4 * i))
    client.flush()
    state = client.refresh()[0]
    assert state.checkpoints == 1 and state.checkpointed == 12  # saved after the write that passed 10 items


def test_a_factory_that_builds_no_buffer_is_refused_naming_it():
    with pytest.raises(ShardFactoryError, match="returned list"):
        make(factory=lambda: [])


@pytest.mark.parametrize(
    "options",
    [{"prefetch": -1}, {"batches_per_call": 0}, {"timeout": 0}, {"max_inflight_writes": 0}],
    ids=["prefetch", "batches", "timeout", "inflight"],
)
def test_client_options_are_checked(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        ClientOptions(**options)


def test_checkpoint_intervals_are_checked():
    with pytest.raises(ValueError, match="every_s"):
        ShardCheckpoints("x", every_s=0)


def test_an_empty_replay_refuses_to_sample():
    _store, client = make()
    with pytest.raises(InsufficientDataError, match="no sampling mass"):
        client.sample(2)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    import xreplay.distributed as distributed

    with pytest.raises(ImportError, match=r"pip install 'xreplay\[ray\]'"):
        distributed.RayReplay  # noqa: B018


def test_write_batch_gathers_small_writes_into_one_message():
    store, client = make(num_shards=2, options=ClientOptions(write_batch=10))
    calls = []
    submit = store.submit
    store.submit = lambda shard, method, *args: (calls.append(method), submit(shard, method, *args))[1]
    for i in range(6):
        client.extend(transitions(4, 4 * i))  # 24 items: sent as 12 + 12
    assert calls.count("write") == 2 and client.writes.stage.rows == 0
    client.add({"item": np.int64(99), "obs": np.zeros(3, np.float32), "info": {"rew": np.float32(0)}})
    assert client.writes.stage.rows == 1 and calls.count("write") == 2  # staged, not yet visible
    client.flush()
    assert calls.count("write") == 3 and len(client) == 25
    np.testing.assert_array_equal(np.sort(np.concatenate([c.buffer.gather(np.arange(len(c.buffer)))["item"].numpy()
                                                          for c in store.shards])), [*range(24), 99])  # fmt: skip


def test_a_write_of_another_layout_is_not_gathered_with_the_staged_ones():
    store, client = make(num_shards=1, options=ClientOptions(write_batch=100))
    client.extend(transitions(4))
    client.extend({"item": np.zeros(2, np.int64)})  # other fields: the staged 4 go first, then this one fails
    with pytest.raises(UnknownFieldError, match="missing"):
        client.flush()
    assert len(store.shards[0].buffer) == 4


def test_distributed_exports_are_curated_and_documented():
    import xreplay.distributed as distributed

    names = set(distributed.__all__) - {"RayReplay"}  # RayReplay needs Ray: covered in test_ray
    assert len(distributed.__all__) == len(set(distributed.__all__))
    assert {"ReplayClient", "ClientOptions", "ShardCheckpoints", "InProcessBackend", "decode_indices"} <= names
    for name in names:
        assert getattr(distributed, name).__doc__, name
