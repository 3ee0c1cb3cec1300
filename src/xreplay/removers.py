"""Removers decide which stored items must leave the buffer.

``MaxTimesSampled`` counts how often the item in each slot was sampled and
reports the occurrences that reached a limit (Reverb's ``max_times_sampled``);
its counts belong to the item, not the slot, so a slot that now holds a newer
item counts from zero again. ``MaxAge`` reports items whose age, in whatever
clock the caller stamps them with (inserts, environment steps, learner
steps), exceeds a limit. Both work on numpy arrays of slots and never loop in
Python per item; the buffer that owns them does the removing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.errors import FieldShapeError, FieldValueError
from xreplay.storage.resources import as_count

__all__ = ["MaxAge", "MaxTimesSampled"]


def _occurrence_ranks(slots: np.ndarray) -> np.ndarray:
    """Return, for each entry of ``slots``, how many times its slot occurred up to and including it."""
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]  # first entry of each run of one slot
    run_start = np.maximum.accumulate(np.where(starts, np.arange(slots.size), 0))
    rank = np.empty_like(slots)
    rank[order] = np.arange(slots.size) - run_start + 1  # 1-based occurrence number within the run
    return rank


class MaxTimesSampled:
    """Per-item sample counters with a removal threshold.

    Args:
        capacity: Number of slots.
        max_times: An item whose count reaches this value is due for removal.

    Example:
        >>> m = MaxTimesSampled(4, max_times=2)
        >>> counts, due = m.record(np.array([1, 1, 3]))
        >>> counts.tolist(), due.tolist()
        ([1, 2, 1], [False, True, False])
        >>> m.record(np.array([1]), generations=np.array([7]))[0].tolist()  # slot 1 holds a newer item
        [1]

    """

    def __init__(self, capacity: int, max_times: float = float("inf")):
        self.capacity = as_count(capacity, "capacity", minimum=1)
        self.max_times = max_times
        self.counts = np.zeros(self.capacity, dtype=np.int64)
        self.generations = np.zeros(self.capacity, dtype=np.int64)  # generation of the item each count belongs to

    def record(self, slots: np.ndarray, generations: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Count one use per occurrence of each slot, in order.

        Args:
            slots: Sampled slots; a slot appearing twice is counted twice.
            generations: The generation of the item each slot held when sampled
                (e.g. ``ObjectStorage.generation[slots]``); a slot whose item is
                newer than the one counted so far starts again from zero.

        Returns:
            ``(counts, due)``: each occurrence's running count after it was
            counted, and whether that count reached ``max_times``.

        """
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        if slots.size == 0:
            return slots.copy(), np.zeros(0, dtype=bool)
        if generations is not None:
            generations = np.asarray(generations, dtype=np.int64).reshape(-1)
            if generations.shape != slots.shape:
                raise FieldShapeError(f"got {slots.size} slots but {generations.size} generations")
            newer = self.generations[slots] != generations
            self.counts[slots[newer]] = 0
            self.generations[slots] = generations
        counts = self.counts[slots] + _occurrence_ranks(slots)
        np.add.at(self.counts, slots, 1)
        return counts, counts >= self.max_times

    def forget(self, slots: np.ndarray) -> None:
        """Forget the counts of ``slots`` (new items, or removed ones)."""
        self.counts[np.asarray(slots, dtype=np.int64)] = 0

    def clear(self) -> None:
        """Forget every count."""
        self.counts.fill(0)

    def state_dict(self) -> dict[str, Any]:
        """Return the counts and the generations they belong to."""
        return {"capacity": self.capacity, "counts": self.counts.copy(), "generations": self.generations.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; on any error nothing changes.

        Raises:
            FieldShapeError: ``counts`` or ``generations`` is not of shape ``(capacity,)``.
            FieldValueError: a count is negative.
        """
        counts = np.array(state["counts"], dtype=np.int64)
        generations = np.array(state["generations"], dtype=np.int64)
        for name, array in (("counts", counts), ("generations", generations)):
            if array.shape != (self.capacity,):
                raise FieldShapeError(f"{name}: expected shape ({self.capacity},), received {array.shape}")
        if (counts < 0).any():
            raise FieldValueError(f"counts must be >= 0, received {int(counts.min())}")
        self.counts, self.generations = counts, generations


class MaxAge:
    """Age limit: an item stamped at ``t`` is due for removal at ``now`` once ``now - t > max_age``.

    Args:
        max_age: Largest age kept.

    Example:
        >>> MaxAge(max_age=10).due(np.array([0, 1, 5]), now=11).tolist()
        [True, False, False]

    """

    def __init__(self, max_age: float = float("inf")):
        self.max_age = max_age

    def ages(self, stamps: np.ndarray, now: float) -> np.ndarray:
        """Return ``now - stamps`` elementwise."""
        return now - np.asarray(stamps)

    def due(self, stamps: np.ndarray, now: float) -> np.ndarray:
        """Return a mask of items whose age is strictly greater than ``max_age``."""
        return self.ages(stamps, now) > self.max_age
