"""Checks of the single priorities ``PriorityExperienceReplay`` receives (one record's push or update).

The value rules are xreplay's one priority validator
(:func:`xreplay.samplers.priorities.check_priorities`); this module adds the
fast path for a plain float and the types a DI-engine meta may carry
(numbers, numpy scalars, one-element arrays and tensors).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from xreplay.errors import PriorityError
from xreplay.samplers.priorities import check_priorities, largest_leaf

__all__ = ["as_float", "check_one"]

_BOOLS = (bool, np.bool_)
_ARRAYS = (torch.Tensor, np.ndarray)


def check_one(priority: Any, name: str, alpha: float, capacity: int, offset: float = 0.0) -> float:
    """Return ``priority`` as a float after checking it is a finite real number >= 0 that the sum can hold.

    Args:
        priority: The value (a number, or an array or tensor of one number).
        name: The record it belongs to, for the message.
        alpha: The exponent leaves are raised to.
        capacity: Number of leaves.
        offset: Added before the exponent (DI-engine's 1e-5 on update).

    Raises:
        PriorityError: text, a bool, another object, NaN, infinity, a negative number, or a priority whose
            ``(priority + offset) ** alpha`` exceeds ``float64 max / capacity``.
    """
    plain = type(priority) is float or type(priority) is int  # the common case, without the ABC check
    if not plain and (isinstance(priority, _BOOLS) or not isinstance(priority, numbers.Real)):
        if not _one_number(priority):
            raise PriorityError(
                f"priority of item {name!r} must be a real number, received {priority!r} ({type(priority).__name__})"
            )
    value = float(priority) if plain else as_float(priority)
    if not (math.isfinite(value) and value >= 0) or _too_large(value + offset, alpha, capacity):
        check_priorities([value], names=[name], alpha=alpha, capacity=capacity, offset=offset)  # raises
    return value


def _too_large(value: float, alpha: float, capacity: int) -> bool:
    """Return whether ``value ** alpha`` exceeds what ``capacity`` leaves may each hold."""
    try:
        return value**alpha > largest_leaf(capacity)
    except OverflowError:  # past float64: certainly too large
        return True


def as_float(value: Any) -> float:
    """Return a real number, or the one number of an array or tensor, as a Python float."""
    if isinstance(value, _ARRAYS):
        return float(value.reshape(-1)[0])
    return float(value)


def _one_number(value: Any) -> bool:
    """Return whether ``value`` is an array or tensor holding one real number (not a bool)."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    if isinstance(value, np.ndarray):
        return value.size == 1 and value.dtype.kind in "iuf"
    return False
