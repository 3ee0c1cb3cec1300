"""SIGKILL a process while it saves (or flushes a MemmapStorage), again and again, and check what survives.

A forked child resumes from the checkpoint (or starts), then makes writes and saves in a loop:
full and incremental saves alternate, and a memmap-backed buffer alternates ``xreplay.persistence.flush(storage)``
and ``buffer.save``. The parent kills it at a random moment after its first committed save, then
checks that the checkpoint verifies, loads, and holds exactly the state of an uninterrupted
buffer after the same number of writes; the next child resumes from it. Writes are deterministic
in their number (``tests/persistence/kinds.py``), so the number of writes a checkpoint holds is
read back from its counters.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import xreplay
from tests.persistence import kinds
from xreplay.persistence import verify

# Write number i adds 1 + i % n items.
_ITEMS = {"episode": 2, "memmap": 2, "transition": 3, "pymarl": 2, "pymarl_prioritized": 2}


def writes_done(kind: str, buffer: Any) -> int:
    """Return how many writes (of :func:`kinds.write`) ``buffer`` has seen, from its counters."""
    if kind == "ding":
        return int(buffer._store.generation.sum())  # one push per write, each bumps its slot's generation
    items = buffer._writer.writes if kind.startswith("pymarl") else buffer.writer.writes
    done = total = 0
    while total < items:
        total += 1 + done % _ITEMS[kind]
        done += 1
    assert total == items, f"{kind}: {items} items is no whole number of writes"
    return done


def _child(kind: str, path: Path, report_fd: int) -> None:
    """Resume from ``path`` (or start), then write and save forever, reporting each save's start and end."""
    if (path / "metadata.json").exists():
        buffer = kinds.load_back(kind, path, "shared" if kind == "memmap" else False)
    else:
        buffer = kinds.make(kind, path if kind == "memmap" else None)
    i = writes_done(kind, buffer)
    while True:
        kinds.write(kind, buffer, i)
        i += 1
        os.write(report_fd, b"s")
        if kind == "memmap" and i % 2:
            xreplay.persistence.flush(buffer.storage)
        else:
            kinds.save(kind, buffer, path, incremental=i % 3 != 0)
        os.write(report_fd, b"e")


def _run_and_kill(kind: str, path: Path, delay: float) -> bool:
    """Fork a saving child, SIGKILL it ``delay`` seconds after its first committed save; return whether it
    was saving then (or flushing its MemmapStorage)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller
        try:
            os.close(read_fd)
            _child(kind, path, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    seen = b""
    while b"e" not in seen:
        chunk = os.read(read_fd, 64)
        if not chunk:
            break
        seen += chunk
    if b"e" in seen:
        time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.set_blocking(read_fd, False)
    try:
        while chunk := os.read(read_fd, 4096):
            seen += chunk
    except BlockingIOError:
        pass
    os.close(read_fd)
    if b"e" not in seen:
        raise AssertionError(f"{kind}: the saving child died before its first save (status {status})")
    return seen.endswith(b"s")


@dataclasses.dataclass
class KillReport:
    """What ``kills`` SIGKILLs of one kind left."""

    kind: str
    kills: int
    during_save: int
    verified: int
    exact: int
    writes: int


def crash_loop(kind: str, root: Path, kills: int, seed: int = 0, max_delay: float = 0.03) -> KillReport:
    """Kill a saving child ``kills`` times; return how many checkpoints verified and held the exact state."""
    rng = random.Random(seed)
    path = root / kind / "ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    verified = exact = last = during = 0
    for _ in range(kills):
        during += _run_and_kill(kind, path, rng.uniform(0.0, max_delay))
        verify(path)
        verified += 1
        loaded = kinds.load_back(kind, path)
        done = writes_done(kind, loaded)
        reference = kinds.filled(kind, root / kind / f"reference{done}" if kind == "memmap" else None, writes=done)
        if done > last and kinds.snapshot(loaded, False) == kinds.snapshot(reference, False):
            exact += 1
        last = done
    return KillReport(kind, kills, during, verified, exact, last)
