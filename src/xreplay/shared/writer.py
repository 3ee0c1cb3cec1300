"""SlotWriter: one process's attachment to a shared buffer - reserve, copy, publish - behind a picklable handle.

A handle pickles as the segment's path and token, the layout, the item
fields and the rate limiter; unpickled in a worker process (started with
``multiprocessing`` or ``torch.multiprocessing``, spawn or fork) it maps the
segment, opens its own descriptor for the reservation lock and enters the
writer table on first use. A handle inherited through ``fork`` does the same in
the child (descriptors and registrations are per process).

Each write consults the rate limiter first (blocking with a timeout, or not at
all with the ``try_`` methods), then reserves, copies and publishes (see
:mod:`xreplay.shared.slots`); a copy that fails midway marks its slots empty.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from xreplay.errors import BufferClosedError, FieldShapeError, RateLimiterTimeout
from xreplay.rate_limiters import RateLimiter
from xreplay.samplers.priorities import check_priorities
from xreplay.shared.layout import LOCK_KIND, SlotLayout
from xreplay.shared.locks import make_lock
from xreplay.shared.segment import CLOSED, Segment
from xreplay.shared.slots import Run, SlotRing, overwritten

__all__ = ["SlotWriter", "check_item_priorities"]

_POLL = 0.5  # seconds a blocked insert waits on the limiter between checks that the learner still runs
_ATTACHED: weakref.WeakSet[SlotWriter] = weakref.WeakSet()


def _forget_after_fork() -> None:
    """In a forked child, drop every attachment inherited from the parent (descriptor, lock, writer entry)."""
    for writer in list(_ATTACHED):
        writer._inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def check_item_priorities(priorities: Any, n: int) -> np.ndarray | None:
    """Return writer-supplied priorities as float32 ``[n]`` (None stays None), checked before anything changes.

    Raises:
        FieldShapeError: Not one priority per item.
        PriorityError: A priority is NaN, infinite or negative.
    """
    if priorities is None:
        return None
    values = check_priorities(np.asarray(priorities, dtype=np.float64).reshape(-1))
    if values.shape[0] != n:
        raise FieldShapeError(f"priorities: expected {n} values (one per item), received {values.shape[0]}")
    return values.astype(np.float32)


class SlotWriter:
    """A process's attachment to the slots of one shared buffer.

    Args:
        path: The segment file.
        token: The segment's token (a handle never writes into another segment of the same name).
        layout: The segment's arrays.
        limiter: A shared rate limiter consulted before every insert, or None.
        timeout: Default seconds a write waits for the limiter or for free slots (None: no limit).
    """

    def __init__(self, path: str, token: bytes, layout: SlotLayout, limiter: RateLimiter | None, timeout: float | None):
        """Hold what is needed to attach; attach on first use."""
        self.path = path
        self.token = token
        self.layout = layout
        self.limiter = limiter
        self.timeout = timeout
        self._reset()

    def _reset(self) -> None:
        """Forget any attachment."""
        self._segment: Segment | None = None
        self._ring: SlotRing | None = None
        self._views: dict[str, np.ndarray] = {}
        self._index = -1
        self._closed = False
        self._guard = threading.Lock()

    def _inherited(self) -> None:
        """Drop the parent's attachment in a forked child (the parent keeps using it)."""
        segment = self._segment
        if segment is not None:
            try:
                os.close(segment.fd)  # the parent's descriptor: the child takes its own lock
            except OSError:
                pass
        closed = self._closed
        self._reset()
        self._closed = closed

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "token": self.token,
            "layout": self.layout,
            "limiter": self.limiter,
            "timeout": self.timeout,
            "closed": self._closed,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.token, self.layout = state["path"], state["token"], state["layout"]
        self.limiter, self.timeout = state["limiter"], state["timeout"]
        self._reset()
        self._closed = state["closed"]

    # -- attachment -------------------------------------------------------------

    def ring(self) -> SlotRing:
        """Return this process's attached ring, attaching and registering on first use.

        Raises:
            BufferClosedError: This handle, or the buffer, was closed.
        """
        ring = self._ring
        if ring is not None:
            return ring
        with self._guard:
            if self._closed:
                raise BufferClosedError(f"this writer handle of {self.path} was closed; ask the buffer for a new one")
            if self._ring is None:
                segment = Segment.attach(self.path, self.token)
                try:
                    self.layout.check_matches(segment.description, self.path)
                    views = self.layout.views(segment)
                    kind = "mutex" if int(views["control"][LOCK_KIND]) == 1 else "flock"
                    ring = SlotRing(views, make_lock(kind, views["mutex"], segment.fd), segment.state_view())
                    self._index = ring.register()
                except BaseException:
                    segment.close()
                    raise
                self._segment, self._views, self._ring = segment, views, ring
                _ATTACHED.add(self)
            return self._ring  # type: ignore[return-value]

    @property
    def views(self) -> dict[str, np.ndarray]:
        """Return the segment's arrays (attaching first)."""
        self.ring()
        return self._views

    @property
    def closed(self) -> bool:
        """Return whether this handle or its buffer is closed."""
        if self._closed:
            return True
        ring = self._ring
        return ring is not None and ring.closed

    def close(self) -> None:
        """Leave the writer table and unmap; later writes through this handle raise BufferClosedError."""
        with self._guard:
            ring, segment = self._ring, self._segment
            self._closed = True
            self._ring, self._segment, self._views = None, None, {}
            if ring is not None and segment is not None:
                if not ring.closed:
                    ring.unregister(self._index)
                del ring
                segment.close()

    # -- writes -----------------------------------------------------------------

    def write(
        self,
        n: int,
        copy: Callable[[dict[str, np.ndarray], list[Run]], None],
        priorities: np.ndarray | None,
        timeout: float | None,
        block: bool = True,
    ) -> list[Run] | None:
        """Admit ``n`` items through the limiter, reserve slots, ``copy(views, runs)`` them in, publish.

        Returns:
            The runs written, or None when ``block`` is false and the limiter refused.

        Raises:
            BufferClosedError: The handle or the buffer is closed (or its learner exited).
            RateLimiterTimeout: The limiter did not admit the items within ``timeout``.
        """
        ring = self._ring or self.ring()
        if ring.header_state[0] == CLOSED:
            raise BufferClosedError(f"shared buffer {self.path} was closed by its learner")
        if timeout is None:
            timeout = self.timeout
        if self.limiter is not None and n:
            if block:
                self._admit(ring, n, timeout)
            elif not self.limiter.try_insert(n):
                return None
        runs = ring.reserve(n, self._index, None if timeout is None else time.monotonic() + timeout)
        try:
            copy(self._views, runs)
            stored = self._views["priorities"]
            for slot, item, count, _lap in runs:
                stored[slot : slot + count] = np.nan if priorities is None else priorities[item : item + count]
            ring.publish(runs, self._index)
        except BaseException:
            ring.abandon(runs, self._index)
            raise
        if self.limiter is not None:
            deleted = overwritten(runs)
            if deleted:
                self.limiter.delete(deleted)
        return runs

    def _admit(self, ring: SlotRing, n: int, timeout: float | None) -> None:
        """Wait for the limiter to admit ``n`` inserts, checking now and then that the learner still runs."""
        assert self.limiter is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
            try:
                self.limiter.insert(n, timeout=remaining)
                return
            except RateLimiterTimeout:
                segment = self._segment
                if ring.closed or (segment is not None and not segment.owner_alive()):
                    raise BufferClosedError(
                        f"shared buffer {self.path} was closed (or its learner exited) while a write waited"
                    ) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise
