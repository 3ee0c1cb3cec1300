"""Conversion of user values into plain arrays and tensors, refusing what storage cannot hold.

Every buffer turns a written value into a dense, strided numpy array or torch
tensor with these functions before anything is modified, so the copy into
storage that follows cannot fail halfway through a write. The rules are the
same for every buffer:

* text, objects and ``None`` are refused (:class:`~xreplay.errors.FieldTypeError`),
  and so are complex values for a real field (the imaginary part would be dropped);
* ragged nested lists are refused (:class:`~xreplay.errors.FieldShapeError`);
* sparse and other non-strided tensors are made dense; tensors on the
  ``meta`` device (no data) and quantized tensors are refused;
* a cast to a narrower float dtype rounds to its precision, but a finite value
  that would become infinite is refused (:class:`~xreplay.errors.FieldValueError`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.errors import FieldShapeError, FieldTypeError, FieldValueError
from xreplay.storage.dtypes import dtype_range, numpy_dtype, numpy_kind, torch_dtype, torch_kind

__all__ = ["as_number_array", "as_plain_tensor", "check_float_cast", "check_value", "describe"]

_NUMERIC_KINDS = "biuf"
_INT64_MAX = np.iinfo(np.int64).max


def describe(value: Any) -> str:
    """Return a short description of ``value`` for an error message (type, and a shortened repr)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def as_number_array(name: str, value: Any, complex_ok: bool = False) -> np.ndarray:
    """Return ``value`` (a scalar, nested lists, an array) as a numeric numpy array in native byte order.

    Unsigned integers wider than 8 bits become int64 (torch computes little on them);
    values above the int64 range are refused. Long doubles become float64 (torch has
    no such dtype), refusing values beyond its range.

    Raises:
        FieldShapeError: Nested lists of different lengths.
        FieldTypeError: Text, objects, ``None``, or complex values when not ``complex_ok``.
        FieldValueError: Unsigned integers beyond the int64 range.
    """
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise FieldShapeError(
            f"field {name!r}: expected a rectangular array of numbers, received {describe(value)}: {exc}"
        ) from None
    except TypeError as exc:
        raise FieldTypeError(f"field {name!r}: expected numbers, received {describe(value)}: {exc}") from None
    dtype = array.dtype
    kind = dtype.kind
    if kind in "bif" and dtype.isnative and dtype.itemsize <= 8:  # the common case: nothing to convert
        return array
    if kind not in _NUMERIC_KINDS and not (complex_ok and kind == "c"):
        what = (
            "complex numbers for a real field (the imaginary part would be lost)"
            if kind == "c"
            else (f"values of dtype {array.dtype}")
        )
        raise FieldTypeError(f"field {name!r}: expected numbers or booleans, received {what}: {describe(value)}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if kind == "f" and array.dtype.itemsize > 8:  # long double: torch has no such dtype
        check_float_cast(name, array, np.dtype(np.float64))
        array = array.astype(np.float64)
    if kind == "c" and array.dtype.itemsize > 16:
        array = array.astype(np.complex128)
    if kind == "u" and array.dtype.itemsize > 1:
        if array.size and array.dtype == np.uint64 and int(array.max()) > _INT64_MAX:
            raise FieldValueError(
                f"field {name!r}: uint64 values up to {int(array.max())} exceed int64 (at most {_INT64_MAX})"
            )
        array = array.astype(np.int64)
    return array


def as_plain_tensor(name: str, tensor: torch.Tensor, complex_ok: bool = False) -> torch.Tensor:
    """Return ``tensor`` detached, dense and strided, after refusing tensors storage cannot take.

    Raises:
        FieldTypeError: A quantized tensor, or a complex one when not ``complex_ok``.
        FieldValueError: A tensor on the ``meta`` device, which holds no values.
    """
    if tensor.is_meta:
        raise FieldValueError(f"field {name!r}: the tensor is on the 'meta' device and holds no values")
    if tensor.is_quantized:
        raise FieldTypeError(f"field {name!r}: quantized tensors are not stored; pass tensor.dequantize()")
    if tensor.is_complex() and not complex_ok:
        raise FieldTypeError(
            f"field {name!r}: expected real numbers, received a {tensor.dtype} tensor "
            f"(the imaginary part would be lost)"
        )
    if tensor.layout != torch.strided:
        try:
            tensor = tensor.to_dense()
        except (RuntimeError, TypeError, NotImplementedError) as exc:
            raise FieldTypeError(f"field {name!r}: a {tensor.layout} tensor cannot be made dense: {exc}") from None
    if tensor.requires_grad:
        tensor = tensor.detach()
    return tensor


def check_float_cast(name: str, values: np.ndarray | torch.Tensor, target: torch.dtype | np.dtype) -> None:
    """Raise FieldValueError when a cast of ``values`` to the float dtype ``target`` turns a finite value infinite.

    Rounding to the target's precision is accepted; NaN and infinities stay as they are.
    ``target`` is a torch dtype for tensors and a numpy dtype for arrays.
    """
    if isinstance(values, torch.Tensor):
        if values.numel() == 0 or values.dtype == torch.bool:
            return
        limit = torch.finfo(target).max  # type: ignore[arg-type]
        source = torch.finfo(values.dtype) if values.is_floating_point() else torch.iinfo(values.dtype)
        if source.max <= limit:
            return  # the source's range fits: nothing can overflow
        converted = values.to(target)  # type: ignore[arg-type]
        overflow = torch.isinf(converted) & torch.isfinite(values)
        if bool(overflow.any()):
            _raise_overflow(name, values[overflow].reshape(-1)[0].item(), target)
        return
    if values.size == 0 or values.dtype.kind == "b":
        return
    limit_np = float(np.finfo(target).max)  # type: ignore[arg-type]
    source_np = np.finfo(values.dtype) if values.dtype.kind == "f" else np.iinfo(values.dtype)
    if float(source_np.max) <= limit_np:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        converted_np = values.astype(np.dtype(target))  # type: ignore[arg-type]
        overflow_np = np.isinf(converted_np) & np.isfinite(values)
    if overflow_np.any():
        _raise_overflow(name, values[overflow_np].reshape(-1)[0].item(), target)


def _raise_overflow(name: str, example: Any, target: Any) -> None:
    """Raise the overflow error of :func:`check_float_cast`."""
    raise FieldValueError(
        f"field {name!r}: value {example!r} is outside the range of {target} and would be stored as infinity; "
        f"scale it or declare a wider dtype"
    )


def _value_span(value: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """Return (min, max) of a non-empty integer array or tensor as Python ints."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return int(value.all()), int(value.any())
        low, high = torch.aminmax(value)
        return int(low), int(high)
    return int(value.min()), int(value.max())


def _host_array(value: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``value`` as a numpy array on the host."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def check_value(name: str, value: np.ndarray | torch.Tensor, dtype: torch.dtype) -> None:
    """Raise FieldValueError unless ``value``'s dtype is of the field's kind and its values fit the field's dtype.

    Floats are cast to the field's precision, but a finite value that would
    become infinite is refused; integers (and booleans into an integer field)
    of a dtype whose range exceeds the field's are checked value by value (one
    vectorized min/max), so nothing wraps around.
    """
    given = torch_kind(value.dtype) if isinstance(value, torch.Tensor) else numpy_kind(value.dtype)
    kind = torch_kind(dtype)
    if given != kind:
        error = FieldTypeError if "c" in (given, kind) else FieldValueError
        raise error(f"field {name!r}: expected dtype {dtype}, received {value.dtype}")
    if kind == "f":
        if isinstance(value, torch.Tensor):
            check_float_cast(name, value, dtype)
        else:
            check_float_cast(name, value, numpy_dtype(dtype) or np.dtype(np.float32))
        return
    if kind != "i":
        return
    target = dtype_range(dtype)
    source = dtype_range(value.dtype if isinstance(value, torch.Tensor) else torch_dtype(value.dtype))
    assert target is not None and source is not None
    empty = value.numel() == 0 if isinstance(value, torch.Tensor) else value.size == 0
    if empty or (target[0] <= source[0] and source[1] <= target[1]):
        return
    low, high = _value_span(value)
    if low < target[0] or high > target[1]:
        flat = _host_array(value).reshape(-1)
        positions = [int(i) for i in np.flatnonzero((flat < target[0]) | (flat > target[1]))[:5]]
        raise FieldValueError(
            f"field {name!r}: values span [{low}, {high}] (e.g. {[int(flat[i]) for i in positions]} at flat "
            f"positions {positions}; received dtype {value.dtype}) but the column's dtype {dtype} "
            f"holds [{target[0]}, {target[1]}]; nothing was written"
        )
