"""How ``DequeBuffer.sample`` selects records: uniformly, by index, or by group, then de-aliased.

Every draw goes through Python's global ``random`` with DI-engine's calls in
its order (:mod:`xreplay.compat.ding.rng`, :mod:`xreplay.compat.ding.groups`),
so a seeded run samples the same records as DI-engine.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from xreplay.compat.ding.data import BufferedData, fastcopy
from xreplay.compat.ding.groups import GroupIndex, candidate_groups, choose_groups, window
from xreplay.compat.ding.records import RecordStore
from xreplay.compat.ding.rng import sample_positions
from xreplay.errors import IndexOutOfRangeError, UnknownIndexError

__all__ = ["by_groups", "by_indices", "deduplicate", "group_index", "uniform"]


def uniform(store: RecordStore, size: int, replace: bool, positions: range | None) -> list[BufferedData]:
    """Draw positions as ``random.choices``/``random.sample`` over the population would, then fetch."""
    n = store.count if positions is None else len(positions)
    if replace:
        if n == 0:  # random.choices would raise a bare IndexError (as DI-engine)
            raise IndexOutOfRangeError(f"cannot draw {size} records with replacement from an empty buffer")
        picks = random.choices(range(n), k=size)
    else:
        try:
            picks = sample_positions(n, size)
        except ValueError:
            return []
    items = store.items
    if positions is None and store.contiguous:
        head = store.head  # storage position p is ring index (and slot) head + p
        if head == 0:
            return list(map(items.__getitem__, picks))
        capacity = store.capacity
        return [items[p + head - capacity if p + head >= capacity else p + head] for p in picks]
    where = np.array(picks, dtype=np.int64)
    if positions is not None:
        where = positions.start + positions.step * where  # population index -> storage position
    return list(map(items.__getitem__, store.slots_at(where).tolist()))


def by_indices(store: RecordStore, indices: Iterable[str], positions: range | None) -> list[BufferedData]:
    """Return the records of ``indices`` in order; ``KeyError`` for one not in the population."""
    items, slot_of_index = store.items, store.slot_of_index
    if positions is None:
        hint = store.slot_hint
        if hint is not None and hint[0] is indices and hint[2] == store.version and hint[3] == indices:
            return list(map(items.__getitem__, hint[1]))  # the slots the indices were spelled from
        result = []
        for i in indices:
            slot = slot_of_index(i)
            if slot is None:
                raise UnknownIndexError(f"no stored record has index {i!r} (evicted, deleted or never pushed)")
            result.append(items[slot])
        return result
    result = []
    for i in indices:
        slot = slot_of_index(i)
        if slot is None or int(store.positions_of(slot)) not in positions:
            raise UnknownIndexError(f"no record in the sampled range has index {i!r}")
        result.append(items[slot])
    return result


def by_groups(
    buffer: Any, key: Any, size: int, replace: bool, unroll_len: int | None, positions: range | None
) -> list[list[BufferedData]]:
    """Draw groups, then their records (whole, or a window of ``unroll_len``)."""
    index = group_index(buffer, key)
    groups = candidate_groups(index, unroll_len)
    if not groups and unroll_len and unroll_len > 1:
        return []
    chosen = choose_groups(groups, size, replace)
    items, sampler = buffer._store.items, index.sampler
    windows = (buffer.sliced, buffer.full_last_window)
    if positions is not None:
        return _groups_in_range(buffer._store, index, chosen, unroll_len, positions, windows)
    if not unroll_len:
        lists: dict[Any, list] = {}
        for g in chosen:  # a group drawn twice shares one list, as in DI-engine
            if g not in lists:
                lists[g] = [items[s] for s in sampler.members(g)]
        return [lists[g] for g in chosen]
    result = []
    for g in chosen:
        start, stop = window(sampler.size_of(g), unroll_len, *windows)
        result.append([items[s] for s in sampler.window(g, start, stop)])
    return result


def _groups_in_range(
    store: RecordStore, index: GroupIndex, chosen: list, unroll_len: int | None, positions: range, windows: tuple
) -> list[list[BufferedData]]:
    """Group sampling restricted to a positional range (a scan of the range)."""
    wanted = set(chosen)
    lists: dict[Any, list] = {g: [] for g in wanted}
    for slot in store.slots_at(np.arange(positions.start, positions.stop, positions.step)).tolist():
        value = index.sampler.key_of(slot)
        if value in wanted:
            lists[value].append(store.items[slot])
    if not unroll_len:
        return [lists[g] for g in chosen]
    result = []
    for g in chosen:
        start, stop = window(len(lists[g]), unroll_len, *windows)
        result.append(lists[g][start:stop])
    return result


def group_index(buffer: Any, key: Any) -> GroupIndex:
    """Return an up-to-date group index for ``key``, creating ``meta_index[key]`` on first use."""
    store = buffer._store
    seq = buffer.meta_index.get(key)
    if seq is None:
        seq = deque((item.meta.get(key) for item in store.iter_items()), maxlen=store.capacity)
        buffer.meta_index[key] = seq
    index = buffer._groups.get(key)
    if index is None or index.source is not seq or index.version != store.version:
        index = GroupIndex(store.capacity, seq, store.version)
        items, add = store.items, index.sampler.add
        for slot in store.ordered_slots().tolist():
            add(slot, items[slot].meta.get(key))
        buffer._groups[key] = index
    return index


def deduplicate(result: list) -> None:
    """Replace, in place, every repeated record after its first occurrence by a copy (flat or grouped).

    Records come straight from the store, where one object holds one index,
    so a record repeats exactly when the same object repeats.
    """
    seen: set[int] = set()
    for j, entry in enumerate(result):
        if isinstance(entry, list):
            ids = list(map(id, entry))
            if seen.isdisjoint(ids) and len(set(ids)) == len(ids):  # the common case: nothing repeats
                seen.update(ids)
                continue
            for k, record in enumerate(entry):
                entry[k] = _first_or_copy(record, seen)
        else:
            result[j] = _first_or_copy(entry, seen)


def _first_or_copy(record: Any, seen: set[int]) -> BufferedData:
    """Return ``record`` the first time it is seen, a copy afterwards."""
    if not isinstance(record, BufferedData):
        raise TypeError(f"unexpected sampled element of type {type(record).__name__}")
    if id(record) in seen:
        return fastcopy(record)
    seen.add(id(record))
    return record
