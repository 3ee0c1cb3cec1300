"""GroupedSampler: draw groups of items that share a key, whole or as windows of consecutive members.

Every stored item may carry a group key (the env that produced a transition,
the episode it belongs to, ...). The sampler keeps, per key, the slots of its
items in the order they were written, so that drawing a window of
``length`` consecutive members of a group costs O(length), not a scan of the
buffer, and keeps them up to date as items are written, removed or moved to
another group.

:meth:`GroupedSampler.sample` draws with the caller's generator (groups
uniformly, then one window start per group), vectorized. A layer that must
reproduce another library's random calls (the DI-engine layer draws with
Python's global ``random``) uses the same state through :meth:`~GroupedSampler.groups`,
:meth:`~GroupedSampler.size_of` and :meth:`~GroupedSampler.window` and makes
the draws itself.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from xreplay.errors import FieldValueError, InsufficientDataError
from xreplay.storage.resources import as_count

__all__ = ["GroupDraw", "GroupedSampler"]


@dataclasses.dataclass(frozen=True)
class GroupDraw:
    """Groups drawn by a :class:`GroupedSampler`.

    Attributes:
        groups: The key of each drawn group.
        indices: Slots, int64 ``[n, length]``: row ``i`` holds consecutive
            members of group ``groups[i]``, oldest first; ``-1`` past the group's end.
        mask: Bool ``[n, length]``, True where ``indices`` holds a slot.
    """

    groups: list[Any]
    indices: np.ndarray
    mask: np.ndarray


class _Members:
    """Slots of one group in write order: a list read from ``head`` on (cheap removal of the oldest)."""

    __slots__ = ("head", "slots")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.slots) - self.head

    def oldest(self) -> int:
        return self.slots[self.head]

    def pop_oldest(self) -> None:
        self.head += 1
        if self.head > 64 and 2 * self.head > len(self.slots):  # compact once half is dead
            del self.slots[: self.head]
            self.head = 0

    def live(self) -> list[int]:
        return self.slots[self.head :]

    def keep_only(self, slots: list[int]) -> None:
        self.slots, self.head = slots, 0


class GroupedSampler:
    """Groups of items sharing a key, sampled whole or as windows of consecutive members.

    Args:
        capacity: Number of slots.

    Example:
        >>> s = GroupedSampler(8)
        >>> s.on_write(np.arange(6), ["a", "b", "a", "a", "b", "a"])
        >>> s.groups(min_size=3), s.members("a"), s.window("a", 1, 3)
        (['a'], [0, 2, 3, 5], [2, 3])
        >>> draw = s.sample(np.random.default_rng(0), 2, length=2)
        >>> draw.groups, draw.indices.shape, bool(draw.mask.all())
        (['b', 'b'], (2, 2), True)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = as_count(capacity, "capacity", minimum=1)
        self._key_of: list[Any] = [None] * self.capacity
        self._held = np.zeros(self.capacity, dtype=bool)
        self._order = np.zeros(self.capacity, dtype=np.int64)  # write number of each slot's item
        self._writes = 0
        self._members: dict[Any, _Members] = {}

    def __len__(self) -> int:
        return int(self._held.sum())

    # -- writes ---------------------------------------------------------------

    def add(self, slot: int, key: Hashable) -> None:
        """Record that ``slot`` now holds the newest item, of group ``key`` (an item it held leaves)."""
        if self._held[slot]:
            self.remove(slot)
        self._key_of[slot] = key
        self._held[slot] = True
        self._order[slot] = self._writes
        self._writes += 1
        members = self._members.get(key)
        if members is None:
            members = self._members[key] = _Members()
        members.slots.append(slot)

    def on_write(self, slots: Iterable[int], keys: Iterable[Hashable]) -> None:
        """Record new items, oldest first: ``slots[i]`` holds an item of group ``keys[i]``."""
        for slot, key in zip(np.asarray(slots, dtype=np.int64).tolist(), keys, strict=True):
            self.add(slot, key)

    def remove(self, slot: int) -> None:
        """Record that the item in ``slot`` left (no-op for an empty slot)."""
        if not self._held[slot]:
            return
        self._held[slot] = False
        key = self._key_of[slot]
        self._key_of[slot] = None
        members = self._members[key]
        if members.oldest() == slot:  # the common case: FIFO eviction removes a group's oldest item
            members.pop_oldest()
        else:
            members.keep_only([s for s in members.live() if s != slot])
        if not len(members):
            del self._members[key]

    def on_remove(self, slots: Iterable[int]) -> None:
        """Record that the items in ``slots`` left."""
        gone = set(np.asarray(list(slots), dtype=np.int64).tolist())
        touched = {self._key_of[s] for s in gone if self._held[s]}
        for s in gone:
            if self._held[s]:
                self._held[s] = False
                self._key_of[s] = None
        for key in touched:
            members = self._members[key]
            members.keep_only([s for s in members.live() if s not in gone])
            if not len(members):
                del self._members[key]

    def set_key(self, slot: int, key: Hashable) -> None:
        """Move the item in ``slot`` to group ``key``, keeping its place in write order."""
        if not self._held[slot] or self._key_of[slot] == key:
            self._key_of[slot] = key if self._held[slot] else None
            return
        order = int(self._order[slot])
        self.remove(slot)
        self._key_of[slot] = key
        self._held[slot] = True
        self._order[slot] = order
        members = self._members.get(key)
        if members is None:
            members = self._members[key] = _Members()
        bisect.insort(members.slots, slot, lo=members.head, key=self._order.__getitem__)

    def clear(self) -> None:
        """Forget every item."""
        self._key_of = [None] * self.capacity
        self._held[:] = False
        self._members = {}

    # -- reads ----------------------------------------------------------------

    def key_of(self, slot: int) -> Any:
        """Return the group key of the item in ``slot`` (None for an empty slot)."""
        return self._key_of[slot]

    def groups(self, min_size: int = 1) -> list[Any]:
        """Return the keys of groups with at least ``min_size`` items, in the write order of their oldest item."""
        keys = [k for k, m in self._members.items() if len(m) >= min_size]
        oldest = self._order.take([self._members[k].oldest() for k in keys])
        return [keys[i] for i in np.argsort(oldest, kind="stable").tolist()]

    def size_of(self, key: Hashable) -> int:
        """Return the number of items in group ``key``."""
        members = self._members.get(key)
        return 0 if members is None else len(members)

    def members(self, key: Hashable) -> list[int]:
        """Return the slots of group ``key``, oldest first."""
        members = self._members.get(key)
        return [] if members is None else members.live()

    def window(self, key: Hashable, start: int, stop: int) -> list[int]:
        """Return the slots of members ``start:stop`` of group ``key`` (oldest = 0)."""
        members = self._members.get(key)
        return [] if members is None else members.slots[members.head + start : members.head + stop]

    def windows(self, keys: list[Any], starts: Any, length: int) -> GroupDraw:
        """Return, for each group ``keys[i]``, its members ``starts[i] : starts[i] + length`` as one array."""
        n = len(keys)
        indices = np.full((n, length), -1, dtype=np.int64)
        for row, (key, start) in enumerate(zip(keys, np.asarray(starts).tolist(), strict=True)):
            part = self.window(key, start, start + length)
            indices[row, : len(part)] = part
        return GroupDraw(list(keys), indices, indices >= 0)

    def sample(self, rng: np.random.Generator, n: int, length: int | None = None, replace: bool = True) -> GroupDraw:
        """Draw ``n`` groups uniformly, and a window of ``length`` consecutive members from each.

        Args:
            rng: The generator every draw comes from.
            n: Number of groups.
            length: Window length; only groups with at least ``length`` items
                are drawn, and every full window is equally likely. None: whole
                groups, padded to the largest.
            replace: Draw groups with replacement.

        Raises:
            InsufficientDataError: No group is large enough, or fewer than ``n`` without replacement.
        """
        n = as_count(n, "sample size")
        if length is not None:
            length = as_count(length, "length", minimum=1)
        candidates = self.groups(1 if length is None else length)
        if not candidates or (not replace and len(candidates) < n):
            need = "a group" if replace else f"{n} groups"
            raise InsufficientDataError(
                f"cannot draw {n} groups: {need} of at least {length or 1} items is needed, "
                f"{len(candidates)} of the {len(self._members)} groups qualify"
            )
        keys = [candidates[i] for i in rng.choice(len(candidates), size=n, replace=replace).tolist()]
        sizes = np.array([self.size_of(k) for k in keys], dtype=np.int64)
        if length is None:
            return self.windows(keys, np.zeros(n, dtype=np.int64), int(sizes.max(initial=0)))
        starts = rng.integers(0, sizes - length + 1)  # each full window equally likely
        return self.windows(keys, starts, length)

    # -- checkpoints ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return each held slot's key, in write order."""
        held = np.flatnonzero(self._held)
        slots = held[np.argsort(self._order[held], kind="stable")]
        return {"capacity": self.capacity, "slots": slots, "keys": [self._key_of[s] for s in slots.tolist()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the contents with :meth:`state_dict`'s; on any error nothing changes.

        Raises:
            FieldValueError: another capacity, slots outside it or repeated, or keys not one per slot.
        """
        slots = np.asarray(state["slots"], dtype=np.int64).reshape(-1)
        keys = list(state["keys"])
        if int(state["capacity"]) != self.capacity:
            raise FieldValueError(f"grouped sampler state is for capacity {state['capacity']}, not {self.capacity}")
        if (
            len(keys) != slots.size
            or np.unique(slots).size != slots.size
            or (slots.size and not (0 <= slots.min() and slots.max() < self.capacity))
        ):
            raise FieldValueError(f"grouped sampler state: need distinct slots in [0, {self.capacity}), one key each")
        self.clear()
        self.on_write(slots, keys)
