"""PyMARL's index parsing, item counting, safe-view check and value conversion."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from xreplay.compat.pymarl.fields import torch_dtype
from xreplay.errors import (
    FieldShapeError,
    FieldShapeIndexError,
    FieldShapeRuntimeError,
    FieldTypeError,
    FieldValueError,
    FieldValueRuntimeError,
    InvalidIndexError,
    XReplayError,
)
from xreplay.storage.conversion import as_plain_tensor, describe

__all__ = ["check_safe_view", "indexed_shape", "num_items", "parse_index", "to_field_tensor"]


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
