"""SlotGuard: which slots a write is copying into, so that readers outside the lock never return a torn item.

Every write takes a new version number when it reserves its slots and,
while a read is under way outside the lock, stamps them with it; a write
that copies outside the lock also marks its slots busy until its copy ends. A reader draws in a critical section, waits
for drawn slots that are busy, notes the version, reads without the lock,
and keeps what it read only if no drawn slot was stamped since (otherwise it
draws again; after a few tries it reads holding the lock exclusively). With
one thread nothing is ever busy or stamped, and a read costs two counter
checks, in one critical section.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from xreplay.buffers.locking import MutationLock
    from xreplay.writers import RingWriter, SlotPlan

__all__ = ["SlotGuard"]

D = TypeVar("D")
R = TypeVar("R")

TRIES = 8  # optimistic reads before a reader takes the lock exclusively
COPY_OUTSIDE_LOCK = 16 * 1024  # bytes of a write from which its copy runs outside the buffer's lock


class SlotGuard:
    """Busy marks and write stamps of ``capacity`` slots (9 bytes a slot; call under the buffer's lock).

    Example:
        >>> from xreplay.writers import RingWriter
        >>> guard, writer = SlotGuard(4), RingWriter(4)
        >>> plan = writer.plan(2)
        >>> guard.reserve(plan, copying=True)
        >>> guard.busy(np.array([0, 3])), guard.busy(np.array([2, 3]))
        (True, False)
        >>> guard.enter_read()  # a read is under way: writes stamp their slots
        >>> seen = guard.version
        >>> guard.reserve(writer.plan(1), copying=False)
        >>> guard.written_since(np.array([3]), seen), guard.written_since(np.array([0]), seen)
        (False, True)
    """

    def __init__(self, capacity: int):
        """Mark every slot free and unstamped (the marks are allocated with the first write)."""
        self.capacity = capacity
        self.version = 0  # writes reserved so far (bumped before any slot changes)
        self.clears = 0  # times the buffer forgot everything (its sample counters started over)
        self.copying = 0  # writes copying outside the lock now
        self._readers: deque[None] = deque()  # one entry per read between its draw and its check
        self._busy = np.zeros(0, dtype=np.uint8)  # writes copying into each slot now
        self._stamp = np.zeros(0, dtype=np.int64)  # version of the last write reserved on each slot

    def enter_read(self) -> None:
        """Count a read that begins outside the lock (call in a critical section: writes from then on stamp)."""
        self._readers.append(None)

    def leave_read(self) -> None:
        """Uncount a read whose copy ended (safe without the lock: a deque pops atomically)."""
        self._readers.pop()

    def _allocate(self) -> None:
        """Allocate the marks (with the first write)."""
        self._busy = np.zeros(self.capacity, dtype=np.uint8)
        self._stamp = np.zeros(self.capacity, dtype=np.int64)

    def reserve(self, plan: SlotPlan, copying: bool) -> None:
        """Stamp the slots of ``plan`` with a new version; mark them busy if the write copies without the lock."""
        self.version = version = self.version + 1
        if not (self._readers or copying):
            return  # no read is under way to be told, and the copy ends inside the lock
        if not self._stamp.size:
            self._allocate()
        for slot, _item, count in plan.segments:
            if self._readers:
                self._stamp[slot : slot + count] = version
            if copying:
                self._busy[slot : slot + count] += 1
        if copying:
            self.copying += 1

    def release(self, plan: SlotPlan) -> None:
        """Mark the slots of ``plan`` free again: the write's copy ended."""
        for slot, _item, count in plan.segments:
            self._busy[slot : slot + count] -= np.uint8(1)
        self.copying -= 1

    def touch_all(self, cleared: bool = False) -> None:
        """Stamp every slot with a new version before the whole buffer changes (``cleared``: by a clear).

        Call it before the first change: a read under way then sees the version move and draws again.
        """
        self.version += 1
        self.clears += cleared
        if self._readers:
            if not self._stamp.size:
                self._allocate()
            self._stamp[:] = self.version

    def busy(self, slots: np.ndarray) -> bool:
        """Return whether a write is copying into any of ``slots``."""
        return self.copying > 0 and bool(self._busy[slots].any())

    def planned_busy(self, plan: SlotPlan) -> bool:
        """Return whether a write is copying into any slot of ``plan``."""
        return self.copying > 0 and any(self._busy[s : s + c].any() for s, _i, c in plan.segments)

    def written_since(self, slots: np.ndarray, version: int) -> bool:
        """Return whether a write reserved any of ``slots`` after ``version`` (while this read was counted)."""
        if self.version == version:
            return False
        return not self._stamp.size or bool((self._stamp[slots] > version).any())

    def plan(self, lock: MutationLock, writer: RingWriter, n: int, copying: bool) -> SlotPlan:
        """Plan a write of ``n`` items and reserve its slots (call inside a critical section of ``lock``).

        Waits while a thread waits for the lock exclusively, or while a write a full lap ahead still
        copies into one of the planned slots.
        """
        if lock.pending or self.copying:  # otherwise (the common case) there is nothing to wait for
            lock.yield_to_exclusive()
            while self.planned_busy(plan := writer.plan(n)):
                lock.wait(0.01)
                lock.yield_to_exclusive()
        else:
            plan = writer.plan(n)
        self.reserve(plan, copying)
        return plan

    def write(
        self,
        lock: MutationLock,
        writer: RingWriter,
        n: int,
        nbytes: int,
        copy: Callable[[SlotPlan], None],
        tell: Callable[[SlotPlan], None] | None,
        still: Callable[[], bool] | None = None,
    ) -> SlotPlan | None:
        """Write ``n`` items of ``nbytes``: reserve, ``copy`` into the slots and ``tell`` the sampler (None: nothing).

        Slots are reserved, the cursor advanced and ``tell`` called in one critical section, in write
        order; a copy of ``COPY_OUTSIDE_LOCK`` bytes or more runs outside the lock with its slots busy.
        ``still``, checked in that critical section, may refuse the write (None is returned, nothing done).
        """
        outside = nbytes >= COPY_OUTSIDE_LOCK
        with lock.critical():
            if still is not None and not still():
                return None
            plan = self.plan(lock, writer, n, copying=outside)
            if not outside:  # a small copy costs less than a second trip through the lock
                copy(plan)
            writer.commit(n)
            if tell is not None:
                tell(plan)
            if not outside:
                return plan
            lock.begin_write()
        try:
            copy(plan)
        finally:
            with lock.critical():
                self.release(plan)
                lock.end_write()
        return plan

    def reserve_one(self, lock: MutationLock, writer: RingWriter) -> int:
        """Reserve and stamp the slot of a write of one item copied under the lock; return it (as :meth:`plan`)."""
        if lock.pending or self.copying:
            return self.plan(lock, writer, 1, copying=False).segments[0][0]
        slot = writer.cursor
        self.version += 1
        if self._readers:
            if not self._stamp.size:
                self._allocate()
            self._stamp[slot] = self.version
        return slot

    def read(
        self,
        lock: MutationLock,
        draw: Callable[[], D],
        slots_of: Callable[[D], np.ndarray],
        read: Callable[[D], R],
        keep: Callable[[D, int], None] | None = None,
        redraw: Callable[[D, np.ndarray], D] | None = None,
    ) -> tuple[D, R]:
        """Draw under ``lock``, read the drawn slots outside it, and return both once no write touched them.

        ``slots_of`` gives a draw's slots (``[n]`` items or ``[n, steps]`` windows); ``redraw(drawn, rows)``
        draws the items of ``rows`` again (busy slots are being overwritten: their old items are gone and
        the new ones not yet whole), or is None where a draw cannot be partly redone (then the reader
        waits for the copies). ``keep(drawn, 1)`` runs in the critical section of the draw, and
        ``keep(drawn, -1)`` undoes it (in a critical section) when the read is not kept, unless the
        buffer was cleared meanwhile. The check that no write touched the drawn slots needs no lock
        when the version did not move, so every change to slots must bump it first.
        """
        for _ in range(TRIES):
            with lock.critical():
                drawn = draw()
                if self.copying:  # redraw (or wait for) items on slots a write is copying into
                    clear = self._avoid_busy(lock, drawn, slots_of, redraw)
                    if clear is None:  # a write stamped a slot it waited for: draw again
                        continue
                    drawn = clear
                seen = self.version
                self._readers.append(None)  # from here on, writes stamp their slots
                if keep is not None:
                    keep(drawn, 1)
                clears = self.clears  # a clear resets the counters: then there is nothing to undo
            try:
                got = read(drawn)
            except BaseException:
                self._readers.pop()
                if keep is not None:
                    with lock.critical():
                        if self.clears == clears:
                            keep(drawn, -1)
                raise
            self._readers.pop()
            if self.version == seen:  # no write reserved a slot since the draw (the common case, no lock)
                return drawn, got
            with lock.critical():
                if not self.written_since(slots_of(drawn), seen):
                    return drawn, got
                if keep is not None and self.clears == clears:
                    keep(drawn, -1)
        with lock:  # many writes raced this reader: read with no write copying and none starting
            last = draw()
            got = read(last)
            if keep is not None:
                keep(last, 1)
            return last, got

    def _avoid_busy(
        self,
        lock: MutationLock,
        drawn: D,
        slots_of: Callable[[D], np.ndarray],
        redraw: Callable[[D, np.ndarray], D] | None,
    ) -> D | None:
        """Return ``drawn`` with no item on a busy slot (redrawn or waited for), or None to draw again."""
        seen = self.version
        for _ in range(TRIES):
            if not self.copying:
                return drawn
            slots = slots_of(drawn)
            rows = self._busy[slots].reshape(slots.shape[0], -1).any(axis=1)
            if not rows.any():
                return drawn
            if redraw is None:
                break
            drawn = redraw(drawn, rows)
        slots = slots_of(drawn)
        self.enter_read()  # while it waits, writes stamp their slots
        try:
            while self.busy(slots) and not self.written_since(slots, seen):
                lock.wait(0.01)  # a write is copying into a drawn slot: its item becomes whole soon
            return None if self.written_since(slots, seen) else drawn
        finally:
            self.leave_read()
