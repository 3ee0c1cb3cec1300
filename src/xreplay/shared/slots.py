"""Slot reservation and publication: how writer processes share one ring without showing a torn item.

Every slot has a 64-bit state word ``lap << 12 | writer << 2 | phase``:

* ``lap`` is how many times the ring has reached the slot (reservation index
  ``r`` takes slot ``r % capacity`` in lap ``r // capacity + 1``), so a slot's
  words only grow and never repeat;
* ``writer`` is the index of the writer handle in the writer table (pid and
  start time), which tells a slot left mid-write by a dead process from one a
  live writer is still filling;
* ``phase`` is ``EMPTY`` (0: nothing, or a write abandoned), ``WRITING`` (1) or
  ``PUBLISHED`` (2).

A write of ``n`` items takes three steps:

1. **Reserve** (under the reservation lock of :mod:`xreplay.shared.locks`, which
   a dying holder cannot keep): read the counter, mark the next ``n`` slots ``WRITING`` -
   which unpublishes the items they held - and advance the counter. A slot
   that a *live* writer is still writing (a writer lapped by the ring) is
   skipped and the reservation extends past it; a slot left ``WRITING`` by a
   dead writer is simply taken.
2. **Copy** the items into the reserved slots, outside the lock (one
   vectorized copy per array and contiguous run).
3. **Publish**: store each slot's ``PUBLISHED`` word (on failure the slots are
   marked ``EMPTY`` instead).

The learner (:mod:`xreplay.shared.published`) reads a slot's word before and
after copying it out and keeps the copy only when both equal the word it saw
published: a sample never holds a slot that was being written. The order
"state, data, state" relies on stores becoming visible in program order
(x86-64's memory model; numpy's copies are separate calls the compiler cannot
reorder).

Example:
    >>> word(lap=3, writer=5, phase=PUBLISHED), phase_of(word(3, 5, WRITING)), lap_of(word(3, 5, EMPTY))
    (12310, 1, 3)
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import numpy as np

from xreplay.errors import BufferClosedError, SharedMemoryError
from xreplay.shared.layout import MAX_WRITERS, RESERVED
from xreplay.shared.segment import CLOSED, process_alive, process_start_time

__all__ = [
    "EMPTY",
    "LAP_SHIFT",
    "PUBLISHED",
    "WRITING",
    "Run",
    "SlotRing",
    "lap_of",
    "phase_of",
    "word",
]

EMPTY, WRITING, PUBLISHED = 0, 1, 2
WRITER_SHIFT = 2
LAP_SHIFT = 12  # 2 phase bits + 10 writer bits (MAX_WRITERS = 1024)
WRITER_MASK = MAX_WRITERS - 1
_WAIT = 0.0005  # seconds between tries while every free slot is being written by live writers
_LIVENESS_TTL = 0.2  # seconds a "this writer is alive" answer is trusted


def word(lap: int, writer: int, phase: int) -> int:
    """Return the state word of a slot in ``lap``, owned by ``writer``, in ``phase``."""
    return (lap << LAP_SHIFT) | (writer << WRITER_SHIFT) | phase


def phase_of(state: int) -> int:
    """Return the phase of a state word."""
    return state & 3


def lap_of(state: int) -> int:
    """Return the lap of a state word."""
    return state >> LAP_SHIFT


class Run(NamedTuple):
    """Contiguous reserved slots ``[slot, slot + length)`` that receive items ``[item, item + length)`` in ``lap``."""

    slot: int
    item: int
    length: int
    lap: int


class SlotRing:
    """The writer side of the slot protocol over the arrays of one segment.

    Args:
        views: The segment's arrays (``control``, ``writers``, ``states``).
        lock: This process's reservation lock (:func:`xreplay.shared.locks.make_lock`).
        header_state: The segment header's state word (:meth:`~xreplay.shared.segment.Segment.state_view`).
    """

    def __init__(self, views: dict[str, np.ndarray], lock: Any, header_state: np.ndarray):
        """Operate on ``views`` under ``lock``."""
        self.header_state = header_state
        self.control = views["control"]
        self.writers = views["writers"]
        self.states = views["states"]
        self.capacity = int(self.states.shape[0])
        self.lock = lock
        self._liveness: dict[tuple[int, int], tuple[bool, float]] = {}  # (pid, start) -> (alive, when asked)

    @property
    def closed(self) -> bool:
        """Return whether the learner closed the buffer."""
        return bool(self.header_state[0] == CLOSED)

    # -- the writer table -----------------------------------------------------

    def register(self) -> int:
        """Enter this process in the writer table and return its index.

        A free entry is taken first; else the entry of a dead process, whose
        slots left mid-write are first marked ``EMPTY`` (they would otherwise
        look owned by the new, live writer).

        Raises:
            SharedMemoryError: Every entry belongs to a live process.
        """
        pid, start = os.getpid(), process_start_time()
        with self.lock:
            free = np.flatnonzero(self.writers[:, 0] == 0)
            if free.size:
                index = int(free[0])
            else:
                table = self.writers
                dead = (i for i in range(MAX_WRITERS) if not process_alive(int(table[i, 0]), int(table[i, 1])))
                index = next(dead, -1)
                if index < 0:
                    raise SharedMemoryError(f"all {MAX_WRITERS} writer entries of the shared buffer are in use")
                self._sweep(index)
            self.writers[index] = (pid, start)
        return index

    def unregister(self, index: int) -> None:
        """Free entry ``index`` (its writer has no write in flight)."""
        with self.lock:
            if int(self.writers[index, 0]) == os.getpid():
                self.writers[index] = (0, 0)

    def _sweep(self, index: int) -> None:
        """Mark ``EMPTY`` the slots that writer ``index`` left mid-write (lock held)."""
        mask = np.uint64((WRITER_MASK << WRITER_SHIFT) | 3)
        left = np.flatnonzero((self.states & mask) == np.uint64((index << WRITER_SHIFT) | WRITING))
        if left.size:
            self.states[left] &= ~np.uint64(3)

    def _held(self, states: np.ndarray) -> np.ndarray:
        """Return which of ``states`` are slots that a live writer is still writing."""
        writing = (states & np.uint64(3)) == WRITING
        held = np.zeros(states.shape[0], dtype=bool)
        owners = ((states[writing] >> np.uint64(WRITER_SHIFT)) & np.uint64(WRITER_MASK)).astype(np.int64)
        alive = {int(w): self._alive(int(w)) for w in np.unique(owners)}
        held[writing] = [alive[int(w)] for w in owners]
        return held

    def _alive(self, writer: int) -> bool:
        """Return whether the process of writer entry ``writer`` runs (cached briefly: /proc reads cost)."""
        pid, start = int(self.writers[writer, 0]), int(self.writers[writer, 1])
        if pid == os.getpid():
            return True  # this process: another thread, or a write of ours still in flight
        now = time.monotonic()
        cached = self._liveness.get((pid, start))
        if cached is not None and (not cached[0] or now - cached[1] < _LIVENESS_TTL):
            return cached[0]  # the dead stay dead; the living are asked again after a while
        alive = process_alive(pid, start)
        if len(self._liveness) > 4 * MAX_WRITERS:
            self._liveness.clear()
        self._liveness[(pid, start)] = (alive, now)
        return alive

    # -- writes -----------------------------------------------------------------

    def reserve(self, n: int, writer: int, deadline: float | None = None) -> list[Run]:
        """Reserve slots for ``n`` items and mark them ``WRITING`` by ``writer``; return the runs, in item order.

        Of a batch larger than the capacity only the last ``capacity`` items are kept (the first
        would be overwritten by the same batch). Slots being written by live writers are skipped.

        Raises:
            BufferClosedError: The buffer was closed while waiting for free slots.
            SharedMemoryError: Live writers held every slot until ``deadline``.
        """
        cap = self.capacity
        control, states, lock = self.control, self.states, self.lock
        writing = (writer << WRITER_SHIFT) | WRITING
        skip = max(0, n - cap)  # items overwritten within the batch itself
        lock.__enter__()
        try:
            cursor = int(control[RESERVED]) + skip
            slot = cursor % cap
            if slot + n - skip <= cap:  # the common case: one run, checked with one reduction
                count = n - skip
                window = states[slot : slot + count]
                busy = int(window[0]) if count == 1 else int(np.bitwise_or.reduce(window))
                if not busy & 1:
                    lap = cursor // cap + 1
                    window[...] = (lap << LAP_SHIFT) | writing
                    control[RESERVED] = cursor + count
                    return [Run(slot, skip, count, lap)]
        finally:
            lock.__exit__()
        return self._reserve_slowly(n, writer, deadline)

    def _reserve_slowly(self, n: int, writer: int, deadline: float | None) -> list[Run]:
        """Reserve across the end of the ring, around slots live writers still write, waiting if every slot is."""
        cap = self.capacity
        skip = max(0, n - cap)
        item, need = skip, n - skip
        runs: list[Run] = []
        first = True
        while True:
            with self.lock:
                cursor = int(self.control[RESERVED]) + (skip if first else 0)
                first = False
                scanned = 0
                while need and scanned < cap:
                    slot = cursor % cap
                    count = min(need, cap - slot)
                    states = self.states[slot : slot + count]
                    if int(np.bitwise_or.reduce(states)) & 1:
                        held = self._held(states)
                        if held.any():
                            count = int(np.argmax(held))  # the free slots before the first held one
                            if count == 0:  # live writers are still writing these slots: leave them
                                run = int(np.argmin(held)) if not held.all() else held.shape[0]
                                cursor += run
                                scanned += run
                                continue
                    lap = cursor // cap + 1
                    self.states[slot : slot + count] = word(lap, writer, WRITING)
                    runs.append(Run(slot, item, count, lap))
                    item += count
                    need -= count
                    cursor += count
                    scanned += count
                self.control[RESERVED] = cursor
            if not need:
                return runs
            if self.closed:
                self.abandon(runs, writer)
                raise BufferClosedError("the shared buffer was closed while this write waited for free slots")
            if deadline is not None and time.monotonic() > deadline:
                self.abandon(runs, writer)
                raise SharedMemoryError(
                    f"live writers are writing every one of the {cap} slots; {need} of {n} items found no "
                    f"slot in time (a capacity this small needs fewer or smaller concurrent writes)"
                )
            time.sleep(_WAIT)

    def publish(self, runs: list[Run], writer: int) -> None:
        """Mark the slots of ``runs`` ``PUBLISHED``: their items become visible to the learner."""
        states = self.states
        published = (writer << WRITER_SHIFT) | PUBLISHED
        for slot, _item, count, lap in runs:
            if count == 1:
                states[slot] = (lap << LAP_SHIFT) | published
            else:
                states[slot : slot + count] = (lap << LAP_SHIFT) | published

    def abandon(self, runs: list[Run], writer: int) -> None:
        """Mark the slots of ``runs`` ``EMPTY`` (a write that failed midway): nothing of it becomes visible."""
        for slot, _item, count, lap in runs:
            self.states[slot : slot + count] = word(lap, writer, EMPTY)


def overwritten(runs: list[Run]) -> int:
    """Return how many reserved slots held an item of an earlier lap (items the write replaces)."""
    return sum(run.length for run in runs if run.lap > 1)
