"""SIGKILL a process while it saves, many times: the last committed checkpoint always loads and verifies."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import pytest

from tests.persistence.persistence_helpers import episodes, filled_buffer, same_buffer
from xreplay import EpisodeBuffer
from xreplay.persistence import load, verify

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


def _reference(writes: int) -> EpisodeBuffer:
    """The buffer the saving process held after ``writes`` episodes."""
    buffer = filled_buffer(capacity=8, n=0)
    for i in range(writes):
        buffer.add(episodes(1, i))
    return buffer


def _save_forever(path, ready_fd: int) -> None:
    """Child: resume from ``path`` (or start), then add one episode and save, in a loop; mix full and delta saves."""
    buffer = EpisodeBuffer.load(path) if path.exists() else filled_buffer(capacity=8, n=0)
    i = buffer.writer.writes
    while True:
        buffer.add(episodes(1, i))
        buffer.save(path, incremental=i % 3 != 0)
        if ready_fd >= 0:
            os.write(ready_fd, b"x")  # at least one save is committed
            os.close(ready_fd)
            ready_fd = -1
        i += 1


def _run_and_kill(path, delay: float) -> None:
    """Fork a saving child, SIGKILL it ``delay`` seconds after its first committed save, and reap it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(read_fd)
            _save_forever(path, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"x"
    os.close(read_fd)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_killed_saves_leave_a_loadable_verified_checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    rng = random.Random(0)
    last_writes = 0
    for _ in range(20):
        _run_and_kill(path, rng.uniform(0.0, 0.03))
        verify(path)
        loaded = load(path)
        writes = loaded.writer.writes
        assert writes > last_writes  # each run committed at least one more save
        assert same_buffer(loaded, _reference(writes))
        last_writes = writes
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("ckpt", ".ckpt.xreplay-lock")]
    assert all(name.startswith(".ckpt.xreplay-tmp-") for name in leftovers)  # at most a killed first save's temp dir
