"""The writers' reservation lock: a robust process-shared mutex in the segment, or ``flock`` where there is none.

The critical section (read the counter, mark the reserved slots, advance the
counter) is a few numpy calls, so the lock's own cost matters. Two kinds,
chosen by the learner when it creates the segment and stored in its header:

* ``"mutex"`` (Linux with glibc): a ``pthread`` mutex created
  ``PTHREAD_PROCESS_SHARED`` and ``PTHREAD_MUTEX_ROBUST`` inside the segment,
  called through :mod:`ctypes` (about 0.4 us for a lock and an unlock). It
  excludes threads and processes alike. If its holder dies, the next locker
  gets ``EOWNERDEAD``, marks it consistent and goes on: the reservation
  protocol tolerates a critical section cut short (slots marked ``WRITING``
  by a dead writer are taken by the next one; an unadvanced counter only
  means the same reservations are made again).
* ``"flock"`` (elsewhere): an exclusive ``flock`` on the process's own
  descriptor of the segment behind a thread lock (about 1.6 us); the kernel
  releases it when its holder dies.

Example:
    >>> import numpy as np
    >>> memory = np.zeros(MUTEX_BYTES, dtype=np.uint8)
    >>> kind = initialize(memory)
    >>> lock = make_lock(kind, memory, fd=-1) if kind == "mutex" else None
    >>> kind in ("mutex", "flock")
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import threading
from typing import Any

import numpy as np

from xreplay.errors import SharedMemoryError

__all__ = ["MUTEX_BYTES", "FlockLock", "RobustMutex", "initialize", "make_lock"]

MUTEX_BYTES = 64  # room for a pthread_mutex_t (40 bytes on x86-64 glibc)
_EOWNERDEAD = getattr(errno, "EOWNERDEAD", 130)
_PROCESS_SHARED, _ROBUST = 1, 1
_LIBC: Any = None


def _libc() -> Any:
    """Return glibc's pthread functions with their argument types, or None where they are missing."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            for name in ("pthread_mutex_lock", "pthread_mutex_unlock", "pthread_mutex_consistent"):
                getattr(libc, name).argtypes = [ctypes.c_void_p]
            libc.pthread_mutexattr_setrobust  # noqa: B018 - missing outside glibc: fall back to flock
            _LIBC = libc
        except (OSError, AttributeError):
            pass
    return _LIBC or None


def initialize(memory: np.ndarray) -> str:
    """Create a robust process-shared mutex in ``memory`` (``MUTEX_BYTES`` bytes); return the lock kind to use."""
    libc = _libc()
    if libc is None or memory.nbytes < MUTEX_BYTES:
        return "flock"
    attr = ctypes.create_string_buffer(64)
    ok = (
        libc.pthread_mutexattr_init(attr) == 0
        and libc.pthread_mutexattr_setpshared(attr, _PROCESS_SHARED) == 0
        and libc.pthread_mutexattr_setrobust(attr, _ROBUST) == 0
        and libc.pthread_mutex_init(ctypes.c_void_p(memory.ctypes.data), attr) == 0
    )
    libc.pthread_mutexattr_destroy(attr)
    return "mutex" if ok else "flock"


class RobustMutex:
    """Lock the robust process-shared mutex at ``memory`` (made by :func:`initialize`)."""

    def __init__(self, memory: np.ndarray):
        """Hold the mutex's address (``memory`` must stay mapped)."""
        libc = _libc()
        if libc is None:
            raise SharedMemoryError("the segment uses a pthread mutex but this system's C library has none")
        self._memory = memory
        self._address = ctypes.c_void_p(memory.ctypes.data)
        self._lock, self._unlock, self._consistent = (
            libc.pthread_mutex_lock,
            libc.pthread_mutex_unlock,
            libc.pthread_mutex_consistent,
        )

    def __enter__(self) -> RobustMutex:
        result = self._lock(self._address)
        if result == _EOWNERDEAD:  # its last holder died inside the critical section
            self._consistent(self._address)
        elif result:
            raise SharedMemoryError(f"the reservation mutex failed: {errno.errorcode.get(result, result)}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unlock(self._address)


class FlockLock:
    """A thread lock, then an exclusive ``flock`` on this process's descriptor ``fd`` of the segment."""

    def __init__(self, fd: int):
        """Lock through descriptor ``fd`` (opened by this process: ``flock`` locks belong to an open file)."""
        self.fd = fd
        self._thread = threading.Lock()

    def __enter__(self) -> FlockLock:
        self._thread.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._thread.release()


def make_lock(kind: str, memory: np.ndarray, fd: int) -> RobustMutex | FlockLock:
    """Return the reservation lock of ``kind`` over the segment's mutex ``memory`` or descriptor ``fd``."""
    return RobustMutex(memory) if kind == "mutex" else FlockLock(fd)
