"""``DequeBuffer``: DI-engine's FIFO buffer of ``BufferedData`` over xreplay's object storage."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from xreplay.compat.ding import selection
from xreplay.compat.ding.arguments import _range_positions, check_sample_arguments
from xreplay.compat.ding.base import Buffer, apply_middleware
from xreplay.compat.ding.data import BufferedData
from xreplay.compat.ding.groups import GroupIndex
from xreplay.compat.ding.records import RecordStore
from xreplay.compat.ding.views import BufferIndex, StorageView
from xreplay.errors import (
    ArgumentError,
    FieldTypeError,
    InsufficientDataError,
    NotACheckpointError,
    UnknownIndexError,
)
from xreplay.persistence import load, save
from xreplay.storage.resources import as_count, check_allocation

__all__ = ["DequeBuffer"]

logger = logging.getLogger(__name__)


class DequeBuffer(Buffer):
    """A first-in-first-out buffer of ``BufferedData`` with DI-engine's API and results.

    Pushing into a full buffer evicts the oldest record. Sampling draws
    through Python's global ``random`` exactly as DI-engine does, so a seeded
    run samples the same records. Positions, index lookups and group windows
    cost O(1) or O(window), not O(size).

    Thread-safe: every push, sample, update, delete and save takes the buffer's lock for its call, so
    collector threads may push while a learner thread samples.

    Args:
        size: Capacity.
        sliced: Group windows start at multiples of ``unroll_len``.
        full_last_window: Let non-sliced group windows also start at the last
            full window (fixes DI-engine's off-by-one, defect D7; off by default
            for sample parity).

    Example:
        >>> import random
        >>> buf = DequeBuffer(size=3)
        >>> for x in range(5):
        ...     _ = buf.push(x, meta={"env": x % 2})
        >>> buf.count(), [d.data for d in buf.storage]
        (3, [2, 3, 4])
        >>> random.seed(0)
        >>> sorted(d.data for d in buf.sample(2))
        [3, 4]

    """

    def __init__(self, size: int, sliced: bool = False, full_last_window: bool = False) -> None:
        size = as_count(size, "size", minimum=1)
        super().__init__(size)
        self._store = RecordStore(size)
        self.storage = StorageView(self._store)
        self.indices = BufferIndex(self._store)
        self.meta_index: dict[Any, Any] = {}
        self.sliced = sliced
        self.full_last_window = full_last_window
        self._groups: dict[Any, GroupIndex] = {}

    # ----------------------------------------------------------------- push
    @apply_middleware("push")
    def push(self, data: Any, meta: dict | None = None) -> BufferedData:
        """Store ``data`` with ``meta`` (kept by reference) and return the stored record.

        Args:
            data: Any payload, stored by reference.
            meta: Meta dict, stored by reference (an empty or missing meta becomes a new ``{}``).

        Returns:
            The stored ``BufferedData``.

        Raises:
            FieldTypeError: ``meta`` is neither None nor a mapping (nothing is stored).

        """
        if meta is not None and not isinstance(meta, Mapping):
            raise FieldTypeError(f"meta must be a dict or None, received {type(meta).__name__}: {meta!r:.60}")
        store = self._store
        version = store.version
        item, slot, evicted = store.push(data, meta or {})
        if self.meta_index:
            self._index_push(slot, evicted, item.meta, version)
        return item

    def _index_push(self, slot: int, evicted: int, meta: dict, version: int) -> None:
        """Append the new record's group values to ``meta_index`` and the group indexes."""
        for key, seq in self.meta_index.items():
            value = meta.get(key)
            seq.append(value)
            group = self._groups.get(key)
            if group is not None and group.source is seq and group.version == version:
                if evicted >= 0:
                    group.sampler.remove(evicted)
                group.sampler.add(slot, value)
                group.version = self._store.version

    # --------------------------------------------------------------- sample
    @apply_middleware("sample")
    def sample(
        self,
        size: int | None = None,
        indices: list[str] | None = None,
        replace: bool = False,
        sample_range: slice | None = None,
        ignore_insufficient: bool = False,
        groupby: str | None = None,
        unroll_len: int | None = None,
    ) -> list[BufferedData] | list[list[BufferedData]]:
        """Sample records uniformly, by index, or by group.

        Args:
            size: Number of records (or groups with ``groupby``).
            indices: Index strings to return, in this order (duplicates allowed).
            replace: Draw with replacement.
            sample_range: Positional slice of the storage to draw from (oldest = 0).
            ignore_insufficient: Return ``[]`` (with a logged warning) instead of raising.
            groupby: Meta key; returns one list of records per drawn group.
            unroll_len: With ``groupby``, cut each group to a window of this length.

        Returns:
            The records (stored objects; repeated records after the first are copies),
            or a list of record lists with ``groupby``.

        Raises:
            ArgumentAssertionError: inconsistent arguments (an AssertionError, as DI-engine).
            ArgumentError: ``size`` or ``unroll_len`` is not an int (also a TypeError).
            InsufficientDataError: (a ``ValueError``) too few records or groups.
            UnknownIndexError: an unknown index in ``indices`` (a KeyError, as DI-engine).
            IndexOutOfRangeError: ``replace=True`` on an empty population (an IndexError, as DI-engine).

        """
        if indices and not hasattr(indices, "__len__"):  # e.g. sample(3, True): DI-engine's len() TypeError
            raise ArgumentError(f"sample: indices must be a list of index strings, received {indices!r}")
        size = check_sample_arguments(size, len(indices) if indices else None, groupby, unroll_len)
        # The result list, and with replacement one copy per repeated record (about 200 bytes each).
        check_allocation(size * (200 if replace else 8), "cpu", lambda: f"a sample of {size} records", "sample fewer")
        positions = _range_positions(sample_range, self._store.count) if sample_range else None
        if indices:
            result: list = selection.by_indices(self._store, indices, positions)
        elif groupby:
            result = selection.by_groups(self, groupby, size, replace, unroll_len, positions)
        else:
            result = selection.uniform(self._store, size, replace, positions)
        if len(result) != size:
            if ignore_insufficient:
                logger.warning(
                    "sample(%s) returns %d records/groups: the buffer holds %d",
                    size,
                    len(result),
                    self.count(),
                )
                return result
            raise InsufficientDataError(
                f"There are less than {size} records/groups in buffer({self.count()}); "
                "sample fewer, push more or pass ignore_insufficient=True"
            )
        # A stored record is one object, so repeated indices are repeated objects (ints hash faster than strings).
        if groupby or replace or (indices and len(set(map(id, result))) != len(result)):
            selection.deduplicate(result)
        return result

    # ------------------------------------------------------ update / delete
    @apply_middleware("update")
    def update(self, index: str, data: Any = None, meta: dict | None = None) -> bool:
        """Replace a record's data (unless ``None``) and meta (unless ``None``; replaced, not merged).

        Args:
            index: The record's index string.
            data: New payload, or ``None`` to keep it.
            meta: New meta dict, or ``None`` to keep it.

        Returns:
            False when ``index`` is not stored, else True.

        Raises:
            FieldTypeError: ``meta`` is neither None nor a mapping (nothing is changed).

        """
        if meta is not None and not isinstance(meta, Mapping):
            raise FieldTypeError(f"meta must be a dict or None, received {type(meta).__name__}: {meta!r:.60}")
        store = self._store
        slot = store.slot_of_index(index)
        if slot is None:
            return False
        item = store.items[slot]
        if data is not None:
            item.data = data
        if meta is not None:
            item.meta = meta
            version = store.version
            store.touch()
            if not self.meta_index:
                return True
            position = int(store.positions_of(slot))
            for key, seq in self.meta_index.items():
                value = meta.get(key)
                if position < len(seq):
                    seq[position] = value
                group = self._groups.get(key)
                if group is not None and group.source is seq and group.version == version:
                    group.sampler.set_key(slot, value)
                    group.version = store.version
        return True

    @apply_middleware("delete")
    def delete(self, indices: str | Iterable[str]) -> None:
        """Remove the records of ``indices`` (one string or several); unknown ones are ignored.

        Args:
            indices: Index string(s).

        """
        store = self._store
        keys = [indices] if isinstance(indices, str) else indices
        slots = [s for s in map(store.slot_of_index, keys) if s is not None]
        if not slots:
            return
        gone = set(store.positions_of(slots).tolist())
        for seq in self.meta_index.values():  # fixed D2: drop the deleted positions
            kept = [v for p, v in enumerate(seq) if p not in gone]
            seq.clear()
            seq.extend(kept)
        version = store.version
        store.remove(slots)
        for key, group in self._groups.items():
            if group.source is self.meta_index.get(key) and group.version == version:
                group.sampler.on_remove(slots)
                group.version = store.version

    @apply_middleware("clear")
    def clear(self) -> None:
        """Remove every record and forget the groupby keys."""
        self._store.clear()
        self.meta_index = {}
        self._groups = {}

    # ---------------------------------------------------------------- reads
    def count(self) -> int:
        """Return the number of stored records."""
        return self._store.count

    def get(self, idx: int) -> BufferedData:
        """Return the record at storage position ``idx`` (negative from the newest)."""
        with self._lock:
            return self.storage[idx]

    def get_by_index(self, index: str) -> BufferedData:
        """Return the record with index string ``index``.

        Raises:
            UnknownIndexError: ``index`` is not stored (a KeyError, as DI-engine).

        """
        with self._lock:
            slot = self._store.slot_of_index(index)
            if slot is None:
                raise UnknownIndexError(f"no stored record has index {index!r} (evicted, deleted or never pushed)")
            return self._store.items[slot]

    def __iter__(self) -> Iterator[BufferedData]:
        return iter(self.storage)

    def __copy__(self) -> DequeBuffer:
        """Return a view: a new buffer sharing the records, without middleware and unsliced."""
        other = DequeBuffer(self.size)
        other._store, other.storage, other.indices = self._store, self.storage, self.indices
        other.meta_index = self.meta_index
        other._lock = self._lock
        return other

    # ---------------------------------------------------------- persistence
    def save_data(self, file_name: str | os.PathLike[str]) -> None:
        """Save records, indices, ``meta_index`` and middleware state as a checkpoint directory ``file_name``.

        An xreplay checkpoint (kind ``ding.deque_buffer``, see
        :mod:`xreplay.compat.ding.checkpoint` for the layout and what it can hold
        without pickling): missing parent directories are created and an earlier
        save at ``file_name`` is replaced atomically. Pushes from other threads
        wait while the buffer is copied. ``xreplay.persistence.load(file_name)``
        also returns it as a new buffer (without middleware).

        Args:
            file_name: The checkpoint directory.

        Raises:
            NotACheckpointError: ``file_name`` is an existing file or non-checkpoint directory.
            CheckpointWriteError: writing failed; an earlier checkpoint there is intact.

        """
        path = Path(file_name)
        if path.is_file() or path.is_symlink():
            raise NotACheckpointError(
                f"will not save to {path}: it is a file, not an xreplay checkpoint directory; remove it or choose "
                "another name",
                path,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        save(self, path, incremental=False)  # the save holds self._lock while it copies

    def load_data(self, file_name: str | os.PathLike[str], trusted: bool = False) -> None:
        """Replace records, indices, ``meta_index`` and middleware state by those saved at ``file_name``.

        Args:
            file_name: A checkpoint written by ``save_data``.
            trusted: Allow records that only unpickling restores (objects of your own classes);
                unpickling runs code chosen by whoever wrote the checkpoint, so only for trusted files.

        Raises:
            CheckpointError: missing, corrupt (checksums), of a newer format, of
                another kind or capacity, or lacking the state of one of this
                buffer's stateful middleware; nothing is changed then.
            UntrustedCheckpointError: the records need unpickling and ``trusted`` is False.

        """
        with self._lock:
            load(file_name, kind="ding.deque_buffer", into=self, trusted=trusted)
