"""Group index and group sampling for ``DequeBuffer.sample(groupby=..., unroll_len=...)``.

A ``GroupIndex`` keeps, for one groupby key, the slots of each group value in
storage order, so drawing a window of ``unroll_len`` records costs
O(unroll_len) rather than a scan of the buffer. It is kept in step with
pushes, evictions, deletes and meta updates, and rebuilt from the stored
metas whenever it might be out of date.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable
from typing import Any

__all__ = ["GroupIndex", "candidate_groups", "choose_groups", "window"]


class _Members:
    """Slots of one group in storage order: a list read from ``head`` on (cheap pops from the left)."""

    __slots__ = ("head", "slots")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.slots) - self.head

    def popleft(self) -> int:
        slot = self.slots[self.head]
        self.head += 1
        if self.head > 64 and 2 * self.head > len(self.slots):  # compact once half is dead
            del self.slots[: self.head]
            self.head = 0
        return slot

    def window(self, start: int, stop: int) -> list[int]:
        return self.slots[self.head + start : self.head + stop]

    def all(self) -> list[int]:
        return self.slots[self.head :]

    def keep_only(self, slots: list[int]) -> None:
        self.slots, self.head = slots, 0


class GroupIndex:
    """Slots of each value of one meta key, in storage order.

    Args:
        key: The meta key grouped by.
        source: The ``meta_index[key]`` sequence this index was built alongside.
        version: The storage version the index reflects.

    Example:
        >>> g = GroupIndex("env", source=[], version=0)
        >>> for slot, env in enumerate([0, 1, 0]):
        ...     g.add(slot, env)
        >>> g.evict(0)
        >>> g.members_of(0), g.count(1)
        ([2], 1)

    """

    def __init__(self, key: Hashable, source: Any, version: int):
        self.key = key
        self.source = source
        self.version = version
        self.value_of: dict[int, Any] = {}
        self.members: dict[Any, _Members] = {}

    def add(self, slot: int, value: Any) -> None:
        """Append ``slot`` (the newest item) to its group."""
        self.value_of[slot] = value
        members = self.members.get(value)
        if members is None:
            members = self.members[value] = _Members()
        members.slots.append(slot)

    def evict(self, slot: int) -> None:
        """Drop ``slot``, the oldest stored item."""
        value = self.value_of.pop(slot)
        members = self.members[value]
        if members.slots[members.head] == slot:
            members.popleft()
        else:  # not the oldest of its group: fall back to a filtered copy
            members.keep_only([s for s in members.all() if s != slot])
        if not len(members):
            del self.members[value]

    def remove(self, slots: Iterable[int]) -> None:
        """Drop ``slots`` wherever they are."""
        gone = set(slots)
        touched = {self.value_of.pop(s) for s in gone if s in self.value_of}
        for value in touched:
            members = self.members[value]
            members.keep_only([s for s in members.all() if s not in gone])
            if not len(members):
                del self.members[value]

    def set_value(self, slot: int, value: Any, position: Callable[[int], int]) -> None:
        """Move ``slot`` to group ``value``, keeping storage order (``position`` maps slot to position)."""
        if slot not in self.value_of or self.value_of[slot] == value:
            self.value_of[slot] = value
            return
        self.remove([slot])
        self.add(slot, value)
        members = self.members[value]
        members.keep_only(sorted(members.all(), key=position))

    def count(self, value: Any) -> int:
        """Return how many stored items have ``value``."""
        members = self.members.get(value)
        return 0 if members is None else len(members)

    def members_of(self, value: Any) -> list[int]:
        """Return the slots of group ``value`` in storage order."""
        members = self.members.get(value)
        return [] if members is None else members.all()

    def window_of(self, value: Any, start: int, stop: int) -> list[int]:
        """Return slots ``start:stop`` of group ``value``."""
        members = self.members.get(value)
        return [] if members is None else members.window(start, stop)


def candidate_groups(index: GroupIndex, unroll_len: int | None, position: Callable[[int], int]) -> list[Any]:
    """Return the groups eligible for sampling, in DI-engine's order.

    Without ``unroll_len > 1``: every group, in the iteration order of a set
    of the values (as DI-engine). With it: groups holding at least
    ``unroll_len`` records, ordered by their first occurrence in storage
    (``position`` maps a slot to its storage position).
    """
    if not (unroll_len and unroll_len > 1):
        return list(set(list(index.members)))
    eligible = [g for g, m in index.members.items() if len(m) >= unroll_len]
    return sorted(eligible, key=lambda g: position(index.members[g].slots[index.members[g].head]))


def choose_groups(groups: list[Any], size: int, replace: bool) -> list[Any]:
    """Draw ``size`` groups with Python's global ``random``.

    Raises:
        ValueError: fewer groups than ``size`` without replacement.

    """
    if replace:
        return random.choices(groups, k=size)
    if len(groups) < size:
        raise ValueError(
            f"There are less than {size} groups in buffer({len(groups)} groups); "
            "sample fewer groups or pass replace=True"
        )
    return random.sample(groups, k=size)


def window(length: int, unroll_len: int, sliced: bool, full_last_window: bool = False) -> tuple[int, int]:
    """Draw the ``(start, stop)`` of an ``unroll_len`` window in a group of ``length`` records.

    Args:
        length: Number of records in the group.
        unroll_len: Window length.
        sliced: Windows start at multiples of ``unroll_len``; the last one is
            aligned to the group's end.
        full_last_window: Also allow the last full window when not sliced
            (DI-engine never draws it: defect D7, kept by default).

    Returns:
        The half-open range of record positions.

    """
    if sliced:
        chunk = random.choice(range(max(1, length))) // unroll_len
        if chunk == (length - 1) // unroll_len:
            return max(0, length - unroll_len), length  # the final chunk, right-aligned
        return chunk * unroll_len, chunk * unroll_len + unroll_len
    span = length - unroll_len + (1 if full_last_window else 0)
    start = random.choice(range(max(1, span)))
    return start, start + unroll_len
