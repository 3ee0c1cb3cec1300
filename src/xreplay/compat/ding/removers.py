"""DI-engine's removal rules in its own terms, over xreplay's generic removers.

``MaxUse`` is DI-engine's ``max_use`` (``use_time_check``): a record is deleted
once it was sampled ``max_use`` times. ``Staleness`` is ``max_staleness``
(``staleness_check``): training iterations since a record was collected.
"""

from __future__ import annotations

import numpy as np

from xreplay.removers import MaxAge, MaxTimesSampled

__all__ = ["MaxUse", "Staleness"]


class MaxUse(MaxTimesSampled):
    """Per-slot use counters with DI-engine's removal threshold ``max_use``.

    Args:
        capacity: Number of slots.
        max_use: A record whose count reaches this value is due for removal.

    Example:
        >>> m = MaxUse(4, max_use=2)
        >>> counts, due = m.record(np.array([1, 1, 3]))
        >>> counts.tolist(), due.tolist()
        ([1, 2, 1], [False, True, False])

    """

    def __init__(self, capacity: int, max_use: float = float("inf")):
        super().__init__(capacity, max_use)

    @property
    def max_use(self) -> float:
        """The number of uses after which a record is deleted."""
        return self.max_times

    @max_use.setter
    def max_use(self, value: float) -> None:
        self.max_times = value

    def reset(self, slots: np.ndarray) -> None:
        """Forget the counts of ``slots`` (new records, or removed ones)."""
        self.forget(slots)


class Staleness(MaxAge):
    """Staleness of records: the current training iteration minus the one they were collected at.

    Args:
        max_staleness: Records strictly staler than this are due for removal.

    Example:
        >>> s = Staleness(max_staleness=10)
        >>> s.due(np.array([0, 1, 5]), now=11).tolist()
        [True, False, False]

    """

    def __init__(self, max_staleness: float = float("inf")):
        super().__init__(max_staleness)

    @property
    def max_staleness(self) -> float:
        """The largest staleness kept."""
        return self.max_age

    @max_staleness.setter
    def max_staleness(self, value: float) -> None:
        self.max_age = value

    def staleness(self, collected_at: np.ndarray, now: float) -> np.ndarray:
        """Return ``now - collected_at`` elementwise."""
        return self.ages(collected_at, now)
