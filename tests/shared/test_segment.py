"""Segments: space checked before creation, removed on close and at exit, stale ones reported and never reused.

Every test runs in a folder of its own (``XREPLAY_SHM_DIR``), so segments of other runs on the machine are
neither seen nor touched.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.shared.helpers import SPEC, items
from xreplay.errors import CapacityError, SharedMemoryError, StaleSegmentError
from xreplay.shared import SharedTransitionBuffer, list_segments, remove_stale_segments, stale_segments
from xreplay.shared import segment as segment_module


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "shm"
    path.mkdir()
    monkeypatch.setenv("XREPLAY_SHM_DIR", str(path))
    return path


def run_learner(folder, body):
    """Run ``body`` in a fresh Python process that creates a shared buffer in ``folder``; return it finished."""
    code = textwrap.dedent(
        """
        import os, signal, sys, torch
        from xreplay.shared import SharedTransitionBuffer
        buf = SharedTransitionBuffer(64, {"obs": ((4,), torch.float32)}, name="run")
        print(buf.path, flush=True)
        """
    ) + textwrap.dedent(body)
    env = {**os.environ, "XREPLAY_SHM_DIR": str(folder)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_close_removes_the_segment(folder):
    buf = SharedTransitionBuffer(8, SPEC)
    path = buf.path
    assert os.path.dirname(path) == str(folder) and [s.path.name for s in list_segments()] == [os.path.basename(path)]
    buf.close()
    assert not os.path.exists(path) and list_segments() == []


def test_a_learner_that_exits_without_closing_leaves_nothing(folder):
    done = run_learner(folder, "sys.exit(0)\n")
    assert done.returncode == 0, done.stderr
    assert os.listdir(folder) == []


def test_a_crashed_learner_leaves_a_stale_segment_that_is_reported_not_reused(folder):
    done = run_learner(folder, "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert done.returncode == -signal.SIGKILL
    path = done.stdout.split()[0]
    stale = stale_segments()
    assert [str(s.path) for s in stale] == [path] and stale[0].size > 64 * 16
    with pytest.raises(StaleSegmentError, match="crashed") as raised:
        SharedTransitionBuffer(64, {"obs": ((4,), np.float32)}, name="run")
    assert raised.value.filename == path and os.path.exists(path)  # reported, left alone
    other = SharedTransitionBuffer(8, SPEC)  # a new run picks a new name
    assert other.path != path
    assert remove_stale_segments() == [stale[0].path] and not os.path.exists(path)
    assert [s.path.name for s in list_segments()] == [os.path.basename(other.path)]  # the live one stays
    other.close()


def test_a_name_in_use_by_a_running_learner_is_refused(folder):
    with SharedTransitionBuffer(8, SPEC, name="taken"):
        with pytest.raises(SharedMemoryError, match="exists already"):
            SharedTransitionBuffer(8, SPEC, name="taken")
        with pytest.raises(SharedMemoryError, match="letters"):
            SharedTransitionBuffer(8, SPEC, name="../escape")
        assert stale_segments() == []


def test_too_large_fails_before_anything_is_created_and_says_what_it_needs(folder):
    with pytest.raises(CapacityError) as raised:
        SharedTransitionBuffer(10**13, SPEC)
    message = str(raised.value)
    assert "needs" in message and "free" in message and str(folder) in message
    assert os.listdir(folder) == []


def test_a_full_file_system_fails_before_anything_is_created(folder, monkeypatch):
    monkeypatch.setattr(segment_module, "shm_space", lambda directory=None: (4096, 8192))
    with pytest.raises(CapacityError, match=r"4096 bytes \(0.0 MiB\) free"):
        SharedTransitionBuffer(1000, SPEC)
    assert os.listdir(folder) == []


def test_a_writer_handle_needs_the_segment_it_was_made_for(folder):
    with SharedTransitionBuffer(8, SPEC, name="one") as buf:
        writer = buf.writer()
    with SharedTransitionBuffer(8, SPEC, name="one"):  # a new segment under the same name
        with pytest.raises(SharedMemoryError, match="another segment"):
            writer.extend(items(0, np.arange(2)))
