"""``RecordStore``: the object storage of a ``DequeBuffer``, resolving index strings without a dict.

Each record pushed gets the compact code of :mod:`xreplay.compat.ding.indices`
(its slot's handle and this store's era). Looking an index string up parses
the handle, goes to slot ``handle % capacity`` and accepts the record there
only if its own index is exactly that string, so an unknown, malformed or
stale index (the slot now holds a newer record) resolves to nothing.
Records loaded from a checkpoint whose index does not name their slot
(checkpoints of earlier xreplay versions) are found through ``foreign``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from xreplay.compat.ding import indices as _ids
from xreplay.compat.ding.data import BufferedData, make_record
from xreplay.storage.objects import ObjectStorage

__all__ = ["RecordStore"]

_BITS = _ids.ERA_BITS
_MAX_ERAS = _ids.MAX_ERAS
_forks = _ids._forks
_TAGS = _ids._tags  # era -> tag (appended to, never rebound)
_ERA_MASK = _MAX_ERAS - 1
_HEX = "0123456789abcdef"


class RecordStore(ObjectStorage):
    """Fixed-capacity FIFO store of ``BufferedData`` records addressed by index strings.

    Args:
        capacity: Number of records kept; pushing into a full store evicts the oldest.

    Example:
        >>> store = RecordStore(2)
        >>> record, slot, evicted = store.push("a", {})
        >>> store.slot_of_index(record.index) == slot, store.slot_of_index("0" * 32)
        (True, None)

    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._era = -1
        self._tag = ""
        self._era_forks = -1  # fork count when the era was drawn; another value draws a new one
        self.foreign: dict[Any, int] = {}  # index -> slot of loaded records whose index names no slot

    def _draw_era(self) -> None:
        """Take a fresh tag for the records pushed from now on."""
        self._era, self._tag = _ids.new_era()
        self._era_forks = _forks[0]

    def push(self, data: Any, meta: Any) -> tuple[BufferedData, int, int]:
        """Store a new record; return ``(record, slot, evicted_slot)`` (``-1`` when nothing was evicted)."""
        if self._era_forks != _forks[0]:
            self._draw_era()
        if self.foreign and self.count == self.capacity:
            self._forget([self.peek_slot()])
        record = make_record(data, None, meta)
        slot, evicted = self.add(record)
        handle = self.generation.item(slot) * self.capacity + slot
        era = self._era
        record._code = handle << _BITS | era if era < _MAX_ERAS else f"{self._tag}{handle:016x}"  # type: ignore[attr-defined]
        return record, slot, evicted

    def slot_of_index(self, index: Any) -> int | None:
        """Return the slot of the live record whose index is ``index``, or ``None``.

        Raises:
            TypeError: ``index`` is unhashable and this store holds records found through ``foreign``.

        """
        if index.__class__ is str and len(index) == 32:
            suffix = index[16:]
            try:
                handle = int(suffix, 16)
            except ValueError:
                handle = -1
            if handle >= 0:
                slot = handle % self.capacity
                record = self.items[slot]
                if record is not None:
                    code = record._code
                    if code.__class__ is int:
                        # ``index`` spells ``code``: same handle, same era tag, and the suffix is lowercase hex
                        # digits only (``int`` also accepts "_", "+", spaces and capitals), so it is
                        # ``f"{handle:016x}"`` exactly; cheaper than spelling the code out.
                        if code >> _BITS == handle and index[:16] == _TAGS[code & _ERA_MASK] and not suffix.strip(_HEX):
                            return slot
                    elif code == index:
                        return slot
        if self.foreign:
            return self.foreign.get(index)
        return None

    def index_strings(self, slots: list[int]) -> list[str]:
        """Return the index string of the record in each of ``slots`` (as ``record.index``, spelled inline)."""
        tags, items = _TAGS, self.items
        return [
            f"{tags[code & _ERA_MASK]}{code >> _BITS:016x}"
            if (code := items[slot]._code).__class__ is int
            else items[slot].index
            for slot in slots
        ]

    def slot_of_record(self, record: BufferedData) -> int:
        """Return the slot of the live record with ``record``'s index (it may be a copy), or ``-1``."""
        code = record._code  # type: ignore[attr-defined]
        if code.__class__ is int:
            slot = (code >> _BITS) % self.capacity
            stored = self.items[slot]
            return slot if stored is not None and stored._code == code else -1
        found = self.slot_of_index(record.index)
        return -1 if found is None else found

    def slots_of_indices(self, indices: Iterable[Any]) -> list[int | None]:
        """Return ``slot_of_index`` of each index."""
        return list(map(self.slot_of_index, indices))

    def adopt_loaded(self) -> None:
        """Re-encode the records just loaded by ``load_state`` and take a new era for later pushes.

        A record whose index names its own slot and generation gets a compact
        code again; any other (older checkpoints) is found through ``foreign``.
        """
        self.foreign = {}
        self._draw_era()  # later pushes never repeat an index handed out before the load
        items, generation, capacity = self.items, self.generation, self.capacity
        for slot in self.ordered_slots().tolist():
            record = items[slot]
            index = record.index
            parts = _ids.split(index)
            if parts is not None and parts[1] % capacity == slot and parts[1] // capacity == generation[slot]:
                era = _ids.era_of_tag(parts[0])
                record._code = parts[1] << _BITS | era if era < _MAX_ERAS else index
            else:
                try:
                    self.foreign[index] = slot
                except TypeError:  # an unhashable index cannot be looked up, as in a dict
                    pass

    def _forget(self, slots: Iterable[int]) -> None:
        """Drop the ``foreign`` entries of the records in ``slots``."""
        for slot in slots:
            record = self.items[slot]
            if record is None or record._code.__class__ is int:
                continue
            index = record.index
            try:
                if self.foreign.get(index) == slot:
                    del self.foreign[index]
            except TypeError:  # unhashable: never entered
                pass

    def remove(self, slots: Iterable[int]) -> np.ndarray:
        """Delete the live records in ``slots``; return the slots removed, in storage order."""
        if self.foreign:
            slots = list(slots)
            self._forget(s for s in slots if 0 <= s < self.capacity)
        return super().remove(slots)

    def clear(self) -> None:
        """Delete every record (generations keep counting, so old indices stay unknown)."""
        super().clear()
        self.foreign = {}
