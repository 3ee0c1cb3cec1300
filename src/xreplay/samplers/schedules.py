"""Schedules: a value as a function of a step counter (e.g. the importance-sampling exponent beta)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["ConstantSchedule", "LinearSchedule", "Schedule", "as_schedule"]


@dataclasses.dataclass(frozen=True)
class ConstantSchedule:
    """The same value at every step.

    Example:
        >>> ConstantSchedule(0.4)(1000)
        0.4
    """

    value: float

    def __call__(self, step: int) -> float:
        """Return the value at ``step``."""
        return float(self.value)


@dataclasses.dataclass(frozen=True)
class LinearSchedule:
    """Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    Example:
        >>> s = LinearSchedule(0.4, 1.0, steps=100)
        >>> s(0), s(50), s(100), s(500)
        (0.4, 0.7, 1.0, 1.0)
    """

    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        """Check that the schedule has at least one step."""
        if self.steps <= 0:
            raise ValueError(f"LinearSchedule needs steps > 0, got {self.steps}")

    def __call__(self, step: int) -> float:
        """Return the value at ``step`` (clamped to ``[0, steps]``)."""
        fraction = min(max(step, 0), self.steps) / self.steps
        return float(round(self.start + fraction * (self.end - self.start), 12))


Schedule = ConstantSchedule | LinearSchedule | Callable[[int], float]


def as_schedule(value: float | Schedule) -> Schedule:
    """Return ``value`` as a schedule: a number becomes a :class:`ConstantSchedule`."""
    if isinstance(value, int | float):
        return ConstantSchedule(float(value))
    if not callable(value):
        raise TypeError(f"expected a number or a callable schedule, got {type(value).__name__}")
    return value
