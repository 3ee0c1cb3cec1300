"""Storage for arbitrary Python items with stable slot ids and generations.

Items live in ``capacity`` slots. Storage order (oldest first) is a ring of
slot ids whose positions a :class:`~xreplay.writers.RingWriter` hands out,
first in, first out: the next item takes the writer's cursor, and a full
ring overwrites its oldest position, reusing that item's slot. A slot for a
new item in a ring that is not full comes from the free list (slots emptied
by deletes, smallest first), else it is the next never-used one. Positional
access is O(1) and vectorized over many positions; deleting items from the
middle compacts only the ring (slots keep their ids) and restarts the
writer's ring at position 0. Every write into a slot bumps that slot's
generation: a handle ``generation * capacity + slot`` taken earlier no longer
resolves once the slot holds a newer item, so a stale index never touches a
newer item.

Memory per slot: one list entry for the item, an ``int64`` generation and two
ring arrays (``int32`` below 2**31 slots); the ``metas`` and ``keys`` lists
exist only once some item was added with a meta or a key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any

import numpy as np

from xreplay.errors import IndexOutOfRangeError
from xreplay.storage.resources import as_count, check_allocation
from xreplay.writers import RingWriter

__all__ = ["ObjectStorage"]


class ObjectStorage:
    """Fixed-capacity FIFO store of Python objects, each with an optional key and meta.

    Args:
        capacity: Number of slots; pushing into a full storage evicts the oldest item.

    Raises:
        ArgumentError: ``capacity`` is not an int >= 1 (a ValueError and a TypeError).
        CapacityError: The slots would not fit in the memory this process may use.

    Example:
        >>> s = ObjectStorage(2)
        >>> [s.add(x, key=x)[0] for x in "abc"]
        [0, 1, 0]
        >>> [s.items[slot] for slot in s.ordered_slots().tolist()], s.slot_of("a")
        (['b', 'c'], None)

    """

    def __init__(self, capacity: int):
        self.capacity = as_count(capacity, "capacity", minimum=1)
        # An item and a meta reference (8 bytes each), a generation (8) and two ring entries (4 or 8 each).
        check_allocation(40 * self.capacity, "cpu", f"object storage for {self.capacity} items", "lower the size")
        self.items: list[Any] = [None] * self.capacity
        self.metas: list[Any] | None = None  # allocated by the first add with a meta
        self.keys: list[Hashable | None] | None = None  # allocated by the first add with a key
        self.key_to_slot: dict[Hashable, int] = {}
        self.generation = np.zeros(self.capacity, dtype=np.int64)
        ring_dtype = np.int32 if self.capacity < 2**31 else np.int64
        self.order = np.zeros(self.capacity, dtype=ring_dtype)  # ring position -> slot
        self.where = np.full(self.capacity, -1, dtype=ring_dtype)  # slot -> ring position, -1 if free
        self.writer = RingWriter(self.capacity)  # ring positions: the newest item is just before its cursor
        self.version = 0  # bumped by every mutation, lets derived indexes detect staleness
        self.contiguous = True  # no delete since the last clear: the slot at ring index r is r
        self._free: list[int] = []  # freed by deletes; popped smallest first
        self._fresh = 0  # slots never used so far are handed out in order
        # Set by a caller that already knows the slots of the keys it passes on (its layout is the caller's).
        self.slot_hint: tuple | None = None

    def __len__(self) -> int:
        return self.writer.size

    @property
    def count(self) -> int:
        """Return the number of stored items."""
        return self.writer.size

    @property
    def head(self) -> int:
        """Return the ring position of the oldest item."""
        writer = self.writer
        return (writer.cursor - writer.size) % self.capacity

    def peek_slot(self) -> int:
        """Return the slot that the next ``add`` will use."""
        writer = self.writer
        if writer.size == self.capacity:
            return int(self.order[writer.cursor])
        if self._free:
            return self._free[-1]
        return self._fresh

    def add(self, item: Any, key: Hashable | None = None, meta: Any = None) -> tuple[int, int]:
        """Store ``item`` as the newest; return ``(slot, evicted_slot)`` (``-1`` when nothing was evicted)."""
        evicted = -1
        writer = self.writer
        ring = writer.cursor  # the writer's next position: the oldest item's when the ring is full
        if writer.size == self.capacity:
            evicted = slot = self.order.item(ring)
            if self.keys is not None:
                old_key = self.keys[slot]
                if old_key is not None:
                    del self.key_to_slot[old_key]
        elif self._free:
            slot = self._free.pop()
        else:
            slot = self._fresh
            self._fresh += 1
        writer.commit(1)
        self.order[ring] = slot
        self.where[slot] = ring
        generation = self.generation
        generation[slot] = generation.item(slot) + 1
        self.items[slot] = item
        if meta is not None or self.metas is not None:
            self._set_meta(slot, meta)
        if key is not None or self.keys is not None:
            self._set_key(slot, key)
        self.version += 1
        return slot, evicted

    def _set_meta(self, slot: int, meta: Any) -> None:
        """Record ``slot``'s meta (the list is allocated by the first meta)."""
        if self.metas is None:
            self.metas = [None] * self.capacity
        self.metas[slot] = meta

    def _set_key(self, slot: int, key: Hashable | None) -> None:
        """Record ``slot``'s key (the list is allocated by the first key)."""
        if self.keys is None:
            self.keys = [None] * self.capacity
        self.keys[slot] = key
        if key is not None:
            self.key_to_slot[key] = slot

    def slot_of(self, key: Hashable) -> int | None:
        """Return the slot holding ``key``, or ``None``."""
        return self.key_to_slot.get(key)

    def slot_at(self, position: int) -> int:
        """Return the slot at storage ``position`` (negative counts from the newest).

        Raises:
            IndexOutOfRangeError: ``position`` is outside the stored items.

        """
        n = self.count
        p = position + n if position < 0 else position
        if not 0 <= p < n:
            raise IndexOutOfRangeError(f"position {position} is outside the {n} stored items")
        return int(self.order[(self.head + p) % self.capacity])

    def slots_at(self, positions: np.ndarray) -> np.ndarray:
        """Return the slots at non-negative storage ``positions`` (vectorized, unchecked)."""
        return self.order[(self.head + np.asarray(positions, dtype=np.int64)) % self.capacity]

    def positions_of(self, slots: np.ndarray | int | list[int]) -> np.ndarray:
        """Return the storage positions of live ``slots``."""
        return (self.where[np.asarray(slots, dtype=np.int64)] - self.head) % self.capacity

    def ordered_slots(self) -> np.ndarray:
        """Return every live slot in storage order (oldest first)."""
        return self.slots_at(np.arange(self.count))

    def iter_items(self) -> Iterator[Any]:
        """Yield the stored items oldest first."""
        items = self.items
        for slot in self.ordered_slots().tolist():
            yield items[slot]

    def handles(self, slots: np.ndarray) -> np.ndarray:
        """Return generation-stamped handles for ``slots``."""
        slots = np.asarray(slots, dtype=np.int64)
        return self.generation[slots] * self.capacity + slots

    def resolve(self, handles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(slots, current)``: ``current`` is False where the slot now holds another item."""
        handles = np.asarray(handles, dtype=np.int64)
        slots = handles % self.capacity
        current = (self.generation[slots] == handles // self.capacity) & (self.where[slots] >= 0)
        return slots, current

    def touch(self) -> None:
        """Record an in-place change (e.g. a replaced meta) so derived indexes rebuild."""
        self.version += 1

    def remove(self, slots: Iterable[int]) -> np.ndarray:
        """Delete the live items in ``slots``; return the slots removed, in storage order."""
        unique: np.ndarray = np.unique(np.fromiter(slots, dtype=np.int64))
        unique = unique[(unique >= 0) & (unique < self.capacity)]
        gone_slots = unique[self.where[unique] >= 0]
        if gone_slots.size == 0:
            return gone_slots
        live = self.ordered_slots()
        gone = np.isin(live, gone_slots)
        keep = live[~gone]
        # Compact the ring so that position p sits at ring index p; the writer continues after the newest.
        self.order[: keep.size] = keep
        self.where[gone_slots] = -1
        self.where[keep] = np.arange(keep.size)
        self._restart_ring(int(keep.size))
        metas, keys = self.metas, self.keys
        for slot in gone_slots.tolist():
            self.items[slot] = None
            if metas is not None:
                metas[slot] = None
            if keys is not None:
                key = keys[slot]
                if key is not None:
                    del self.key_to_slot[key]
                keys[slot] = None
        self.contiguous = False
        # Freed slots are reused smallest first (the list is popped from the end).
        self._free = sorted(set(self._free).union(gone_slots.tolist()), reverse=True)
        self.version += 1
        return live[gone]

    def clear(self) -> None:
        """Delete every item (generations keep counting, so old handles stay stale)."""
        self.items = [None] * self.capacity
        self.metas = self.keys = None
        self.key_to_slot = {}
        self.where.fill(-1)
        self._restart_ring(0)
        self._fresh = 0
        self._free = []
        self.contiguous = True
        self.version += 1

    def _restart_ring(self, count: int) -> None:
        """Let the writer continue after ``count`` items held at ring positions ``0 .. count - 1``."""
        writes = self.writer.writes
        self.writer.load_state_dict(
            {"capacity": self.capacity, "cursor": count % self.capacity, "size": count, "writes": writes}
        )

    def state(self) -> dict[str, Any]:
        """Return the full state as plain Python and numpy objects (for persistence)."""
        return {
            "capacity": self.capacity,
            "items": self.items,
            "metas": [None] * self.capacity if self.metas is None else self.metas,
            "keys": [None] * self.capacity if self.keys is None else self.keys,
            "generation": self.generation,
            "order": self.order,
            "where": self.where,
            "head": self.head,
            "count": self.count,
            "writes": self.writer.writes,
            "free": self._free,
            "fresh": self._fresh,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the contents with a ``state()`` of a storage of the same capacity.

        Raises:
            ValueError: the capacities differ.

        """
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"saved capacity {state['capacity']} differs from this storage's {self.capacity}")
        metas, keys = state.get("metas"), state.get("keys")
        self.items = list(state["items"])
        self.metas = None if metas is None or all(m is None for m in metas) else list(metas)
        self.keys = None if keys is None or all(k is None for k in keys) else list(keys)
        self.generation = np.array(state["generation"], dtype=np.int64)
        self.order = np.array(state["order"], dtype=self.order.dtype)
        self.where = np.array(state["where"], dtype=self.where.dtype)
        head, count = int(state["head"]), int(state["count"])
        cursor, writes = (head + count) % self.capacity, int(state.get("writes", count))
        self.writer.load_state_dict({"capacity": self.capacity, "cursor": cursor, "size": count, "writes": writes})
        self._free, self._fresh = list(state["free"]), int(state["fresh"])
        self.key_to_slot = {} if self.keys is None else {k: s for s, k in enumerate(self.keys) if k is not None}
        ring = (head + np.arange(count)) % self.capacity
        self.contiguous = bool(np.array_equal(self.order[ring], ring))
        self.version += 1
