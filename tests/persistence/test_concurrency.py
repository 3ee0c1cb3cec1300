"""Saves under concurrent writers and concurrent savers (issue 9, findings 4 and 5)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch

from tests.persistence import kinds
from xreplay.errors import CheckpointLockedError
from xreplay.persistence import load, save, verify
from xreplay.persistence.locks import holder, lock_file, saver_lock

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


def _episode_writer(buffer, stop, seed):
    """Add episodes whose every reward equals their length (a torn save would break that)."""
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        n = int(rng.integers(1, 4))
        lengths = rng.integers(1, kinds.T + 1, n)
        episodes = kinds._episodes(n, int(rng.integers(1 << 30)))
        episodes["reward"] = torch.from_numpy(np.repeat(lengths, kinds.T).reshape(n, kinds.T, 1).astype(np.float32))
        buffer.add(episodes, lengths=lengths)


def _transition_writer(buffer, stop, seed):
    """Extend by batches whose next_obs is obs + 1, and sample and update priorities."""
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        obs = rng.standard_normal((int(rng.integers(1, 5)), 2)).astype(np.float32)
        buffer.extend({"obs": obs, "next_obs": obs + 1, "act": np.zeros(len(obs), np.int8)})
        sample = buffer.sample(4)
        buffer.update_priorities(sample, rng.random(4) + 0.1)


def _ding_writer(buffer, stop, seed):
    i = seed * 10**6
    while not stop.is_set():
        kinds.write("ding", buffer, i)
        i += 1


WRITERS = {"episode": _episode_writer, "transition": _transition_writer, "ding": _ding_writer}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_twenty_saves_while_four_threads_write_all_verify(tmp_path, kind):
    buffer = kinds.make(kind, capacity=64) if kind == "episode" else kinds.filled(kind, capacity=64)
    stop = threading.Event()
    threads = [threading.Thread(target=WRITERS[kind], args=(buffer, stop, i)) for i in range(4)]
    for thread in threads:
        thread.start()
    path, generations = tmp_path / "ckpt", []
    try:
        for i in range(20):
            time.sleep(0.002)
            kinds.save(kind, buffer, path, incremental=i % 4 != 0)
            meta = verify(path)  # the checkpoint just committed passes its own checksums...
            generations.append(meta["generation"])
            loaded = kinds.load_back(kind, path, capacity=64)  # ...and loads as one consistent state
            if kind == "episode":
                size = len(loaded)
                rewards = loaded.get(np.arange(size))["reward"][:, 0, 0]
                assert torch.equal(rewards, torch.from_numpy(loaded._host_lengths[:size]).float())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert generations == list(range(1, 21))


def _hold_lock(path, ready_fd):
    with saver_lock(path):
        os.write(ready_fd, b"x")
        signal.pause()


def _fork(target, *args):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            target(*args, write_fd)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"x"
    os.close(read_fd)
    return pid


@needs_fork
def test_a_second_saver_fails_naming_the_holder_and_a_killed_holder_is_stale(tmp_path):
    path = tmp_path / "ckpt"
    pid = _fork(_hold_lock, path)
    with pytest.raises(CheckpointLockedError, match=rf"pid {pid} on host .* is saving there") as info:
        save(kinds.filled("episode"), path, lock_timeout=0.2)
    assert "lock_timeout" in str(info.value) and not path.exists()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert json.loads(lock_file(path).read_text())["pid"] == pid  # the dead saver's record is left behind...
    save(kinds.filled("episode"), path, lock_timeout=0.0)  # ...but its lock died with it: broken at once
    assert len(load(path)) > 0 and lock_file(path).read_text() == ""


def test_threads_saving_one_path_take_turns(tmp_path):
    path = tmp_path / "ckpt"
    with saver_lock(path):
        assert holder(path)["pid"] == os.getpid()
        errors = []
        thread = threading.Thread(target=lambda: errors.append(_try_save(path)))
        thread.start()
        thread.join()
    assert isinstance(errors[0], CheckpointLockedError) and "another thread" in str(errors[0])


def _try_save(path):
    try:
        save(kinds.filled("episode"), path, lock_timeout=0.05)
    except CheckpointLockedError as error:
        return error
    return None


def _save_many(kind, path, seed, times, ready_fd):
    buffer = kinds.filled(kind, writes=seed + 3)
    os.write(ready_fd, b"x")
    for i in range(times):
        kinds.write(kind, buffer, 100 * seed + i)
        kinds.save(kind, buffer, path, incremental=i % 2 == 0)


@needs_fork
@pytest.mark.parametrize("kind", ["episode", "transition"])
def test_two_processes_saving_one_path_never_lose_it(tmp_path, kind):
    path = tmp_path / "ckpt"
    kinds.save(kind, kinds.filled(kind), path)
    pids = [_fork(_save_many, kind, path, seed, 15) for seed in (1, 2)]
    loads = failures = 0
    statuses: dict[int, int] = {}
    while len(statuses) < len(pids):
        try:
            kinds.load_back(kind, path)  # a load racing with the savers retries if its files are replaced
            loads += 1
        except Exception as error:  # noqa: BLE001 - any failure is a lost checkpoint
            failures += 1
            print(error)
        for pid in set(pids) - set(statuses):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = status
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses.values())
    meta = verify(path)
    assert failures == 0 and loads > 0 and meta["generation"] == 31
    referenced = {e["file"] for e in meta["arrays"].values()} | {
        d["file"] for e in meta["arrays"].values() for d in e["deltas"]
    }
    assert {p.name for p in path.iterdir()} == referenced | {"metadata.json"}  # cleanup left exactly these
