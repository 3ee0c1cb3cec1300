"""PyMARL layer: bad inputs get typed errors that name the field and keep upstream's exception class.

Upstream raised torch's or numpy's own messages (``TypeError: must be real number, not str``);
xreplay raises an ``XReplayError`` that also derives from the class upstream raised, so existing
``except`` clauses still work, and leaves the batch exactly as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import snapshots
from xreplay.compat.pymarl import EpisodeBatch, OneHot, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.errors import (
    ArgumentError,
    CapacityError,
    FieldShapeError,
    FieldShapeIndexError,
    FieldShapeRuntimeError,
    FieldTypeError,
    FieldValueError,
    FieldValueRuntimeError,
    IndexOutOfRangeError,
    InvalidIndexError,
    PriorityError,
    UnknownFieldError,
    XReplayError,
)

SCHEME = {
    "state": {"vshape": 3},
    "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
    "terminated": {"vshape": (1,), "dtype": torch.uint8},
}
GROUPS = {"agents": 2}
PREPROCESS = {"actions": ("actions_onehot", [OneHot(out_dim=4)])}


def batch(compact: bool) -> EpisodeBatch:
    b = EpisodeBatch(SCHEME, GROUPS, 2, 5, preprocess=PREPROCESS, compact=compact)
    b.update({"state": [[1.0, 2.0, 3.0]] * 2, "actions": [[[1], [2]]] * 2, "terminated": [[0]] * 2}, ts=0)
    return b


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
@pytest.mark.parametrize(
    ("data", "bs", "ts", "error", "legacy", "names"),
    [
        pytest.param({"state": [["a", "b", "c"]]}, 0, 1, FieldTypeError, TypeError, "'state'", id="text"),
        pytest.param({"state": None}, 0, 1, FieldTypeError, TypeError, "'state'", id="none"),
        pytest.param({"state": [[object()] * 3]}, 0, 1, FieldTypeError, TypeError, "'state'", id="object"),
        pytest.param({"state": np.full((1, 3), 1 + 1j)}, 0, 1, FieldTypeError, TypeError, "'state'.*complex",
                     id="complex_array"),
        pytest.param({"actions": np.full((1, 2, 1), np.nan)}, 0, 1, FieldValueRuntimeError, RuntimeError,
                     "'actions'.*NaN", id="nan_into_long"),
        pytest.param({"terminated": [[300]]}, 0, 1, FieldValueRuntimeError, RuntimeError, "'terminated'.*overflow",
                     id="overflow_from_list"),
        pytest.param({"state": [[1.0, 2.0], [3.0]]}, 0, 1, FieldShapeError, ValueError, "'state'", id="ragged"),
        pytest.param({"actions": [[[2**70], [0]]]}, 0, 1, FieldValueError, ValueError, "'actions'",
                     id="int_beyond_int64"),
        pytest.param({"state": [1.0, 2.0]}, 0, 1, FieldShapeError, ValueError, "'state'.*Unsafe reshape",
                     id="unsafe_reshape"),
        pytest.param({"state": 1.0}, 0, 1, FieldShapeIndexError, IndexError, "'state'", id="zero_d_value"),
        pytest.param({"state": [[1.0, 2, 3]] * 4}, 0, slice(0, 1), FieldShapeRuntimeError, RuntimeError, "'state'",
                     id="view_fails"),
        pytest.param({"actions": [[[1], [9]]]}, 0, 1, FieldValueRuntimeError, RuntimeError, "'actions'.*OneHot",
                     id="one_hot_out_of_range"),
        pytest.param({"state": [[1.0, 2, 3]], "nope": [1]}, 0, 1, UnknownFieldError, KeyError, "nope not found",
                     id="unknown_key"),
        pytest.param({"state": [[1.0, 2, 3]]}, [7], 1, IndexOutOfRangeError, IndexError, "'filled'.*index",
                     id="batch_index_out_of_range"),
        pytest.param({"state": [[1.0, 2, 3]]}, 0, [0, 1], InvalidIndexError, IndexError, "Time must be contiguous",
                     id="list_time_index"),
        pytest.param({"state": [[1.0, 2, 3]]}, 0.5, 1, InvalidIndexError, IndexError, "'filled'.*index",
                     id="float_index"),
    ],
)
def test_a_refused_update_is_typed_names_the_field_and_changes_nothing(compact, data, bs, ts, error, legacy, names):
    b = batch(compact)
    before = snapshots.of(b)
    with pytest.raises(error, match=names) as info:
        b.update(data, bs=bs, ts=ts)
    assert isinstance(info.value, legacy) and isinstance(info.value, XReplayError)
    assert snapshots.of(b) == before


def test_documented_upstream_casts_are_kept():
    b = batch(False)
    b.update({"terminated": np.array([[300]]), "state": [[2.9, -2.9, 0.5]]}, bs=0, ts=2)  # ndarray wraps, as upstream
    assert b["terminated"][0, 2, 0].item() == 44
    assert torch.equal(b["state"][0, 2], torch.tensor([2.9, -2.9, 0.5]))
    b.update({"actions": [[[2.9], [-0.0]]]}, bs=0, ts=3)  # float to long truncates toward zero
    assert b["actions"][0, 3, :, 0].tolist() == [2, 0]


def test_reads_of_unknown_fields_keep_upstream_classes():
    b = batch(False)
    with pytest.raises(ValueError, match="unknown field 'nope'") as info:
        b["nope"]
    assert isinstance(info.value, UnknownFieldError)
    with pytest.raises(KeyError, match="Unrecognised key nope"):
        b[("state", "nope")]
    with pytest.raises(UnknownFieldError, match="needs the 'filled' field"):
        b[("state",)].max_t_filled()


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        ([5], IndexOutOfRangeError, r"index \[5\] is outside its shape \(2, 5\)"),
        ((slice(None), np.array([0, 9])), IndexOutOfRangeError, "is outside its shape"),
        (([], np.array([0, 3])), InvalidIndexError, "cannot be broadcast together"),
        ((np.array([0, 1, 0]), np.array([0, 3])), InvalidIndexError, "cannot be broadcast together"),
    ],
)
def test_refused_reads_are_typed_index_errors(compact, item, error, message):
    b = batch(compact)
    before = snapshots.pymarl(b)
    with pytest.raises(error, match=message) as info:
        b[item]
    assert isinstance(info.value, IndexError) and isinstance(info.value, XReplayError)
    assert snapshots.pymarl(b) == before


def test_replay_buffer_arguments_are_checked_before_drawing():
    buffer = ReplayBuffer(SCHEME, GROUPS, 4, 5, preprocess=PREPROCESS)
    for _ in range(3):
        buffer.insert_episode_batch(batch(False))
    before = snapshots.of(buffer)
    for bad in (2.5, -1, "2", True):
        with pytest.raises(ArgumentError, match="batch_size"):
            buffer.sample(bad)
    with pytest.raises(ArgumentError, match="takes an EpisodeBatch"):
        buffer.insert_episode_batch({"state": [1.0]})
    with pytest.raises(ArgumentError, match="batch_size must be an int"):
        buffer.insert_episode_batch(batch(False)[torch.tensor([0])])  # tensor-indexed: no batch size
    assert snapshots.of(buffer) == before


@pytest.mark.parametrize(
    ("idxes", "priorities", "error", "message"),
    [
        pytest.param([0, 1], ["1.5", "2"], PriorityError, "real numbers", id="text"),
        pytest.param([0, 1], [1.0, np.nan], PriorityError, "priority nan", id="nan"),
        pytest.param([0, 1], [1e308, 1.0], PriorityError, "too large", id="overflow"),
        pytest.param([0.5, 1], [1.0, 1.0], ArgumentError, "indices must be integers", id="float_index"),
        pytest.param([0, 1], [1.0], FieldShapeError, "2 indices but 1 priorities", id="lengths"),
        pytest.param([0, 5], [1.0, 1.0], IndexOutOfRangeError, "index 5", id="out_of_range"),
    ],
)
def test_prioritized_updates_are_checked_first(idxes, priorities, error, message):
    buffer = PrioritizedReplayBuffer(SCHEME, GROUPS, 4, 5, alpha=1.0, beta=0.4, t_max=10, preprocess=PREPROCESS)
    for _ in range(2):
        buffer.insert_episode_batch(batch(False))
    before = snapshots.of(buffer)
    with pytest.raises(error, match=message):
        buffer.update_priorities(idxes, priorities)
    with pytest.raises(ArgumentError, match="batch_size"):
        buffer.sample(0, t=1)
    with pytest.raises(ArgumentError, match="training step"):
        buffer.sample(2, t="1")
    assert snapshots.of(buffer) == before


def test_prioritized_samples_are_checked_against_memory_before_drawing(monkeypatch):
    from xreplay.storage import resources

    buffer = PrioritizedReplayBuffer(SCHEME, GROUPS, 4, 5, alpha=1.0, beta=0.4, t_max=10, preprocess=PREPROCESS)
    buffer.insert_episode_batch(batch(False))
    monkeypatch.setattr(resources, "CHECK_ABOVE", 0)
    monkeypatch.setattr(resources, "memory_limit", lambda device: resources.MemoryLimit(100, {"cgroup": 100}))
    before = snapshots.of(buffer)
    with pytest.raises(CapacityError, match=r"a sample of 2 episodes needs .* at most 0.0 MiB there \(cgroup"):
        buffer.sample(2, t=1)
    assert snapshots.of(buffer) == before  # nothing was drawn from random


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
def test_an_update_index_torch_refuses_with_a_runtime_error_keeps_that_class(compact):
    b = batch(compact)
    before = snapshots.pymarl(b)
    with pytest.raises(RuntimeError, match="cannot be used") as info:
        b.update({"state": [[1.0, 2.0, 3.0]]}, bs=(slice(None), slice(None), 0))
    assert isinstance(info.value, FieldShapeRuntimeError)
    assert snapshots.pymarl(b) == before


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
@pytest.mark.parametrize(
    ("item", "legacy", "error"),
    [
        (("state", slice(None)), TypeError, ArgumentError),  # a name beside an index
        ((slice(None), "x"), TypeError, ArgumentError),
        (((slice(None), slice(None), 0), slice(None)), RuntimeError, FieldShapeRuntimeError),
    ],
)
def test_refused_reads_keep_upstreams_class_and_are_typed(compact, item, legacy, error):
    b = batch(compact)
    before = snapshots.pymarl(b)
    with pytest.raises(legacy, match="cannot be used") as info:
        b[item]
    assert isinstance(info.value, error)
    assert snapshots.pymarl(b) == before
