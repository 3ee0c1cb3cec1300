"""The learner's view of a shared ring: which slots hold published items, and checked reads of them.

The reservation counter and the slot state words (:mod:`xreplay.shared.slots`)
are the ring of published items: the learner remembers up to which
reservation index it has looked (``drained``) and, on :meth:`PublishedSlots.drain`,
reads the state words of the reservations made since, in one vectorized pass:

* a reservation whose slot now holds its lap, ``PUBLISHED``: a new item, to
  tell the sampler about (with the writer's initial priority if it gave one);
* ``WRITING``: the slot's old item is gone and the new one not ready: it is
  forgotten now and the reservation kept *pending* until a later drain finds
  it published, abandoned, or overwritten by a later lap (a writer killed
  mid-write leaves its reservations pending until the ring comes round; nothing
  waits on them);
* a later lap: the reservation was overwritten already; an earlier lap: the
  writer skipped the slot (a live writer was still writing it).

:attr:`PublishedSlots.known` holds the low 32 bits of the word each valid slot
was published with (0: no valid item). A drain that finds a slot already
holding a later lap's published item takes that item in (a learner that
drains slowly still sees what is published). :meth:`PublishedSlots.check`
accepts a read when the slot's word was the same, published one before and
after it; a slot being written is forgotten, and the caller draws again.

Example:
    >>> import numpy as np
    >>> from xreplay.shared.slots import word, PUBLISHED, WRITING
    >>> control, states = np.zeros(16, np.int64), np.zeros(4, np.uint64)
    >>> states[:3] = [word(1, 0, PUBLISHED), word(1, 0, WRITING), word(1, 1, PUBLISHED)]; control[0] = 3
    >>> slots = PublishedSlots(control, states)
    >>> ranges, scattered, gone = slots.drain()
    >>> ranges, len(slots), slots.pending.tolist()   # slot 1 is still being written
    ([(0, 1), (2, 3)], 2, [1])
    >>> states[1] = word(1, 0, PUBLISHED); states[0] = word(2, 1, WRITING); control[0] = 5  # slot 0 laps
    >>> ranges, scattered, gone = slots.drain()
    >>> ranges, scattered.tolist(), gone.tolist(), len(slots), slots.pending.tolist()
    ([], [1], [0], 2, [4])
"""

from __future__ import annotations

import numpy as np

from xreplay.shared.layout import RESERVED
from xreplay.shared.slots import LAP_SHIFT, PUBLISHED, WRITING

__all__ = ["PublishedSlots"]

_LOW = np.uint64(0xFFFFFFFF)
_PIECE = 1 << 16  # reservations looked at per vectorized pass


class PublishedSlots:
    """Track the published slots of a shared ring from the learner (one learner per ring).

    Args:
        control: The segment's control words (the reservation counter).
        states: The slot state words.
    """

    def __init__(self, control: np.ndarray, states: np.ndarray):
        """Start knowing no item."""
        self.control = control
        self.states = states
        self.capacity = int(states.shape[0])
        self.known = np.zeros(self.capacity, dtype=np.uint32)  # low 32 bits of each valid slot's published word
        self.drained = 0  # reservations [0, drained) have been looked at
        self.pending = np.zeros(0, dtype=np.int64)  # reservation indices that were WRITING when looked at
        self.size = 0  # slots with a valid item
        self.high = 0  # slots [0, high) have held an item at some point
        self.published = 0  # items seen published
        self.forgotten = 0  # items forgotten because they changed under a read

    def __len__(self) -> int:
        """Return the number of slots holding a valid, published item."""
        return self.size

    def drain(self) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
        """Look at the reservations made since the last drain.

        Returns:
            ``(ranges, scattered, gone)``: the slots whose new item was published, as ``[start, stop)``
            ranges and as an array of single slots (each slot once overall); and the slots whose item
            was overwritten or is being overwritten, now without a valid item.
        """
        top = int(self.control[RESERVED])  # read first: every slot marked before it is visible
        cap = self.capacity
        start = max(self.drained, top - cap)  # older reservations are all overwritten by now
        self.drained = top
        ranges: list[tuple[int, int]] = []
        gone: list[np.ndarray] = []
        writing: list[np.ndarray] = []
        scattered = self._drain_pending()
        cursor = start
        while cursor < top:  # fresh reservations: pieces within one lap, of bounded size (small temporaries)
            slot = cursor % cap
            count = min(top - cursor, cap - slot, _PIECE)
            ranges += self._drain_piece(slot, count, cursor // cap + 1, gone, writing, cursor)
            cursor += count
        if writing:
            self.pending = np.concatenate([self.pending, *writing])
        gone_slots = np.concatenate(gone) if gone else np.zeros(0, dtype=np.int64)
        return ranges, scattered, gone_slots

    def _drain_piece(
        self, slot: int, count: int, lap: int, gone: list[np.ndarray], writing: list[np.ndarray], first: int
    ) -> list[tuple[int, int]]:
        """Drain fresh reservations of slots ``[slot, slot + count)`` in ``lap``; return the runs of new items."""
        states = self.states[slot : slot + count].copy()  # one read: writers keep changing the words
        state_laps = (states >> np.uint64(LAP_SHIFT)).astype(np.int64)
        phases = states & np.uint64(3)
        reached = state_laps >= lap  # this reservation (or a later one) got to the slot; else it skipped it
        published = reached & (phases == PUBLISHED)
        words = (states & _LOW).astype(np.uint32)
        known = self.known[slot : slot + count]
        lost = np.flatnonzero(reached & ~published & (known != 0))  # the old item is gone, no new one yet
        if lost.size:
            known[lost] = 0
            self.size -= int(lost.size)
            gone.append(lost + slot)
        in_flight = np.flatnonzero((state_laps == lap) & (phases == WRITING))
        if in_flight.size:
            writing.append(in_flight + first)
        new = published & (known != words)  # a published item not known yet (this lap's, or a later one's)
        if not new.any():
            return []
        was = np.count_nonzero(known[new])
        known[new] = words[new]
        total = int(np.count_nonzero(new))
        self.size += total - int(was)
        self.published += total
        # Runs of new items: where the mask switches on and off.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], new, [False]]).astype(np.int8)))
        runs = [(slot + int(a), slot + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        self.high = max(self.high, runs[-1][1])
        return runs

    def _drain_pending(self) -> np.ndarray:
        """Re-check the reservations that were being written; return the slots with new items since."""
        pending = self.pending
        if not pending.size:
            return pending
        cap = self.capacity
        slots = pending % cap
        states = self.states.take(slots)
        state_laps = (states >> np.uint64(LAP_SHIFT)).astype(np.int64)
        laps = pending // cap + 1
        phases = states & np.uint64(3)
        words = (states & _LOW).astype(np.uint32)
        self.pending = pending[(state_laps == laps) & (phases == WRITING)]
        fresh = (state_laps >= laps) & (phases == PUBLISHED) & (self.known.take(slots) != words)
        new, words = slots[fresh], words[fresh]
        if new.size:
            new, first = np.unique(new, return_index=True)  # a slot pending twice (two laps) counts once
            words = words[first]
            was = np.count_nonzero(self.known[new])
            self.known[new] = words
            self.size += int(new.size - was)
            self.published += int(new.size)
            self.high = max(self.high, int(new.max()) + 1)
        return new

    def check(self, slots: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Return which reads of ``slots`` are whole items; forget the slots that were being written.

        A read is whole when the slot's word was the same, published one before and after the copy. It
        may be a newer item than the one drained (published since): whole all the same; the next drain
        takes it in.

        Args:
            slots: Slots read.
            before: Their state words read before copying them out.
            after: Their state words read after.
        """
        ok = (before == after) & ((before & np.uint64(3)) == PUBLISHED)
        if not ok.all():
            bad = np.unique(slots[~ok])
            bad = bad[self.known[bad] != 0]
            self.known[bad] = 0
            self.size -= int(bad.size)
            self.forgotten += int(bad.size)
        return ok

    def valid_slots(self) -> np.ndarray:
        """Return every slot holding a valid item, oldest item first (by reservation index)."""
        slots = np.flatnonzero(self.known != 0)
        laps = (self.states.take(slots) >> np.uint64(LAP_SHIFT)).astype(np.int64)
        order = np.argsort((laps - 1) * self.capacity + slots, kind="stable")
        return slots[order]
