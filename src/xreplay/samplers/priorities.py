"""The one check of priority values, shared by every prioritized sampler and the legacy layers.

A priority must be a real number (not text, a boolean or an object), finite
and >= 0, and ``(priority + offset) ** alpha`` must stay at most ``float64 max /
capacity`` so that the sum of every leaf of a priority tree cannot overflow.
A violation raises :class:`~xreplay.errors.PriorityError` naming the first bad
value, its index (or record name) and its position.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.errors import ArgumentError, PriorityError

__all__ = [
    "LARGEST_SUM",
    "as_priority_update",
    "check_exponents",
    "check_priorities",
    "largest_leaf",
    "leaf_value",
]

LARGEST_SUM = float(np.finfo(np.float64).max)
"""The largest finite float64: the sum of a tree's leaves must stay below it."""


def largest_leaf(capacity: int) -> float:
    """Return the largest leaf value ``capacity`` leaves may hold without their sum overflowing."""
    return LARGEST_SUM / max(int(capacity), 1)


def leaf_value(priority: float, offset: float, alpha: float) -> float:
    """Return ``(priority + offset) ** alpha`` as a Python float, ``inf`` where it overflows (Python raises there)."""
    try:
        return (float(priority) + offset) ** alpha
    except OverflowError:  # e.g. 1e200 ** 2: too large for a float, so too large for a leaf
        return float("inf")


def as_real_array(priorities: Any) -> np.ndarray:
    """Return ``priorities`` as a flat float64 array, refusing values that are not real numbers.

    Raises:
        PriorityError: A value is text, a boolean, complex or an object.
    """
    raw = np.asarray(priorities)
    if raw.dtype != np.float64:
        if raw.size and raw.dtype.kind not in "iuf":
            shown = raw.reshape(-1)[:3].tolist()
            raise PriorityError(f"priorities must be real numbers, received dtype {raw.dtype} ({shown})")
        raw = raw.astype(np.float64)
    return raw.reshape(-1)


def check_priorities(
    priorities: Any, names: Any = None, alpha: float = 1.0, capacity: int = 1, offset: float = 0.0
) -> np.ndarray:
    """Return ``priorities`` as a flat float64 array after checking every value.

    Args:
        priorities: Priority values.
        names: The index (or record name) of each value, for the message; positions by default.
        alpha: The exponent leaves are raised to.
        capacity: Number of leaves of the tree the values go into.
        offset: Added to each priority before the exponent (a sampler's epsilon).

    Raises:
        PriorityError: A value is not a real number, is NaN, infinite or negative, or
            ``(value + offset) ** alpha`` exceeds ``float64 max / capacity``.

    Example:
        >>> check_priorities([0.5, 2]).tolist()
        [0.5, 2.0]
        >>> try:
        ...     check_priorities([1.0, -1.0], names=[7, 9])
        ... except PriorityError as error:
        ...     print(error)
        priority -1.0 for index 9 (position 1) is invalid: priorities must be finite and >= 0
    """
    values = as_real_array(priorities)
    if not values.size:
        return values
    low, high = values.min(), values.max()  # NaN fails both comparisons below
    if not (low >= 0.0 and high < np.inf):
        k = int(np.flatnonzero(~(np.isfinite(values) & (values >= 0)))[0])
        raise PriorityError(
            f"priority {float(values[k])!r} for index {_name(names, k)} (position {k}) is invalid: "
            f"priorities must be finite and >= 0"
        )
    limit = largest_leaf(capacity)
    if leaf_value(high, offset, alpha) > limit:
        with np.errstate(over="ignore"):
            leaves = (values + offset) ** alpha
        k = int(np.flatnonzero(~(leaves <= limit))[0])
        raise PriorityError(
            f"priority {float(values[k])!r} for index {_name(names, k)} (position {k}) is too large: "
            f"(priority + {offset}) ** {alpha} = {float(leaves[k]):.3g} exceeds {limit:.3g} "
            f"(float64 max / capacity {capacity}), so the sum of priorities could overflow; scale the priorities down"
        )
    return values


def _name(names: Any, position: int) -> str:
    """Return how the message names the value at ``position``."""
    if names is None:
        return str(position)
    name = names[position]
    return repr(name) if isinstance(name, str) else str(int(name)) if np.ndim(name) == 0 else str(name)


def as_priority_update(indices: Any, priorities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return a priority update's indices (int64) and priorities (float64) as flat arrays, checking their types.

    Raises:
        ArgumentError: An index is not an integer.
        PriorityError: A priority is not a real number (text, objects, booleans, complex).
    """
    index_array = np.asarray(indices)
    if index_array.dtype != np.int64:
        if index_array.size and index_array.dtype.kind not in "iu":
            raise ArgumentError(f"indices must be integers, received dtype {index_array.dtype}")
        index_array = index_array.astype(np.int64)
    return index_array.reshape(-1), as_real_array(priorities)


def check_exponents(alpha: Any, epsilon: Any, initial_priority: Any) -> None:
    """Refuse a prioritized sampler's ``alpha``, ``epsilon`` or ``initial_priority`` that is not a usable number.

    Raises:
        ArgumentError: One is not a real number, or not finite with ``alpha, epsilon >= 0`` and
            ``initial_priority > 0``.
    """
    numbers = {"alpha": alpha, "epsilon": epsilon, "initial_priority": initial_priority}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ArgumentError(f"{name} must be a real number, received {value!r}")
    if not (0 <= alpha < np.inf and 0 <= epsilon < np.inf and 0 < initial_priority < np.inf):
        raise ArgumentError(
            f"need finite alpha >= 0, epsilon >= 0 and initial_priority > 0; got {alpha}, {epsilon}, {initial_priority}"
        )
