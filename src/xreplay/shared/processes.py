"""Whether a process runs: a pid and its start time name one process even after the pid is reused (Linux ``/proc``)."""

from __future__ import annotations

import os

__all__ = ["process_alive", "process_start_time"]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state letter, start time in clock ticks) of ``pid`` from ``/proc``, None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()  # fields after "pid (comm) ": state is field 3, starttime 22
    return (rest[0], int(rest[19])) if len(rest) > 19 else None


def process_start_time(pid: int | None = None) -> int:
    """Return the start time of ``pid`` (this process by default) in clock ticks since boot, 0 when unknown.

    A pid and its start time name one process even after the pid is reused.
    """
    stat = _proc_stat(os.getpid() if pid is None else pid)
    return 0 if stat is None else stat[1]


def process_alive(pid: int, start_time: int = 0) -> bool:
    """Return whether process ``pid`` (started at ``start_time``, when known) is running; zombies count as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:
        return not os.path.isdir("/proc/self")  # /proc exists but not this pid: it just exited
    state, started = stat
    if state in ("Z", "X"):
        return False
    return start_time == 0 or started == start_time
