"""Read views that give an ``ObjectStorage`` DI-engine's ``storage`` and ``indices`` attributes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from xreplay.compat.ding.records import RecordStore
from xreplay.storage.objects import ObjectStorage

__all__ = ["BufferIndex", "StorageView"]


class StorageView(Sequence):
    """The ``storage`` attribute: stored ``BufferedData`` oldest first, like a ``deque(maxlen=size)``.

    Integer positions (negative from the newest) cost O(1); iteration, ``len``
    and ``list()`` behave as on a deque. Slicing raises ``TypeError`` as it
    does on a deque.

    Args:
        store: The object storage whose items are shown.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=2)
        >>> _ = [buf.push(x) for x in "abc"]
        >>> [d.data for d in buf.storage], buf.storage[-1].data, buf.storage.maxlen
        (['b', 'c'], 'c', 2)

    """

    def __init__(self, store: ObjectStorage):
        self._store = store

    @property
    def maxlen(self) -> int:
        """Return the capacity."""
        return self._store.capacity

    def __len__(self) -> int:
        return self._store.count

    def __getitem__(self, position: Any) -> Any:
        if not isinstance(position, int):
            position = _as_int(position)
        store = self._store
        try:
            return store.items[store.slot_at(position)]
        except IndexError:
            raise IndexError(f"deque index {position} out of range for {store.count} items") from None

    def __iter__(self) -> Iterator[Any]:
        return self._store.iter_items()

    def __repr__(self) -> str:
        return f"StorageView({list(self)!r}, maxlen={self.maxlen})"


def _as_int(position: Any) -> int:
    """Convert an integer-like position (e.g. numpy int) or raise ``TypeError`` like a deque."""
    try:
        return position.__index__()
    except AttributeError:
        raise TypeError(f"sequence index must be integer, not '{type(position).__name__}'") from None


class BufferIndex:
    """The ``indices`` attribute: maps an index string to its storage position.

    Args:
        store: The record store whose records' indices are looked up.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=2)
        >>> items = [buf.push(x) for x in "abc"]
        >>> buf.indices.get(items[2].index), len(buf.indices), buf.indices.has(items[0].index)
        (1, 2, False)

    """

    def __init__(self, store: RecordStore):
        self._store = store

    def get(self, key: str) -> int:
        """Return the storage position of ``key``.

        Raises:
            KeyError: ``key`` is not stored.

        """
        slot = self._store.slot_of_index(key)
        if slot is None:
            raise KeyError(key)
        return int(self._store.positions_of(slot))

    def has(self, key: str) -> bool:
        """Return whether ``key`` is stored."""
        return self._store.slot_of_index(key) is not None

    def __contains__(self, key: object) -> bool:
        return self._store.slot_of_index(key) is not None

    def __len__(self) -> int:
        return self._store.count

    def __repr__(self) -> str:
        return f"BufferIndex({len(self)} keys, maxlen={self._store.capacity})"
