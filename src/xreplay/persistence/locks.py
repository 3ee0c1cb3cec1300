"""One saver per checkpoint path: an exclusive ``fcntl`` lock on a file beside the checkpoint.

The lock file ``.<name>.xreplay-lock`` sits next to the checkpoint directory
``<name>`` (a first save renames a whole directory into place, so it cannot
live inside). It holds the owner's pid, host and start time, which a waiting
or failing saver reports. The lock itself is a POSIX record lock
(``fcntl.lockf``): the kernel drops it when its process dies, however it dies,
so a lock file left by a killed saver is stale by construction; the next saver
takes the lock and overwrites the old owner's details. POSIX locks do not
exclude threads of one process, so a per-path thread lock is taken first. The
lock file is never deleted (deleting it would let two savers lock two
different files).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "ckpt"
    >>> with saver_lock(path):
    ...     holder(path)["pid"] == os.getpid()
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xreplay.errors import CheckpointLockedError, CheckpointWriteError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "holder", "lock_file", "saver_lock"]

DEFAULT_LOCK_TIMEOUT = 60.0
"""Seconds a save waits for another saver of the same path before it fails."""
_POLL = 0.02  # seconds between attempts while another process holds the lock

_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}
_held: dict[str, int] = {}  # lock file -> descriptor, while this process holds it


def _reset_after_fork() -> None:
    """Forget the thread locks in a forked child: the threads that held them do not exist there."""
    global _guard
    _guard = threading.Lock()
    _thread_locks.clear()
    _held.clear()  # record locks are not inherited: the child holds none


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def lock_file(path: Path) -> Path:
    """Return the lock file of checkpoint ``path``."""
    return path.parent / f".{path.name}.xreplay-lock"


def holder(path: Path) -> dict[str, Any] | None:
    """Return the details (pid, host, since) the lock file of ``path`` names, None when empty or unreadable."""
    file = lock_file(path)
    fd = _held.get(os.path.realpath(file))
    try:
        if fd is not None:  # read through the held descriptor: closing another one would drop the lock
            text = os.pread(fd, 4096, 0).decode("utf-8")
        else:
            text = file.read_text(encoding="utf-8")
        info = json.loads(text or "null")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    """Return who holds a lock, in words."""
    if not info:
        return "another saver (no details recorded yet)"
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {info.get('pid')} on host {info.get('host')!r} (since {when})"


def _thread_lock(file: Path) -> threading.Lock:
    """Return the in-process lock of ``file``."""
    key = os.path.realpath(file)
    with _guard:
        return _thread_locks.setdefault(key, threading.Lock())


def _locked_error(path: Path, timeout: float, who: str) -> CheckpointLockedError:
    """Return the error of a save that gave up waiting."""
    return CheckpointLockedError(
        f"cannot save to {path}: {who} is saving there (lock file {lock_file(path)}); waited {timeout:g} s. "
        f"Wait for it to finish, save elsewhere, or pass a longer lock_timeout",
        path,
    )


def _lock_fd(fd: int, path: Path, deadline: float, timeout: float) -> None:
    """Take the exclusive record lock on ``fd``, polling until ``deadline``."""
    import fcntl

    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except (BlockingIOError, PermissionError):
            if time.monotonic() >= deadline:
                raise _locked_error(path, timeout, _describe(holder(path))) from None
            time.sleep(_POLL)


@contextlib.contextmanager
def saver_lock(path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive saver lock of checkpoint ``path`` (waiting up to ``timeout`` seconds).

    Raises:
        CheckpointLockedError: Another thread or process held the lock for ``timeout`` seconds;
            the message names it.
        CheckpointWriteError: The lock file cannot be created (e.g. the parent directory is missing).
    """
    file = lock_file(path)
    deadline = time.monotonic() + max(timeout, 0.0)
    thread_lock = _thread_lock(file)
    if not thread_lock.acquire(timeout=max(timeout, 0.0)):
        raise _locked_error(path, timeout, f"another thread of this process (pid {os.getpid()})")
    try:
        try:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(file, flags, 0o644)
        except OSError as exc:
            message = f"cannot save to {path}: cannot create its lock file {file}: {exc}"
            raise CheckpointWriteError(message, path) from exc
        try:
            _lock_fd(fd, path, deadline, timeout)
            # Whoever the file names no longer holds the lock (a process that died while saving): replace it.
            details = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "path": str(path)}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(details).encode("utf-8"), 0)
            _held[os.path.realpath(file)] = fd
            try:
                yield
            finally:
                del _held[os.path.realpath(file)]
                os.ftruncate(fd, 0)  # released: nothing to report to the next saver
        finally:
            os.close(fd)  # closing drops the record lock
    finally:
        thread_lock.release()
