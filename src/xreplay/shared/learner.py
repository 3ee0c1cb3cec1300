"""LearnerSlots: the learner's side of a shared buffer - the segment, the published slots, sampling, priorities.

The learner creates the segment, and it alone samples and updates
priorities. Before each sample it drains the reservations made since the
last one (:class:`~xreplay.shared.published.PublishedSlots`) and tells its
sampler: new items enter a :class:`~xreplay.samplers.PrioritizedSampler` at
the writer's initial priority, or at the largest priority so far (Ape-X's
rule) when none was given; items being overwritten leave it. A sample reads
each drawn slot's state word, copies the slot out, reads the word again and
keeps the copy only when both match the word it was published with; the few
drawn slots that changed meanwhile are forgotten and drawn again. Uniform
sampling draws slots among those holding a valid item.

Every method takes the learner's lock, so threads of the learner process may
share it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from xreplay.errors import (
    BufferClosedError,
    FieldShapeError,
    FieldValueError,
    IndexOutOfRangeError,
    InsufficientDataError,
)
from xreplay.rate_limiters import RateLimiter
from xreplay.samplers.priorities import check_priorities
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.shared.layout import LOCK_KIND, RESERVED, SlotLayout
from xreplay.shared.locks import initialize
from xreplay.shared.published import PublishedSlots
from xreplay.shared.sampling import Draw, make_sampler
from xreplay.shared.segment import Segment, process_alive
from xreplay.shared.writer import SlotWriter

__all__ = ["Draw", "LearnerSlots", "make_sampler"]

_RETRIES = 64  # redraws of slots that changed under a read before giving up
_WAIT = 0.0002  # seconds between drains while admitted items are still being written


class LearnerSlots:
    """Create a shared ring and sample it.

    Args:
        layout: The arrays of the segment.
        description: JSON-able facts for the segment header (kind, fields).
        sampler: A :class:`~xreplay.samplers.PrioritizedSampler`, or None for uniform sampling.
        seed: Seed of the learner's random generator.
        rate_limiter: A limiter created with ``shared=True`` (writers and the learner consult it), or None.
        name: Segment name (unique by default).
        timeout: Default seconds writes and samples wait for the limiter (None: no limit).
    """

    def __init__(
        self,
        layout: SlotLayout,
        description: dict[str, Any],
        sampler: PrioritizedSampler | None,
        seed: int | None,
        rate_limiter: RateLimiter | None,
        name: str | None,
        timeout: float | None,
    ):
        """Create the segment (checking free space first) and start with no item."""
        if rate_limiter is not None and not rate_limiter.shared:
            raise ValueError(
                "the rate limiter of a shared buffer must be created with shared=True (and the start method's "
                "context) so that writer processes consult the same counters"
            )
        self.layout = layout
        self.segment = Segment.create(layout.nbytes, {**description, "layout": layout.describe()}, name)
        self.views = layout.views(self.segment)
        self.lock_kind = initialize(self.views["mutex"])
        self.views["control"][LOCK_KIND] = 1 if self.lock_kind == "mutex" else 2
        self.published = PublishedSlots(self.views["control"], self.views["states"])
        self.sampler = sampler
        self.rng = np.random.default_rng(seed)
        self.limiter = rate_limiter
        self.timeout = timeout
        self.lock = threading.RLock()
        self.closed = False
        self._data = [self.views[name] for name in layout.data_names]
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (indices, generations) of the last sample

    @property
    def capacity(self) -> int:
        """Return the number of slots."""
        return self.layout.capacity

    def handle(self) -> SlotWriter:
        """Return a new, picklable writer attachment to this ring."""
        self._check_open()
        return SlotWriter(str(self.segment.path), self.segment.token, self.layout, self.limiter, self.timeout)

    def _check_open(self) -> None:
        """Raise BufferClosedError once closed."""
        if self.closed:
            raise BufferClosedError("the shared buffer is closed")

    # -- published items --------------------------------------------------------

    def drain(self) -> None:
        """Take in the reservations made since the last drain (the lock is held).

        New items enter the sampler at the largest priority so far - counting the initial priorities
        writers gave the items of this drain - and those given a priority then get it.
        """
        ranges, scattered, gone = self.published.drain()
        sampler = self.sampler
        if sampler is None:
            return
        if gone.size:
            self._forget(gone)
        stored = self.views["priorities"]  # writers may change it meanwhile: read each slot once
        seen = [(np.arange(start, stop), stored[start:stop].copy()) for start, stop in ranges]
        if scattered.size:
            seen.append((scattered, stored.take(scattered)))
        given = np.concatenate([slots[~np.isnan(v)] for slots, v in seen]) if seen else np.zeros(0, np.int64)
        values = np.concatenate([v[~np.isnan(v)] for _s, v in seen]).astype(np.float64) if seen else np.zeros(0)
        if given.size:
            sampler.max_priority = max(sampler.max_priority, float(values.max()) + sampler.epsilon)
        for start, stop in ranges:
            sampler.insert_range(start, stop)  # at the max priority, put in the tree in one slice later
        if scattered.size:
            sampler.insert(scattered)
        if given.size:
            sampler.update_priorities(given, values)

    def _forget(self, slots: np.ndarray) -> None:
        """Give ``slots`` zero priority: their items are gone or being overwritten."""
        sampler = self.sampler
        if sampler is not None and slots.size:
            sampler.total()  # puts pending inserted ranges into the tree first, so they cannot undo this
            sampler.tree.update(slots, np.zeros(slots.shape[0]))

    def __len__(self) -> int:
        """Return the number of valid items (as of the last drain)."""
        return len(self.published)

    def refresh(self) -> int:
        """Drain now and return the number of valid items."""
        with self.lock:
            self._check_open()
            self.drain()
            return len(self.published)

    # -- sampling ---------------------------------------------------------------

    def sample(self, n: int, replace: bool = True, timeout: float | None = None, block: bool = True) -> Draw | None:
        """Draw ``n`` slots and copy them out whole.

        Returns:
            The draw, or None when ``block`` is false and the limiter refused.

        Raises:
            BufferClosedError: The buffer is closed.
            InsufficientDataError: No valid item (after waiting for admitted ones), or fewer than ``n``
                without replacement.
            RateLimiterTimeout: The limiter did not allow the sample within ``timeout``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"sample size must be an int >= 0, received {n!r}")
        self._check_open()
        timeout = self.timeout if timeout is None else timeout
        if self.limiter is not None and n:
            if block:
                self.limiter.sample(n, timeout=timeout)
            elif not self.limiter.try_sample(n):
                return None
        with self.lock:
            self._check_open()
            self.drain()
            self._wait_for_items(n, replace, timeout)
            return self._draw_whole(int(n), replace)

    def _wait_for_items(self, n: int, replace: bool, timeout: float | None) -> None:
        """Drain until an item is valid; with a limiter, admitted items may still be in flight for a moment."""
        needed = 1 if replace else n
        if len(self.published) >= needed or n == 0:
            return
        deadline = time.monotonic() + (timeout if timeout is not None else 5.0)
        active = self.limiter is not None or int(self.views["control"][RESERVED]) > 0  # items are coming
        while active and time.monotonic() < deadline:
            time.sleep(_WAIT)
            self.drain()
            if len(self.published) >= needed:
                return
        have = len(self.published)
        raise InsufficientDataError(
            f"cannot sample {n} items {'with' if replace else 'without'} replacement: {have} valid items are "
            f"published ({int(self.views['control'][RESERVED])} reserved so far); add some first"
        )

    def _draw(self, n: int, replace: bool, step: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Return ``n`` slots holding valid items, with weights and generations when prioritized."""
        sampler = self.sampler
        if sampler is not None:
            drawn = sampler.sample(self.rng, n, step=step)
            sampler.samples_drawn = step + 1  # a redraw is part of the same sample
            return drawn.indices, drawn.weights, drawn.generations
        known = self.published.known[: self.published.high]
        if not replace:
            valid = np.flatnonzero(known)
            if n > valid.size:
                raise InsufficientDataError(f"cannot sample {n} items without replacement from {valid.size}")
            return self.rng.choice(valid, n, replace=False), None, None
        indices = self.rng.integers(0, known.shape[0], n)
        for _ in range(8):  # rejection: almost every slot below `high` holds a valid item
            bad = np.flatnonzero(known.take(indices) == 0)
            if not bad.size:
                return indices, None, None
            indices[bad] = self.rng.integers(0, known.shape[0], bad.size)
        valid = np.flatnonzero(known)
        bad = np.flatnonzero(known.take(indices) == 0)
        indices[bad] = valid[self.rng.integers(0, valid.size, bad.size)]
        return indices, None, None

    def _gather(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Copy slots out between two reads of their state words; return the rows and which reads are whole."""
        states = self.views["states"]
        before = states.take(indices)
        rows = [array.take(indices, axis=0) for array in self._data]
        after = states.take(indices)
        ok = self.published.check(indices, before, after)
        if not ok.all():
            self._forget(np.unique(indices[~ok]))
        return rows, ok

    def _draw_whole(self, n: int, replace: bool) -> Draw:
        """Draw, gather, and redraw the positions whose slot changed under the read."""
        step = self.sampler.samples_drawn if self.sampler is not None else 0
        indices, weights, generations = self._draw(n, replace, step)
        rows, ok = self._gather(indices)
        for _ in range(_RETRIES):
            if ok.all():
                self._last = (indices, generations) if generations is not None else None
                return Draw(indices, weights, generations, rows)
            self.drain()
            if not replace:  # a redraw of some positions could repeat a slot: draw all again
                self._wait_for_items(n, replace, 0.0)
                indices, weights, generations = self._draw(n, replace, step)
                rows, ok = self._gather(indices)
                continue
            bad = np.flatnonzero(~ok)
            self._wait_for_items(1, True, 0.0)
            again, again_weights, again_generations = self._draw(bad.size, replace, step)
            again_rows, again_ok = self._gather(again)
            fixed = bad[again_ok]
            indices[fixed] = again[again_ok]
            if weights is not None and again_weights is not None:
                weights[fixed] = again_weights[again_ok]
            if generations is not None and again_generations is not None:
                generations[fixed] = again_generations[again_ok]
            for row, again_row in zip(rows, again_rows, strict=True):
                row[fixed] = again_row[again_ok]
            ok[fixed] = True
        raise InsufficientDataError(
            f"the drawn slots kept changing under {_RETRIES} reads; writers overwrite "
            f"the whole ring faster than it is sampled (raise the capacity)"
        )

    def copy_valid(self, consume: Any, chunk: int = 65536) -> np.ndarray:
        """Pass the valid items, oldest first, to ``consume(rows)`` in chunks; return their slots in that order.

        Writers may keep writing: each chunk is read between two reads of its state words, and a slot
        that changed meanwhile is left out.
        """
        with self.lock:
            self._check_open()
            self.drain()
            order = self.published.valid_slots()
            kept = []
            for start in range(0, order.size, chunk):
                part = order[start : start + chunk]
                rows, ok = self._gather(part)
                if not ok.all():
                    rows, part = [row[ok] for row in rows], part[ok]
                if part.size:
                    consume(rows)
                    kept.append(part)
            return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)

    # -- priorities -------------------------------------------------------------

    def update_priorities(self, indices: Any, priorities: Any, generations: Any) -> int:
        """Set priorities of sampled slots; skip (and count) those overwritten or forgotten since.

        Args:
            indices: Slots, as sampled.
            priorities: New priorities (finite, >= 0).
            generations: The sample's generations; None for those of the most recent sample (the
                indices must then be exactly its indices); ``"current"`` for no stale check.

        Raises:
            TypeError: The buffer samples uniformly.
            PriorityError: A priority is NaN, infinite or negative.
            FieldShapeError: Arguments of different lengths.
            FieldValueError: Plain indices other than the last sample's without generations.
            IndexOutOfRangeError: An index outside the slots.
        """
        sampler = self.sampler
        if sampler is None:
            raise TypeError("update_priorities needs a prioritized buffer: pass sampler='prioritized'")
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        values = check_priorities(priorities)
        if values.shape != index.shape:
            raise FieldShapeError(f"got {index.shape[0]} indices but {values.shape[0]} priorities")
        if index.size and (index.min() < 0 or index.max() >= self.capacity):
            bad = int(index[(index < 0) | (index >= self.capacity)][0])
            raise IndexOutOfRangeError(f"index {bad} is outside the {self.capacity} slots [0, {self.capacity})")
        with self.lock:
            self._check_open()
            self.drain()  # items overwritten since the sample are then known to be gone
            if isinstance(generations, str):
                if generations != "current":
                    raise FieldValueError(f"generations must be an array, None or 'current'; received {generations!r}")
                seen = None
            elif generations is None:
                last = self._last
                if last is None or not np.array_equal(index, last[0]):
                    raise FieldValueError(
                        f"update_priorities got {index.size} plain indices that are not those of the most recent "
                        f"sample, and no generations: pass the sample itself, its generations, or "
                        f"generations='current'"
                    )
                seen = last[1]
            else:
                seen = np.asarray(generations).reshape(-1)
                if seen.shape != index.shape:
                    raise FieldShapeError(f"got {index.shape[0]} indices but {seen.shape[0]} generations")
            valid = self.published.known.take(index) != 0
            gone = int(index.size - np.count_nonzero(valid))
            if gone:
                index, values = index[valid], values[valid]
                seen = None if seen is None else seen[valid]
                sampler.stale_updates += gone
            if not index.size:
                return gone
            return gone + sampler.update_priorities(index, values, seen)

    # -- state ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return counters: items, reservations, publications, in flight, forgotten reads, writers, bytes."""
        with self.lock:
            self._check_open()
            self.drain()
            writers = self.views["writers"]
            live = sum(process_alive(int(p), int(s)) for p, s in writers[writers[:, 0] != 0])
            published = self.published
            return {
                "capacity": self.capacity,
                "size": len(published),
                "reserved": int(self.views["control"][RESERVED]),
                "published": published.published,
                "in_flight": int(published.pending.size),
                "forgotten": published.forgotten,
                "stale_updates": 0 if self.sampler is None else self.sampler.stale_updates,
                "writers": int(live),
                "lock": self.lock_kind,
                "segment_bytes": self.segment.size,
                "payload_bytes": self.layout.payload_bytes,
                "path": str(self.segment.path),
            }

    def close(self) -> None:
        """Mark the buffer closed, wake waiting writers, remove the segment; later calls raise BufferClosedError."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.limiter is not None:
                self.limiter.close()
            self.views, self._data = {}, []
            self.published = PublishedSlots(np.zeros(8, np.int64), np.zeros(1, np.uint64))
            self.segment.close()
