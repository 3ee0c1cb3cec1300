"""Checks of ``sample``'s arguments, shared by ``DequeBuffer`` and ``PriorityExperienceReplay``.

PER checks them before it draws from numpy's generator, so a refused call draws nothing.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from xreplay.errors import ArgumentAssertionError, ArgumentError

__all__ = ["check_sample_arguments"]


def check_sample_arguments(
    size: Any, count: int | None, groupby: Any = None, unroll_len: Any = None, sample_range: Any = None, stored: int = 0
) -> int:
    """Return the number of records a ``sample`` call asks for, after DI-engine's checks of its arguments.

    Args:
        size: The ``size`` argument.
        count: The number of ``indices`` given (None when none are).
        groupby: The ``groupby`` argument.
        unroll_len: The ``unroll_len`` argument.
        sample_range: The ``sample_range`` argument (checked when given).
        stored: Records stored (for ``sample_range``).

    Raises:
        ArgumentError: ``size`` or ``unroll_len`` is not an int, or ``sample_range`` is invalid.
        ArgumentAssertionError: the arguments contradict each other (an AssertionError, as DI-engine).

    """
    for name, value in (("size", size), ("unroll_len", unroll_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ArgumentError(f"sample: {name} must be an int or None, received {value!r}")
    if sample_range:
        _range_positions(sample_range, stored)
    if not size and not count:
        raise ArgumentAssertionError("One of size and indices must not be empty.")
    if size and count and size != count:
        raise ArgumentAssertionError(f"Size and indices length must be equal (size {size}, {count} indices).")
    if count and groupby:
        raise ArgumentAssertionError("Cannot sample by indices and groupby at the same time.")
    if unroll_len and not groupby:
        raise ArgumentAssertionError(f"unroll_len={unroll_len} needs groupby.")
    return int(size) if size else int(count or 0)


def _range_positions(sample_range: Any, count: int) -> range:
    """Return the storage positions ``itertools.islice(storage, start, stop, step)`` would visit.

    Raises:
        ArgumentError: a bound is negative or not an integer, or the step is < 1 (a ValueError, as ``islice``).

    """
    start, stop, step = sample_range.start, sample_range.stop, sample_range.step
    for name, value, low in (("start", start, 0), ("stop", stop, 0), ("step", step, 1)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < low):
            raise ArgumentError(
                f"sample_range {name} must be None or an integer >= {low} (islice rules), got {value!r}"
            )
    return range(count)[slice(start, stop, step)]
