"""DI-engine layer: issue 8's bad inputs are refused before anything changes, with typed errors.

Each refusal keeps DI-engine's exception class as a base (``TypeError``, ``KeyError``,
``AssertionError``, ``ValueError``) and is an ``XReplayError`` naming the record or argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import snapshots
from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay
from xreplay.errors import (
    ArgumentAssertionError,
    ArgumentError,
    CapacityError,
    FieldShapeError,
    FieldTypeError,
    PriorityError,
    UnknownFieldError,
    UnknownIndexError,
    XReplayError,
)


def per_buffer(n: int = 6, size: int = 8, **kwargs):
    buffer = DequeBuffer(size=size)
    per = PriorityExperienceReplay(buffer, **kwargs)
    buffer.use(per)
    for i in range(n):
        buffer.push({"x": i}, meta={"priority": 1.0 + i})
    return buffer, per


def test_an_update_with_a_new_meta_lacking_priority_idx_keeps_sampling_working():
    buffer, _per = per_buffer()
    index = buffer.storage[2].index
    assert buffer.update(index, None, {"priority": 2.0}) is None  # DI-engine raised KeyError after replacing it
    assert buffer.get_by_index(index).meta["priority_idx"] == 2
    np.random.seed(0)
    for _ in range(20):
        assert len(buffer.sample(3)) == 3


@pytest.mark.parametrize(
    ("meta", "error", "legacy", "message"),
    [
        pytest.param("x", FieldTypeError, TypeError, "must be a dict, received str", id="text_meta"),
        pytest.param(None, ArgumentAssertionError, AssertionError, "needs a meta", id="no_meta"),
        pytest.param({"other": 1}, UnknownFieldError, KeyError, "lacks 'priority'", id="no_priority"),
        pytest.param({"priority": "1.5"}, PriorityError, ValueError, "real number", id="text_priority"),
        pytest.param({"priority": float("nan")}, PriorityError, ValueError, "nan", id="nan"),
        pytest.param({"priority": -1.0}, PriorityError, ValueError, "-1.0", id="negative"),
        pytest.param({"priority": 1e308, "priority_idx": 2}, PriorityError, ValueError, "overflow", id="huge"),
        pytest.param({"priority": 1.0, "priority_idx": 5}, ArgumentError, ValueError, "slot 2", id="wrong_slot"),
    ],
)
def test_a_refused_update_changes_nothing_and_names_the_record(meta, error, legacy, message):
    buffer, _per = per_buffer(IS_weight=True, priority_power_factor=1.0)
    index = buffer.storage[2].index
    before = snapshots.of(buffer)
    with pytest.raises(error, match=message) as info:
        buffer.update(index, {"replaced": True}, meta)
    assert isinstance(info.value, legacy) and isinstance(info.value, XReplayError)
    assert snapshots.of(buffer) == before
    np.random.seed(1)
    assert all(r.data.get("replaced") is None for r in buffer.sample(6))  # 20/20 samples failed before


@pytest.mark.parametrize(
    ("priorities", "error", "message"),
    [
        pytest.param([1.0, 2.0, 3.0], FieldShapeError, "2 indices but 3 priorities", id="too_many"),
        pytest.param([1.0], FieldShapeError, "2 indices but 1 priorities", id="too_few"),
        pytest.param(["1.5", "2.5"], PriorityError, "real numbers", id="text"),
        pytest.param([1.0, np.inf], PriorityError, "inf", id="inf"),
        pytest.param([1e308, 1e308], PriorityError, "overflow", id="overflowing_sum"),
    ],
)
def test_update_priorities_checks_everything_first(priorities, error, message):
    buffer, per = per_buffer(priority_power_factor=1.0)
    indices = [buffer.storage[0].index, buffer.storage[1].index]
    before = snapshots.of(buffer)
    with pytest.raises(error, match=message):
        per.update_priorities(indices, priorities)
    assert snapshots.of(buffer) == before


@pytest.mark.parametrize(
    ("meta", "data", "message"),
    [
        pytest.param({"priority": "1.5"}, {"x": 1}, "real number, received '1.5'", id="text_in_meta"),
        pytest.param(None, {"x": 1, "priority": "1.5"}, "real number, received '1.5'", id="text_in_data"),
        pytest.param({"priority": 1e309}, {"x": 1}, "inf", id="inf"),
        pytest.param({"priority": 1e308}, {"x": 1}, "overflow", id="too_large_for_the_sum"),
    ],
)
def test_a_refused_push_stores_nothing_and_leaves_the_data_alone(meta, data, message):
    buffer, _per = per_buffer(priority_power_factor=1.0)
    before = snapshots.of(buffer)
    given = dict(data)
    with pytest.raises(PriorityError, match=message):
        buffer.push(data, meta=meta)
    assert snapshots.of(buffer) == before and data == given  # DI-engine popped 'priority' from data first


def test_huge_priorities_never_overflow_the_sum_or_zero_the_weights():
    buffer, _per = per_buffer(n=2, size=2, priority_power_factor=1.0)
    with pytest.raises(PriorityError):
        for record in list(buffer.storage):
            buffer.update(record.index, None, {**record.meta, "priority": 1e308})
    np.random.seed(0)
    weights = [r.meta["priority_IS"] for r in buffer.sample(4)]
    assert all(0 < w <= 1 for w in weights)  # DI-engine: ZeroDivisionError on every sample


def test_a_zero_priority_does_not_break_the_weights():
    buffer, _per = per_buffer(n=4)
    record = buffer.storage[0]
    buffer.update(record.index, None, {**record.meta, "priority": 0.0})
    buffer.push({"x": 9}, meta={"priority": 0.0})  # given priorities have no epsilon: a zero leaf
    np.random.seed(0)
    sample = buffer.sample(4)
    assert all(0 < r.meta["priority_IS"] <= 1 and float(r.data["priority_IS"]) > 0 for r in sample)


def test_meta_must_be_a_mapping_on_push_and_update():
    buffer = DequeBuffer(size=4)
    record = buffer.push({"x": 1}, meta={"env": 0})
    before = snapshots.of(buffer)
    with pytest.raises(FieldTypeError, match="meta must be a dict or None, received str"):
        buffer.push({"x": 2}, meta="x")
    with pytest.raises(FieldTypeError, match="meta must be a dict or None, received list"):
        buffer.update(record.index, None, [1, 2])
    assert snapshots.of(buffer) == before


def test_unknown_indices_and_bad_sizes_are_typed():
    buffer, _per = per_buffer()
    plain = DequeBuffer(size=4)
    plain.push(1)
    with pytest.raises(UnknownIndexError, match="no stored record has index 'nope'") as info:
        plain.get_by_index("nope")
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownIndexError):
        plain.sample(indices=["nope"])
    with pytest.raises(ArgumentError, match="size must be an int"):
        plain.sample(2.5)
    with pytest.raises(ArgumentAssertionError, match="One of size and indices"):
        plain.sample()


def test_buffer_size_is_checked_before_allocating():
    with pytest.raises(CapacityError, match=r"object storage for 10000000000 items needs .* GiB"):
        DequeBuffer(size=10**10)
    with pytest.raises(ArgumentError, match="size must be an int >= 1, received 2.5"):
        DequeBuffer(size=2.5)


def test_huge_samples_are_checked_against_memory_before_drawing():
    buffer, _per = per_buffer()
    plain = DequeBuffer(size=4)
    plain.push(1)
    for target in (buffer, plain):
        before = snapshots.of(target)
        with pytest.raises(CapacityError, match="sample of 1000000000000 records needs"):
            target.sample(10**12, replace=True)
        assert snapshots.of(target) == before


@pytest.mark.parametrize(
    "priority", [np.float32(3.0), np.array(3.0), np.array([3.0]), torch.tensor(3.0), torch.tensor([3.0])],
    ids=["numpy_float32", "numpy_0d", "numpy_1", "tensor_0d", "tensor_1"],
)
def test_one_number_priorities_in_any_container_are_taken_as_floats(priority):
    buffer, per = per_buffer()
    record = buffer.storage[0]
    buffer.update(record.index, None, {**record.meta, "priority": priority})
    assert type(per.max_priority) is float and per.max_priority == pytest.approx(3.0 + 1e-5)
    pushed = buffer.push({"x": 9}, meta={"priority": priority})
    assert pushed.meta["priority"] is priority  # stored as given, as DI-engine does
