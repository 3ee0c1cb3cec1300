"""The lock a buffer holds while it changes, so that a save can copy a consistent state.

Every method of a native buffer that changes it (writes, samples that advance
its random generator, priority updates) runs under the buffer's
:class:`MutationLock`; :func:`xreplay.persistence.save` holds the same lock
while it copies what it saves, so a checkpoint never mixes the state before
and after a write made by another thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MutationLock", "locked"]

F = TypeVar("F", bound=Callable[..., Any])


class MutationLock:
    """A re-entrant lock that pickles and copies as a new, unheld lock.

    Example:
        >>> import copy
        >>> lock = MutationLock()
        >>> with lock:
        ...     copy.deepcopy(lock).acquire(blocking=False)
        True
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        """Create an unheld lock."""
        self._lock = threading.RLock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the lock (see :meth:`threading.RLock.acquire`)."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """Release the lock once."""
        self._lock.release()

    def __enter__(self) -> MutationLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def __reduce__(self) -> tuple[type[MutationLock], tuple[()]]:
        """Pickle (and deep-copy) as a fresh lock: a lock's state means nothing in another process."""
        return (MutationLock, ())


def locked(method: F) -> F:
    """Run ``method`` while holding ``self.lock`` (a :class:`MutationLock`)."""

    @functools.wraps(method)
    def run_locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run_locked  # type: ignore[return-value]
