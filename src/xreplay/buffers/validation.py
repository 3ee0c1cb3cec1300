"""Validation of user writes against a scheme, done before anything is modified."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, FieldShapeError, FieldValueError, UnknownFieldError
from xreplay.scheme import Scheme
from xreplay.storage.conversion import as_number_array, as_plain_tensor, check_float_cast, describe
from xreplay.storage.dtypes import check_fits, exceeds, value_range
from xreplay.storage.resources import check_index_range
from xreplay.transforms import OneHot

__all__ = ["as_field_tensor", "as_slots", "check_keys", "check_one_hot_sources"]


def check_keys(scheme: Scheme, keys: Any, required: bool) -> None:
    """Raise if ``keys`` name unknown or derived fields, or (``required``) miss stored ones."""
    keys = list(keys)
    if required and len(keys) == len(scheme.stored()) and set(keys) == set(scheme.stored()):
        return  # the common case: exactly the stored fields
    for key in keys:
        if key not in scheme:
            raise UnknownFieldError(f"unknown field {key!r}; the scheme declares {list(scheme)}")
        derived = scheme[key].derived
        if derived is not None:
            raise UnknownFieldError(
                f"field {key!r} is derived from {derived.source!r} at read time; write {derived.source!r} instead"
            )
    if required:
        missing = [name for name in scheme.stored() if name not in keys]
        if missing:
            raise UnknownFieldError(f"write is missing stored fields {missing}")


def as_field_tensor(scheme: Scheme, name: str, value: Any, leading: tuple[int | None, ...]) -> torch.Tensor:
    """Convert ``value`` to a tensor for field ``name`` and check its shape and values.

    Args:
        scheme: The scheme declaring ``name``.
        name: Field name.
        value: Array-like (tensor, ndarray, nested lists, scalar).
        leading: Expected leading dimensions; ``None`` accepts any size.

    Returns:
        A dense tensor whose values are held by the field's declared dtype: floats are
        cast to a float field's dtype (rounded to its precision); other values keep
        their own dtype, checked to fit (the copy into storage converts).

    Raises:
        FieldShapeError: The shape differs from ``leading + item shape``, or nested lists are ragged.
        FieldTypeError: Text, objects, or complex values for a real field.
        FieldValueError: A value cannot be held by the declared dtype (out of range,
            fractional or not finite for an integer field, infinite once cast to a float field).
    """
    field = scheme[name]
    complex_ok = field.dtype.is_complex
    if isinstance(value, torch.Tensor):
        tensor = as_plain_tensor(name, value, complex_ok)
    else:
        array = as_number_array(name, value, complex_ok)
        tensor = torch.from_numpy(array if array.flags.c_contiguous else array.copy())
    expected = (*leading, *scheme.item_shape(name))
    shape = tuple(tensor.shape)
    if shape != expected and (
        len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape, strict=False))
    ):
        shown = tuple("*" if e is None else e for e in expected)
        raise FieldShapeError(f"field {name!r}: expected shape {shown}, received {shape}")
    if tensor.dtype != field.dtype:
        if field.dtype.is_floating_point:
            check_float_cast(name, tensor, field.dtype)
            tensor = tensor.to(field.dtype)  # rounded to the declared precision, as every read returns it
        elif not field.dtype.is_complex:
            check_fits(name, tensor, field.dtype)
    return tensor


def check_one_hot_sources(derivations: Iterable[OneHot], values: Mapping[str, torch.Tensor]) -> None:
    """Raise FieldValueError unless every one-hot source in ``values`` holds class indices in range.

    Sources missing from ``values`` (a step that does not write them) are skipped.
    """
    for derived in derivations:
        value = values.get(derived.source)
        if value is not None and exceeds(value, derived.num_classes - 1):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                shown = "non-finite values"
            else:
                rng = value_range(value.to(torch.float64) if value.is_floating_point() else value)
                shown = f"values in [{rng[0]}, {rng[1]}]" if rng is not None else "values"
            raise FieldValueError(
                f"field {derived.source!r}: one-hot classes must lie in [0, {derived.num_classes}), received {shown}"
            )


def as_slots(slots: Any, size: int, what: str, stored: str) -> np.ndarray:
    """Return ``slots`` as a flat int64 array after checking they are integers in ``[0, size)``.

    Args:
        slots: Integers (a list, an array, a tensor or one int).
        size: The number of stored items.
        what: The name of one slot in messages (``"episode index"``).
        stored: The name of the stored items in messages (``"stored episodes"``).

    Raises:
        ArgumentError: A slot is not an integer (a float, a bool, text).
        IndexOutOfRangeError: A slot is outside ``[0, size)``.
    """
    if isinstance(slots, torch.Tensor):
        slots = slots.detach().cpu().numpy()
    try:
        host = np.asarray(slots)
    except (ValueError, TypeError):
        raise ArgumentError(f"{what}: expected integers, received {describe(slots)}") from None
    if host.size and host.dtype.kind not in "iu":
        raise ArgumentError(f"{what}: expected integers, received dtype {host.dtype}: {describe(slots)}")
    host = host.astype(np.int64, copy=False).reshape(-1)
    check_index_range(host, size, what, "the {size} " + stored + " [0, {size})")
    return host
