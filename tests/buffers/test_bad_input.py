"""Native buffers: every bad input of issue 8 is refused with a typed error naming it, and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import snapshots
from xreplay import EpisodeBuffer, Field, OneHot, Scheme, TransitionBuffer
from xreplay.errors import (
    ArgumentError,
    CapacityError,
    DeviceError,
    FieldShapeError,
    FieldTypeError,
    FieldValueError,
    IndexOutOfRangeError,
    PriorityError,
    XReplayError,
)
from xreplay.samplers import PrioritizedSampler


def episodes() -> EpisodeBuffer:
    scheme = Scheme(
        {
            "obs": Field((2,)),
            "actions": Field((1,), dtype=torch.long, storage_dtype=torch.uint8),
            "onehot": Field((3,), derived=OneHot("actions", 3)),
            "count": Field((1,), dtype=torch.long),
        }
    )
    buffer = EpisodeBuffer(scheme, capacity=3, max_seq_length=4, seed=0)
    for i in range(4):  # full and wrapped: the next write overwrites the oldest episode
        buffer.add({"obs": torch.full((1, 4, 2), float(i)), "actions": torch.ones(1, 4, 1, dtype=torch.long),
                    "count": torch.full((1, 4, 1), i)})
    return buffer


def valid_episode(**changes):
    episode = {"obs": torch.zeros(1, 4, 2), "actions": torch.zeros(1, 4, 1, dtype=torch.long),
               "count": torch.zeros(1, 4, 1, dtype=torch.long)}
    return {**episode, **changes}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        pytest.param({"obs": [[["a", "b"]] * 4]}, FieldTypeError, "'obs'.*numbers", id="text"),
        pytest.param({"obs": None}, FieldTypeError, "'obs'", id="none"),
        pytest.param({"obs": torch.zeros(1, 4, 2, dtype=torch.complex64)}, FieldTypeError, "'obs'.*imaginary",
                     id="complex_tensor"),
        pytest.param({"count": np.full((1, 4, 1), 1 + 2j)}, FieldTypeError, "'count'.*complex", id="complex_array"),
        pytest.param({"count": np.full((1, 4, 1), np.inf)}, FieldValueError, "'count'.*inf", id="inf_into_int"),
        pytest.param({"count": np.full((1, 4, 1), np.nan)}, FieldValueError, "'count'.*nan", id="nan_into_int"),
        pytest.param({"obs": np.full((1, 4, 2), 1e300)}, FieldValueError, "'obs'.*1e\\+300.*infinity",
                     id="float64_overflow"),
        pytest.param({"actions": torch.full((1, 4, 1), 5)}, FieldValueError, "'actions'.*one-hot", id="onehot_range"),
        pytest.param({"actions": torch.full((1, 4, 1), 300)}, FieldValueError, "'actions'", id="uint8_storage"),
        pytest.param({"obs": torch.zeros(1, 4, 2, device="meta")}, FieldValueError, "'obs'.*meta", id="meta_tensor"),
        pytest.param({"obs": [[[0.0, 1.0], [0.0]] * 2]}, FieldShapeError, "'obs'", id="ragged"),
        pytest.param({"count": 3}, FieldShapeError, "'count'", id="scalar"),
    ],
)
def test_episode_add_refuses_and_changes_nothing(changes, error, message):
    buffer = episodes()
    before = snapshots.of(buffer)
    with pytest.raises(error, match=message):
        buffer.add(valid_episode(**changes))
    assert snapshots.of(buffer) == before


def test_a_sparse_tensor_is_written_as_its_dense_values():
    buffer = episodes()
    dense = torch.arange(8.0).reshape(1, 4, 2)
    slot = buffer.add(valid_episode(obs=dense.to_sparse()))
    assert torch.equal(buffer.get(slot)["obs"], dense)


def test_float64_values_are_rounded_to_a_float32_field_like_every_buffer():
    buffer = episodes()
    slot = buffer.add(valid_episode(obs=np.full((1, 4, 2), 0.1)))
    assert buffer.get(slot)["obs"].flatten().tolist() == [np.float32(0.1)] * 8


@pytest.mark.parametrize("capacity", [0, 2.5, True, "3", None])
def test_capacity_must_be_a_positive_int(capacity):
    with pytest.raises(ArgumentError, match=f"capacity must be an int >= 1, received {capacity!r}"):
        EpisodeBuffer(Scheme({"r": Field((1,))}), capacity=capacity, max_seq_length=3)


@pytest.mark.parametrize("device", ["gpu", "meta", "cuda:7" if torch.cuda.is_available() else "cuda"])
def test_unusable_devices_are_refused_with_a_clear_error(device):
    with pytest.raises(DeviceError, match="device") as info:
        EpisodeBuffer(Scheme({"r": Field((1,))}), capacity=2, max_seq_length=3, device=device)
    assert isinstance(info.value, RuntimeError)  # what torch raises for them


@pytest.mark.parametrize("n", [2.5, -1, True, "2", np.float64(2.0)])
def test_sample_sizes_must_be_ints_and_nothing_is_drawn_before_the_check(n):
    buffer = episodes()
    before = snapshots.of(buffer)
    with pytest.raises(ArgumentError, match="sample size"):
        buffer.sample(n)
    assert snapshots.of(buffer) == before


@pytest.mark.parametrize(
    ("slots", "error"),
    [
        pytest.param([0.5], ArgumentError, id="float"),
        pytest.param([True], ArgumentError, id="bool"),
        pytest.param(["0"], ArgumentError, id="text"),
        pytest.param([3], IndexOutOfRangeError, id="past_the_end"),
        pytest.param([-1], IndexOutOfRangeError, id="negative"),
    ],
)
def test_get_takes_integer_slots_only(slots, error):
    with pytest.raises(error, match="episode index"):
        episodes().get(slots)


def test_a_large_sample_with_replacement_is_checked_before_allocating(monkeypatch):
    buffer = episodes()
    monkeypatch.setattr("xreplay.storage.resources.CHECK_ABOVE", 0)  # check every size
    from xreplay.storage import resources

    monkeypatch.setattr(resources, "memory_limit", lambda device: resources.MemoryLimit(1000, {"RLIMIT_AS": 1000}))
    before = snapshots.of(buffer)
    with pytest.raises(CapacityError, match=r"a sample of 100 episodes .* at most 0.0 MiB there \(RLIMIT_AS"):
        buffer.sample(100, replace=True)
    assert snapshots.of(buffer) == before


# -- EpisodeWriter -----------------------------------------------------------------------------


def test_writer_refuses_an_out_of_range_one_hot_source_at_append_and_can_still_end():
    buffer = episodes()
    writer = buffer.episode_writer()
    writer.append({"obs": [1.0, 2.0], "actions": [1], "count": [1]})
    before = snapshots.of(writer)
    with pytest.raises(FieldValueError, match=r"'actions'.*one-hot classes must lie in \[0, 3\)"):
        writer.append({"obs": [1.0, 2.0], "actions": [5], "count": [1]})
    assert snapshots.of(writer) == before
    writer.end()  # the staged episode is still valid
    assert buffer.get([buffer.writer.cursor - 1]).lengths.tolist() == [1]


def test_writer_end_on_a_full_episode_says_what_to_do_and_changes_nothing():
    buffer = episodes()
    writer = buffer.episode_writer()
    for _ in range(4):
        writer.append({"obs": [1.0, 2.0], "actions": [1], "count": [1]})
    before = snapshots.of(writer)
    with pytest.raises(FieldShapeError, match=r"end\(final_step\): .*call end\(\) without a final step"):
        writer.end({"obs": [0.0, 0.0]})
    assert snapshots.of(writer) == before
    writer.end()
    assert int(buffer.get([buffer.writer.cursor - 1]).lengths[0]) == 4


def test_writer_end_whose_episode_is_refused_keeps_the_staged_steps():
    scheme = Scheme({"obs": Field((1,)), "tag": Field((1,), dtype=torch.long, per_step=False)})
    buffer = EpisodeBuffer(scheme, capacity=2, max_seq_length=3)
    writer = buffer.episode_writer()
    writer.append({"obs": [1.0]})
    before = snapshots.of(writer)
    with pytest.raises(FieldTypeError, match="'tag'"):
        writer.end({"obs": [2.0], "tag": ["x"]})
    assert snapshots.of(writer) == before


# -- TransitionBuffer ----------------------------------------------------------------------------


def transitions(sampler="prioritized") -> TransitionBuffer:
    buffer = TransitionBuffer(4, sampler=sampler, seed=0)
    buffer.extend({"a": np.arange(8).reshape(4, 2), "b": np.ones((4, 2), np.float32)})  # full
    buffer.sample(2)
    return buffer


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        pytest.param({"a": [[7, 7]], "b": torch.ones(1, 2, device="meta")}, FieldValueError, "'b'.*meta",
                     id="meta_tensor_after_a_good_field"),
        pytest.param({"a": [[7, 7]], "b": np.full((1, 2), 1e300)}, FieldValueError, "'b'.*infinity",
                     id="float64_overflow"),
        pytest.param({"a": [[7, 7]], "b": [[1e300, 0.0]]}, FieldValueError, "'b'.*infinity",
                     id="python_float_overflow"),
        pytest.param({"a": np.array([[1 + 2j, 3]]), "b": np.ones((1, 2), np.float32)}, FieldTypeError, "'a'.*complex",
                     id="complex_array_into_int"),
        pytest.param({"a": torch.tensor([[1 + 2j, 3]]), "b": np.ones((1, 2), np.float32)}, FieldTypeError,
                     "'a'.*complex", id="complex_tensor_into_int"),
        pytest.param({"a": 3, "b": np.ones((1, 2), np.float32)}, FieldShapeError, r"'a'.*received \(\)",
                     id="batched_scalar"),
        pytest.param({"a": [["x", "y"]], "b": np.ones((1, 2), np.float32)}, FieldTypeError, "'a'", id="text"),
    ],
)
def test_transition_extend_refuses_and_changes_nothing(batch, error, message):
    buffer = transitions()
    before = snapshots.of(buffer)
    with pytest.raises(error, match=message):
        buffer.extend(batch)
    assert snapshots.of(buffer) == before


def test_a_scalar_where_a_batch_of_scalars_belongs_is_refused():
    buffer = TransitionBuffer(4)
    buffer.extend({"rew": np.zeros(2, np.float32), "obs": np.zeros((2, 3), np.float32)})
    before = snapshots.of(buffer)
    with pytest.raises(FieldShapeError, match="'rew': expected a batch of items of shape \\(\\), received a scalar"):
        buffer.extend({"rew": np.float32(1.0), "obs": np.zeros((1, 3), np.float32)})  # numpy: IndexError
    assert snapshots.of(buffer) == before


def test_a_sparse_tensor_after_a_good_field_is_written_whole():
    buffer = transitions()
    buffer.extend({"a": [[7, 7]], "b": torch.tensor([[2.0, 3.0]]).to_sparse()})
    got = buffer.gather([0])
    assert got["a"].tolist() == [[7, 7]] and got["b"].tolist() == [[2.0, 3.0]]


def test_transition_capacity_and_samples_are_checked_before_allocating():
    with pytest.raises(CapacityError, match=r"columns for 10000000000 transitions .* needs .* GiB"):
        TransitionBuffer(10**10).extend({"a": np.zeros((1, 64), np.float32)})
    buffer = transitions("uniform")
    before = snapshots.of(buffer)
    with pytest.raises(CapacityError, match=r"a sample of 1000000000000 transitions"):
        buffer.sample(10**12)
    assert snapshots.of(buffer) == before


@pytest.mark.parametrize(
    ("priorities", "message"),
    [
        pytest.param([np.nan, 1.0], "priority nan", id="nan"),
        pytest.param([np.inf, 1.0], "priority inf", id="inf"),
        pytest.param([-1.0, 1.0], "priority -1.0", id="negative"),
        pytest.param(["1.5", "2"], "real numbers", id="text"),
        pytest.param([True, False], "real numbers", id="bool"),
        pytest.param([1e308, 1e308], "too large.*overflow", id="overflowing_sum"),
    ],
)
def test_native_priorities_raise_priority_error_and_change_nothing(priorities, message):
    buffer = TransitionBuffer(2, sampler=PrioritizedSampler(2, alpha=1.0), seed=0)
    buffer.extend({"a": np.zeros((2, 1), np.float32)})
    sample = buffer.sample(2)
    before = snapshots.of(buffer)
    with pytest.raises(PriorityError, match=message):
        buffer.update_priorities(sample, priorities)
    assert snapshots.of(buffer) == before
    assert buffer.sample(4).weights.min() > 0


def test_float_indices_of_a_priority_update_are_refused():
    buffer = transitions()
    before = snapshots.of(buffer)
    with pytest.raises(ArgumentError, match="indices must be integers"):
        buffer.update_priorities(np.array([0.5, 1.0]), [1.0, 1.0], generations="current")
    assert snapshots.of(buffer) == before


def test_a_subnormal_priority_with_epsilon_zero_never_gives_zero_weights():
    buffer = TransitionBuffer(2, sampler=PrioritizedSampler(2, alpha=1.0, epsilon=0.0), seed=0)
    buffer.extend({"a": np.zeros((2, 1), np.float32)})
    buffer.update_priorities([0, 1], [5e-324, 1.0], generations="current")
    sample = buffer.sample(64)
    assert (sample.indices == 1).all()  # slot 0's share of the mass is 5e-324
    # Slot 1's weight relative to slot 0's, (5e-324 / 1) ** 0.4, is below float32's range: it stays positive.
    assert (sample.weights > 0).all()


def test_every_refusal_is_an_xreplay_error():
    for call in (lambda: TransitionBuffer(0), lambda: TransitionBuffer(4).sample(1), lambda: transitions().gather([9])):
        with pytest.raises(XReplayError):
            call()
