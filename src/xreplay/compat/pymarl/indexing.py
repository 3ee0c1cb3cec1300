"""PyMARL's index parsing, item counting, safe-view check and value conversion."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from xreplay.compat.pymarl.fields import torch_dtype
from xreplay.errors import (
    ArgumentError,
    FieldShapeError,
    FieldShapeIndexError,
    FieldShapeRuntimeError,
    FieldTypeError,
    FieldValueError,
    FieldValueRuntimeError,
    IndexOutOfRangeError,
    InvalidIndexError,
    XReplayError,
)
from xreplay.storage.conversion import as_plain_tensor, describe

__all__ = [
    "check_safe_view",
    "index_error",
    "indexed_shape",
    "num_items",
    "parse_index",
    "read_back",
    "show_index",
    "to_field_tensor",
]


def parse_index(items: Any) -> tuple[Any, ...]:
    """Turn a batch index or a ``(batch, time)`` pair into a tuple usable on stored tensors.

    A batch-only index gets ``slice(None)`` for time; Python ints become
    one-element slices so no dimension is dropped; everything else passes
    through unchanged.

    Raises:
        InvalidIndexError: The time index is a list (time must be contiguous); an IndexError.
    """
    if isinstance(items, (slice, int, list, np.ndarray)) or isinstance(items, torch.LongTensor):
        items = (items, slice(None))
    if isinstance(items[1], list):
        raise InvalidIndexError("Indexing across Time must be contiguous")
    return tuple(slice(i, i + 1) if isinstance(i, int) else i for i in items)


def show_index(index: Any) -> str:
    """Return an index (a tuple of slices, lists, arrays or tensors) as short text."""
    text = repr(index)
    return text if len(text) <= 80 else text[:77] + "..."


def index_error(what: str, index: Any, region: tuple[int, ...], exc: Exception) -> XReplayError:
    """Return the typed error for torch's refusal ``exc`` of ``index`` into ``what`` of shape ``region``.

    An IndexError stays one (:class:`InvalidIndexError` for an index of a type torch cannot use or
    index arrays that cannot be broadcast together, :class:`IndexOutOfRangeError` otherwise); a
    RuntimeError becomes :class:`FieldShapeRuntimeError`, torch's other refusals :class:`ArgumentError`
    (a TypeError and ValueError).
    """
    if isinstance(exc, RuntimeError):  # torch's RuntimeError stays one (upstream's class)
        return FieldShapeRuntimeError(f"{what}: index {show_index(index)} cannot be used: {exc}")
    if not isinstance(exc, IndexError):
        return ArgumentError(f"{what}: index {show_index(index)} cannot be used: {exc}")
    text = str(exc)
    if "only integers, slices" in text:  # torch's refusal of the index's type
        return InvalidIndexError(
            f"{what}: index {show_index(index)} cannot be used (ints, slices, lists, integer arrays or tensors): {exc}"
        )
    if "shape mismatch" in text:  # advanced indices of batch and time that do not broadcast together
        return InvalidIndexError(
            f"{what}: index {show_index(index)} pairs index arrays whose lengths cannot be broadcast "
            f"together (give both the same length, or index one dimension with a slice): {exc}"
        )
    return IndexOutOfRangeError(f"{what}: index {show_index(index)} is outside its shape {region}: {exc}")


def indexed_shape(shape: torch.Size, index: Any) -> torch.Size | None:
    """Return ``tensor[index].shape`` for a tuple of slices without indexing, None for other indices."""
    if not isinstance(index, tuple) or len(index) > len(shape):
        return None
    dims = []
    for item, size in zip(index, shape, strict=False):
        if type(item) is not slice:
            return None
        dims.append(len(range(*item.indices(size))))
    return torch.Size((*dims, *shape[len(index) :]))


def num_items(index: Any, size: int) -> int | None:
    """Return how many entries ``index`` selects from ``size``, None when it cannot tell."""
    if isinstance(index, (list, np.ndarray)):
        return len(index)
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        return 1 + (stop - start - 1) // step
    return None


def read_back(index: Any, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Return what reading ``index`` of a tensor of ``shape`` gives after ``value`` was written there.

    PyMARL preprocesses a field by reading back what it just wrote. With every position distinct
    that is ``value`` itself; where an index repeats a position (``bs=[1, -3]`` in a batch of 4),
    the later write wins, so the read-back holds its value at both places.
    """
    parts = index if isinstance(index, tuple) else (index,)
    where = [d for d, part in enumerate(parts) if isinstance(part, (list, np.ndarray, torch.Tensor))]
    if not where or (len(where) == 1 and _distinct(parts[where[0]], shape[where[0]])):
        return value
    arrays = [np.asarray(parts[d].cpu() if isinstance(parts[d], torch.Tensor) else parts[d]) for d in where]
    if any(a.dtype == np.bool_ and a.ndim != 1 for a in arrays):
        return value  # a mask over several dimensions: left as written
    arrays = [np.flatnonzero(a) if a.dtype == np.bool_ else a for a in arrays]  # a mask indexes as its positions
    if len(arrays) == 1 and arrays[0].size < 2:
        return value  # a single position
    keys = np.ravel_multi_index(
        np.broadcast_arrays(*(a.astype(np.int64) % shape[d] for a, d in zip(arrays, where, strict=True))),
        [shape[d] for d in where],
    ).ravel()
    unique, first_reversed, inverse = np.unique(keys[::-1], return_index=True, return_inverse=True)
    if unique.size == keys.size:
        return value
    last = (keys.size - 1 - first_reversed)[inverse[::-1]]  # each position's last write of the same place
    start = 0 if len(where) > 1 else where[0]  # several index arrays put their positions first (adjacent here)
    ndim = len(np.broadcast_shapes(*(a.shape for a in arrays)))
    flat = value.reshape(*value.shape[:start], keys.size, *value.shape[start + ndim :])
    chosen = flat.index_select(start, torch.from_numpy(last).to(value.device))
    return chosen.reshape(value.shape)


def _distinct(part: Any, size: int) -> bool:
    """Return True when a short 1-D integer index certainly names each place once (False: it cannot tell)."""
    if isinstance(part, (np.ndarray, torch.Tensor)):
        if part.ndim != 1 or part.shape[0] > 64 or part.dtype in (np.bool_, torch.bool):
            return False
        part = part.tolist()
    if not isinstance(part, list) or not all(type(i) is int for i in part):
        return False
    return len({i % size for i in part}) == len(part)


def check_safe_view(name: str, value: torch.Tensor, dest: torch.Size) -> torch.Tensor:
    """Return ``value`` viewed as ``dest`` after PyMARL's check that only size-1 dims are added or dropped.

    The check walks both shapes from the last dimension, skipping size-1
    destination dimensions that do not match; its cursor may wrap around, as
    upstream's does, so the same values pass and fail.

    Raises:
        FieldShapeError: The check fails (a ValueError, as upstream).
        FieldShapeIndexError: The check runs out of dimensions (an IndexError, as upstream).
        FieldShapeRuntimeError: The check passes but the view does not (a RuntimeError, as upstream).
    """
    cursor = len(value.shape) - 1
    for size in reversed(dest):
        try:
            current = value.shape[cursor]
        except IndexError:
            raise FieldShapeIndexError(
                f"field {name!r}: a value of shape {tuple(value.shape)} cannot be written to a region of shape "
                f"{tuple(dest)} (PyMARL's safe-view check runs out of dimensions)"
            ) from None
        if current != size:
            if size != 1:
                raise FieldShapeError(
                    f"field {name!r}: Unsafe reshape of {value.shape} to {dest}; the value must have the "
                    f"region's shape, up to dimensions of size 1"
                )
        else:
            cursor -= 1
    try:
        return value.view(dest)
    except RuntimeError:
        raise FieldShapeRuntimeError(
            f"field {name!r}: a value of shape {tuple(value.shape)} ({value.numel()} elements) cannot be viewed "
            f"as the region's shape {tuple(dest)}"
        ) from None


def to_field_tensor(name: str, value: Any, dtype: Any, device: Any) -> torch.Tensor:
    """Copy ``value`` into a new tensor of ``dtype`` on ``device``: oxwhirl's conversion, else EPyMARL's.

    oxwhirl converts with ``torch.tensor(value, dtype=...)``; EPyMARL converts
    lists with ``torch.tensor(np.array(value), dtype=...)``. Where the first
    succeeds its result is kept; where it raises on a list (numpy bool or float
    scalars, which gymnasium environments return, into an integer field) and
    the second succeeds, the second's result is returned (spec §12). Values
    whose conversion would silently change them in a way neither upstream
    documents are refused: complex numbers into a real field and NaN or
    infinity into an integer field.

    Raises:
        FieldTypeError: Text, objects, ``None``, complex numbers into a real field (a TypeError).
        FieldShapeError: Ragged nested lists (a ValueError).
        FieldValueError: Integers beyond int64 (a ValueError).
        FieldValueRuntimeError: Values out of the field's range, or NaN/infinity into an integer field.
    """
    target = dtype if isinstance(dtype, torch.dtype) else torch_dtype(dtype)
    try:
        tensor = _oxwhirl(name, value, target, device)
    except XReplayError:
        raise
    except TypeError as exc:
        if not isinstance(value, list):
            raise FieldTypeError(f"field {name!r}: cannot convert {describe(value)} to {target}: {exc}") from None
        tensor = _epymarl(name, value, target, device, exc)
    except ValueError as exc:
        error: type[XReplayError] = FieldValueError if "Overflow" in str(exc) else FieldShapeError
        if _holds_text(value):
            error = FieldTypeError  # torch says "too many dimensions 'str'"; the values are not numbers
        raise error(f"field {name!r}: cannot convert {describe(value)} to {target}: {exc}") from None
    except RuntimeError as exc:
        raise FieldValueRuntimeError(f"field {name!r}: cannot convert {describe(value)} to {target}: {exc}") from None
    return tensor


def _holds_text(value: Any) -> bool:
    """Return whether ``value`` (nested lists, an array) holds text."""
    try:
        return np.asarray(value).dtype.kind in "USV"
    except (ValueError, TypeError):
        return False


def _oxwhirl(name: str, value: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """Convert as ``torch.tensor(value, dtype=dtype, device=device)`` does, refusing silent value changes."""
    if isinstance(value, torch.Tensor):
        value = as_plain_tensor(name, value, complex_ok=dtype.is_complex)
        _check_floats_into_integers(name, value, dtype)
        return value.detach().to(device=device, dtype=dtype, copy=True)
    if isinstance(value, np.ndarray):
        _check_array(name, value, dtype)
    elif isinstance(value, list) and value and isinstance(value[0], np.ndarray | list):
        if dtype.is_floating_point and isinstance(value[0], np.ndarray):
            try:  # float targets: stacking first converts exactly as torch.tensor(list) does, without its warning
                return torch.from_numpy(np.array(value)).to(device=device, dtype=dtype)
            except (ValueError, TypeError):
                pass  # ragged or odd lists: let torch.tensor raise (or accept) exactly as PyMARL sees it
        with warnings.catch_warnings():
            # PyMARL's runners pass lists of ndarrays; torch warns that this is slow, and the
            # conversion must stay torch.tensor's (it decides which values raise and which wrap).
            warnings.filterwarnings("ignore", message="Creating a tensor from a list of numpy.ndarrays")
            return torch.tensor(value, dtype=dtype, device=device)
    return torch.tensor(value, dtype=dtype, device=device)


def _epymarl(name: str, value: list, dtype: torch.dtype, device: Any, cause: TypeError) -> torch.Tensor:
    """Convert a list as EPyMARL does (``np.array`` first), refusing values an integer field cannot hold."""
    try:
        array = np.array(value)
    except (ValueError, TypeError):
        array = None
    if array is None or array.dtype.kind not in "biuf":
        raise FieldTypeError(f"field {name!r}: cannot convert {describe(value)} to {dtype}: {cause}") from None
    _check_array(name, array, dtype)
    if dtype != torch.bool and not dtype.is_floating_point and array.dtype.kind in "iuf" and array.size:
        info = torch.iinfo(dtype)
        low, high = float(array.min()), float(array.max())
        if low <= info.min - 1 or high >= info.max + 1:  # torch.tensor(list) refuses these, np.array would wrap
            raise FieldValueRuntimeError(
                f"field {name!r}: values span [{low:g}, {high:g}], outside {dtype} [{info.min}, {info.max}]"
            )
    return torch.tensor(array, dtype=dtype, device=device)


def _check_array(name: str, array: np.ndarray, dtype: torch.dtype) -> None:
    """Refuse complex values into a real field and NaN or infinity into an integer field."""
    if array.dtype.kind == "c" and not dtype.is_complex:
        raise FieldTypeError(
            f"field {name!r}: expected real numbers for {dtype}, received complex values (the imaginary part "
            f"would be lost)"
        )
    if array.dtype.kind == "f" and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool):
        if array.size and not np.isfinite(array).all():
            raise FieldValueRuntimeError(f"field {name!r}: NaN or infinity cannot be stored as {dtype}")


def _check_floats_into_integers(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> None:
    """Refuse NaN or infinity from a float tensor into an integer field."""
    if tensor.is_floating_point() and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool):
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            raise FieldValueRuntimeError(f"field {name!r}: NaN or infinity cannot be stored as {dtype}")
