"""Writers decide which slot each new item takes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from xreplay.errors import ArgumentError

__all__ = ["RingWriter", "SlotPlan"]


class SlotPlan(NamedTuple):
    """Where a batch of ``n`` new items goes.

    Attributes:
        source_start: First item of the batch that is kept (earlier ones
            would be overwritten within the same batch and are skipped).
        segments: Up to two ``(slot_start, item_start, count)`` runs of
            contiguous slots, in write order.
    """

    source_start: int
    segments: tuple[tuple[int, int, int], ...]

    def slots(self) -> np.ndarray:
        """Return the slot of every kept item, in item order, as an int64 array."""
        if len(self.segments) == 1:
            start, _item, count = self.segments[0]
            return np.arange(start, start + count, dtype=np.int64)
        parts = [np.arange(s, s + c, dtype=np.int64) for s, _i, c in self.segments]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


class RingWriter:
    """First-in-first-out slot assignment over a fixed capacity.

    Items go to consecutive slots and wrap around to slot 0, overwriting the
    oldest. A batch larger than the capacity keeps only its last
    ``capacity`` items, each in the slot it would have reached had the batch
    been written item by item.

    Example:
        >>> w = RingWriter(3)
        >>> w.reserve(2).segments, w.reserve(2).segments
        (((0, 0, 2),), ((2, 0, 1), (0, 1, 1)))
    """

    def __init__(self, capacity: int):
        """Start empty at slot 0."""
        self.capacity = int(capacity)
        self.cursor = 0
        self.size = 0
        self.writes = 0
        self.clears = 0  # times cleared: a checkpoint's ring deltas are only valid within one clear

    def plan(self, n: int) -> SlotPlan:
        """Return where ``n`` new items would go, without moving the cursor."""
        cap = self.capacity
        if n <= 0 or cap == 0:
            return SlotPlan(0, ())
        skip = max(0, n - cap)  # items overwritten later in the same batch
        start = (self.cursor + skip) % cap  # slot of the first kept item
        kept = n - skip
        first = min(kept, cap - start)  # run up to the end of the ring
        segments = [(start, skip, first)]
        if kept > first:
            segments.append((0, skip + first, kept - first))  # wrapped run from slot 0
        return SlotPlan(skip, tuple(segments))

    def commit(self, n: int) -> None:
        """Advance the cursor past ``n`` written items."""
        if n <= 0 or self.capacity == 0:
            return
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.capacity, self.size + n)
        self.writes += n

    def reserve(self, n: int) -> SlotPlan:
        """Plan ``n`` items and advance the cursor past them."""
        plan = self.plan(n)
        self.commit(n)
        return plan

    def clear(self) -> None:
        """Forget every item: the next one goes to slot 0 (the count of clears grows)."""
        self.cursor = self.size = self.writes = 0
        self.clears += 1

    def state_dict(self) -> dict[str, Any]:
        """Return the cursor state for checkpoints (``clears`` only once the writer was cleared)."""
        state = {"capacity": self.capacity, "cursor": self.cursor, "size": self.size, "writes": self.writes}
        if self.clears:
            state["clears"] = self.clears
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the cursor state from :meth:`state_dict`; on any error nothing changes.

        Raises:
            ArgumentError: A key is missing, not an int, or outside its range
                (``0 <= cursor < capacity``, ``0 <= size <= min(writes, capacity)``).
        """
        values = {}
        for key in ("capacity", "cursor", "size", "writes"):
            value = state.get(key) if isinstance(state, Mapping) else None
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ArgumentError(f"writer state {key!r} must be an int, received {value!r}")
            values[key] = int(value)
        cap = self.capacity
        if values["capacity"] != cap:
            raise ArgumentError(f"writer state is for capacity {values['capacity']}, this writer has {cap}")
        if not (0 <= values["cursor"] < max(cap, 1) and 0 <= values["size"] <= min(values["writes"], cap)):
            raise ArgumentError(
                f"writer state needs 0 <= cursor < {cap} and 0 <= size <= min(writes, {cap}); received "
                f"cursor {values['cursor']}, size {values['size']}, writes {values['writes']}"
            )
        clears = state.get("clears", 0)
        if isinstance(clears, bool) or not isinstance(clears, (int, np.integer)) or clears < 0:
            raise ArgumentError(f"writer state 'clears' must be an int >= 0, received {clears!r}")
        self.cursor, self.size, self.writes = values["cursor"], values["size"], values["writes"]
        self.clears = int(clears)
