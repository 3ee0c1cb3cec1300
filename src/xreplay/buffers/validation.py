"""Validation of user writes against a scheme, done before anything is modified."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.errors import FieldShapeError, FieldValueError, UnknownFieldError
from xreplay.scheme import Scheme
from xreplay.storage.dtypes import check_fits

__all__ = ["as_field_tensor", "check_keys"]


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
        A tensor whose values are held exactly by the field's declared dtype
        (its own dtype is kept; the copy into storage converts).

    Raises:
        FieldShapeError: The shape differs from ``leading + item shape``.
        FieldValueError: A value cannot be held by the declared dtype.
    """
    field = scheme[name]
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        array = np.asarray(value)
        if array.dtype == object:
            raise FieldValueError(f"field {name!r}: expected numbers, got {type(value).__name__}")
        tensor = torch.from_numpy(array if array.flags.c_contiguous else array.copy())
    expected = (*leading, *scheme.item_shape(name))
    shape = tuple(tensor.shape)
    if shape != expected and (
        len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape, strict=False))
    ):
        shown = tuple("*" if e is None else e for e in expected)
        raise FieldShapeError(f"field {name!r}: expected shape {shown}, received {shape}")
    if tensor.dtype != field.dtype and not field.dtype.is_floating_point:
        check_fits(name, tensor, field.dtype)
    return tensor
