"""ColumnStorage.gather returns every field of the gathered rows as its own contiguous tensor, whatever the layout."""

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.errors import FieldTypeError, IndexOutOfRangeError
from xreplay.storage.columns import ColumnStorage

DTYPES = [np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_]
SHAPES = [(), (0,), (1,), (3,), (17,), (2, 3)]


def _values(rng: np.random.Generator, n: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    raw = rng.integers(0, 100, size=(n, *shape))
    return (raw % 2).astype(dtype) if dtype is np.bool_ else raw.astype(dtype)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(DTYPES), st.sampled_from(SHAPES)), min_size=1, max_size=6),
    st.lists(st.integers(0, 15), max_size=40),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_gathered_fields_equal_the_written_rows_and_are_contiguous(fields, slots, subset, seed):
    _check_gather(fields, slots, subset, seed)


def _check_gather(fields, slots, subset, seed):
    rng = np.random.default_rng(seed)
    data = {f"f{i}": _values(rng, 16, shape, dtype) for i, (dtype, shape) in enumerate(fields)}
    storage = ColumnStorage(16)
    storage.write(slice(0, 16), storage.prepare(data, batched=True))
    indices = np.array(slots, dtype=np.int64)
    names = sorted(data)[::2] if subset else None
    got = storage.gather(indices, names)
    assert list(got) == (names if names is not None else list(data))
    for name, tensor in got.items():
        expected = torch.from_numpy(np.ascontiguousarray(data[name][indices]))
        assert tensor.dtype == expected.dtype and tensor.shape == expected.shape
        assert tensor.is_contiguous()
        assert torch.equal(tensor, expected)


@pytest.mark.parametrize("n", [0, 1, 256], ids=["empty", "one", "batch"])
def test_transition_fields_of_one_dtype_come_back_as_separate_tensors(n):
    shapes = {"obs": (17,), "next_obs": (17,), "act": (6,), "rew": (), "done": ()}
    rng = np.random.default_rng(0)
    data = {k: rng.random((64, *s), dtype=np.float32) for k, s in shapes.items()}
    storage = ColumnStorage(64)
    storage.write(slice(0, 64), storage.prepare(data, batched=True))
    indices = rng.integers(0, 64, n)
    got = storage.gather(indices)
    got["obs"].add_(1.0)  # fields share no memory: writing one leaves the others and the storage alone
    for name in shapes:
        if name != "obs":
            assert torch.equal(got[name], torch.from_numpy(data[name][indices]))
    assert torch.equal(storage.columns["obs"][torch.from_numpy(indices)], torch.from_numpy(data["obs"][indices]))


def test_each_gathered_field_owns_its_memory():
    """A field a learner keeps (say the rewards of many samples) holds no other field's bytes."""
    shapes = {"obs": (300,), "rew": (), "done": ()}
    storage = ColumnStorage(64)
    storage.write(slice(0, 64), storage.prepare({k: np.ones((64, *v), np.float32) for k, v in shapes.items()}, True))
    got = storage.gather(np.arange(32, dtype=np.int64))
    for name, tensor in got.items():
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), name


@pytest.mark.parametrize("index", [-1, 8, 2**40])
def test_gather_refuses_a_row_outside_the_storage(index):
    storage = ColumnStorage(8)
    storage.write(slice(0, 8), storage.prepare({"obs": np.zeros((8, 3), np.float32)}, True))
    with pytest.raises(IndexOutOfRangeError, match=r"outside the rows \[0, 8\)"):
        storage.gather(np.array([0, index]))


def test_a_checked_write_is_what_gets_written_whatever_the_caller_does_to_its_dict():
    storage = ColumnStorage(8)
    storage.write(slice(0, 4), storage.prepare({"obs": np.zeros((4, 3), np.float32)}, True))
    batch = {"obs": np.zeros((4, 3), np.float32)}
    values, _specs = storage.validate(batch, True)
    batch["obs"] = np.full((1, 3), 1e300)  # after the checks, before the copy (another thread, say)
    assert values is not batch and values["obs"].shape == (4, 3) and values["obs"].dtype == np.float32


def test_a_column_the_checks_refuse_is_never_looked_up():
    """A complex column (possible from a loaded state): batched writes are refused as single ones are."""
    storage = ColumnStorage(8)
    spec = {
        "specs": {"z": {"shape": [2], "dtype": "complex64"}},
        "columns": {"z": torch.zeros(8, 2, dtype=torch.complex64)},
    }
    storage.load_state_dict(spec)
    for batched, value in ((True, np.ones((3, 2), np.complex64)), (False, np.ones(2, np.complex64))):
        with pytest.raises(FieldTypeError):
            storage.validate({"z": value}, batched)


def _outcome(storage: ColumnStorage, flat: dict, batched: bool) -> tuple:
    """What ``validate`` does with a write: the values it returns (dtype, shape, bytes) or the error it raises."""
    try:
        values, specs = storage.validate(flat, batched)
    except Exception as exc:  # noqa: BLE001 - the differential compares whatever is raised
        return ("raised", type(exc), str(exc))
    arrays = {k: np.asarray(v) for k, v in values.items()}
    return ("ok", specs, {k: (a.dtype, a.shape, a.tobytes()) for k, a in arrays.items()})


_CHANGES = ["none", "dtype", "item shape", "batch size", "key order", "extra key", "missing key", "tensor", "list"]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(DTYPES), st.sampled_from(SHAPES)), min_size=1, max_size=4),
    st.integers(0, 5),
    st.sampled_from(_CHANGES),
    st.integers(0, 2**16),
)
def test_the_lookup_of_a_hot_write_accepts_and_refuses_what_the_full_checks_do(fields, n, change, seed):
    """A write that looks like the stored columns skips the checks: the outcome is the full checks' own."""
    rng = np.random.default_rng(seed)
    first = {f"f{i}": _values(rng, 4, shape, dtype) for i, (dtype, shape) in enumerate(fields)}
    storage = ColumnStorage(8)
    storage.write(slice(0, 4), storage.prepare(first, batched=True))
    write = {k: _values(rng, n, v.shape[1:], v.dtype.type) for k, v in first.items()}
    name = sorted(write)[seed % len(write)]
    if change == "dtype":
        write[name] = write[name].astype(np.float64 if write[name].dtype != np.float64 else np.float32)
    elif change == "item shape":
        write[name] = np.zeros((n, 2, *write[name].shape[1:]), dtype=write[name].dtype)
    elif change == "batch size":
        write[name] = np.concatenate([write[name], write[name][:1]]) if n else write[name][:0]
    elif change == "key order":
        write = dict(reversed(list(write.items())))
    elif change == "extra key":
        write["extra"] = np.zeros(n, dtype=np.float32)
    elif change == "missing key":
        del write[name]
    elif change == "tensor":
        write[name] = torch.from_numpy(write[name].copy())
    elif change == "list":
        write[name] = write[name].tolist()
    if change == "none":  # looked up: the same arrays, in a new dict
        assert storage._looks_stored(write)
        looked = storage.validate(write, True)[0]
        assert looked is not write and all(looked[k] is write[k] for k in write)
    looked_up = _outcome(storage, write, True)
    with mock.patch.object(ColumnStorage, "_looks_stored", lambda self, flat: False):
        checked = _outcome(storage, write, True)
    assert looked_up == checked
