"""Removers decide which stored items must leave the buffer.

``MaxUse`` counts how often each slot was sampled and reports the slots that
reached their limit (DI-engine's ``use_time_check``); ``Staleness`` reports
items collected too many training iterations ago (``staleness_check``). Both
work on numpy arrays of slots and never loop in Python per item.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MaxUse", "Staleness"]


class MaxUse:
    """Per-slot use counters with a removal threshold.

    Args:
        capacity: Number of slots.
        max_use: An item whose count reaches this value is due for removal.

    Example:
        >>> m = MaxUse(4, max_use=2)
        >>> counts, due = m.record(np.array([1, 1, 3]))
        >>> counts.tolist(), due.tolist()
        ([1, 2, 1], [False, True, False])

    """

    def __init__(self, capacity: int, max_use: float = float("inf")):
        self.max_use = max_use
        self.counts = np.zeros(int(capacity), dtype=np.int64)

    def record(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Count one use per occurrence of each slot, in order.

        Args:
            slots: Sampled slots; a slot appearing twice is counted twice.

        Returns:
            ``(counts, due)``: each occurrence's running count after it was
            counted, and whether that count reached ``max_use``.

        """
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size == 0:
            return slots.copy(), np.zeros(0, dtype=bool)
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        starts = np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(slots.size), 0))
        rank = np.empty_like(slots)
        rank[order] = np.arange(slots.size) - group_start + 1  # 1-based occurrence number per slot
        counts = self.counts[slots] + rank
        np.add.at(self.counts, slots, 1)
        return counts, counts >= self.max_use

    def reset(self, slots: np.ndarray) -> None:
        """Forget the counts of ``slots`` (new items, or removed ones)."""
        self.counts[np.asarray(slots, dtype=np.int64)] = 0

    def clear(self) -> None:
        """Forget every count."""
        self.counts.fill(0)


class Staleness:
    """Staleness of items: current training iteration minus the one they were collected at.

    Args:
        max_staleness: Items strictly staler than this are due for removal.

    Example:
        >>> s = Staleness(max_staleness=10)
        >>> s.due(np.array([0, 1, 5]), now=11).tolist()
        [True, False, False]

    """

    def __init__(self, max_staleness: float = float("inf")):
        self.max_staleness = max_staleness

    def staleness(self, collected_at: np.ndarray, now: float) -> np.ndarray:
        """Return ``now - collected_at`` elementwise."""
        return now - np.asarray(collected_at)

    def due(self, collected_at: np.ndarray, now: float) -> np.ndarray:
        """Return a mask of items whose staleness is strictly greater than ``max_staleness``."""
        return self.staleness(collected_at, now) > self.max_staleness
