"""The lock a buffer holds while it changes, so that threads share it and a save copies a consistent state.

A :class:`MutationLock` has two ways in:

* ``with lock:`` is exclusive: it waits until no write is copying, and no
  write can start while it is held. Writes of one item, samples, priority
  updates, ``clear`` and :func:`xreplay.persistence.save` (while it copies
  what it saves) take it this way;
* ``with lock.critical():`` takes the lock for a short critical section only.
  A large write reserves its slots in one critical section, announces the
  copy (:meth:`MutationLock.begin_write`), copies without the lock, and
  finishes in another critical section (:meth:`MutationLock.end_write`).
  Readers of the slots being written either skip them or retry, so nothing
  torn is ever returned.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

__all__ = ["MutationLock", "critical_section", "locked"]

F = TypeVar("F", bound=Callable[..., Any])


class MutationLock:
    """A re-entrant lock that knows how many writes are copying outside it; pickles and copies as a new lock.

    Example:
        >>> import copy
        >>> lock = MutationLock()
        >>> with lock:
        ...     copy.deepcopy(lock).acquire(blocking=False)
        True
        >>> with lock.critical():
        ...     lock.begin_write()
        >>> lock.writing
        1
    """

    __slots__ = ("_cond", "_depth", "_holder", "_lock", "_yielding", "pending", "writing")

    def __init__(self) -> None:
        """Create an unheld lock with no write copying."""
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.writing = 0  # writes between begin_write and end_write
        self.pending = 0  # threads waiting to hold the lock exclusively
        self._yielding = 0  # writes waiting for those threads
        self._holder: int | None = None  # the thread holding the lock exclusively
        self._depth = 0  # how many times it entered

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock for a critical section (see :meth:`threading.RLock.acquire`); writes may be copying."""
        return self._cond.acquire(blocking, timeout)

    def release(self) -> None:
        """Release the lock once."""
        self._cond.release()

    def critical(self) -> AbstractContextManager[bool]:
        """Return the context that holds the lock for a short critical section, without waiting for copying writes."""
        return self._lock

    def __enter__(self) -> MutationLock:
        """Hold the lock exclusively: wait until no write is copying (none can start meanwhile)."""
        self._cond.acquire()
        if self.writing:
            self.pending += 1  # new writes wait (yield_to_exclusive) so that this wait ends
            try:
                while self.writing:
                    self._cond.wait()
            finally:
                self.pending -= 1
        self._holder = threading.get_ident()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if not self._depth:
            self._holder = None
        if self._yielding:
            self._cond.notify_all()  # writes that yielded to this holder go on
        self._cond.release()

    def yield_to_exclusive(self) -> None:
        """Wait while a thread waits to hold the lock exclusively (call inside a critical section, before a write)."""
        if not self.pending or self._holder == threading.get_ident():
            return  # nobody waits, or this thread holds the lock exclusively already: its writes go first
        while self.pending:
            self._yielding += 1
            try:
                self._cond.wait(0.05)
            finally:
                self._yielding -= 1

    def begin_write(self) -> None:
        """Record that a write will copy outside the lock (call inside a critical section)."""
        self.writing += 1

    def end_write(self) -> None:
        """Record that a write's copy ended, and wake whoever waits for it (call inside a critical section)."""
        self.writing -= 1
        self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> None:
        """Wait (releasing the lock) until a write ends or ``timeout`` seconds pass (call with the lock held)."""
        self._cond.wait(timeout)

    def __reduce__(self) -> tuple[type[MutationLock], tuple[()]]:
        """Pickle (and deep-copy) as a fresh lock: a lock's state means nothing in another process."""
        return (MutationLock, ())


def locked(method: F) -> F:
    """Run ``method`` while holding ``self.lock`` exclusively (a :class:`MutationLock`)."""

    @functools.wraps(method)
    def run_locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run_locked  # type: ignore[return-value]


def critical_section(method: F) -> F:
    """Run ``method`` in a critical section of ``self.lock`` (buffers whose writes all copy under the lock).

    Where no write ever copies outside the lock, holding it exclusively waits for nothing more, and a
    critical section costs a fifth as much; saves, which hold it exclusively, still exclude it.
    """

    @functools.wraps(method)
    def run_critical(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock.critical():
            return method(self, *args, **kwargs)

    return run_critical  # type: ignore[return-value]
