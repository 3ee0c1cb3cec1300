"""MemmapStorage: rows in a file, flush, reopen after a crash, use under EpisodeBuffer."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest
import torch

import xreplay
from xreplay import EpisodeBuffer, Field, OneHot, Scheme
from xreplay.errors import ArgumentError, CheckpointError
from xreplay.persistence import flush, load, open_storage, verify
from xreplay.storage import MemmapStorage, TensorStorage

T = 4


def _scheme() -> Scheme:
    return Scheme(
        {
            "obs": Field((3,)),
            "actions": Field((1,), dtype=torch.long, storage_dtype="auto"),
            "onehot": Field((5,), derived=OneHot("actions", 5)),
        }
    )


def _episodes(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, T, 3, generator=g), "actions": torch.randint(0, 5, (n, T, 1), generator=g)}


def _buffer(path, capacity: int = 8, row_order: str = "field") -> EpisodeBuffer:
    storage = MemmapStorage(_scheme(), capacity, T, path, row_order=row_order)
    return EpisodeBuffer(_scheme(), capacity, T, seed=0, storage=storage)


def test_rows_live_in_a_file(tmp_path):
    storage = MemmapStorage(_scheme(), 8, T, tmp_path / "m")
    assert storage.file.parent == tmp_path / "m" and storage.file.name == "rows.live-000001.npy"
    assert storage.data_offset == 4096 and storage.file.stat().st_size == 4096 + storage.nbytes  # a .npy header
    storage.columns["obs"][2] = 1.5
    flush(storage)
    on_disk = np.fromfile(storage.file, dtype=np.uint8, offset=4096).reshape(8, -1)
    assert np.array_equal(on_disk, storage.rows.numpy())


def test_the_rows_file_is_a_npy_file_numpy_opens_field_by_field(tmp_path, row_order):
    buffer = _buffer(tmp_path / "m", row_order=row_order)
    buffer.add(_episodes(3, 0), lengths=[1, 2, 4])
    flush(buffer)
    records = np.load(buffer.storage.file, mmap_mode="r")
    assert records.shape == (8,) and records.dtype.itemsize == buffer.storage.layout.row_bytes
    assert records.offset == 4096
    fields = records["steps"] if row_order == "step" else records  # step-major rows: one record per step
    for name, view in buffer.storage.layout.views(buffer.storage.rows).items():
        assert np.array_equal(fields[name], view.numpy()), name


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("keep")
    with pytest.raises(CheckpointError, match="not empty"):
        MemmapStorage(_scheme(), 2, T, tmp_path / "m")


def test_buffer_on_memmap_matches_a_buffer_in_memory(tmp_path, row_order):
    mapped = _buffer(tmp_path / "m", row_order=row_order)
    memory = EpisodeBuffer(_scheme(), 8, T, seed=0, row_order=row_order)
    for i in range(4):
        for b in (mapped, memory):
            b.add(_episodes(3, i), lengths=[1, 2, 4])
    assert isinstance(mapped.storage, MemmapStorage)
    assert torch.equal(mapped.storage.rows, memory.storage.rows)
    a, b = mapped.sample(5, truncate=True), memory.sample(5, truncate=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_storage_must_match_the_buffer(tmp_path):
    with pytest.raises(ValueError, match="build the storage from the same scheme"):
        EpisodeBuffer(_scheme(), 4, T, storage=MemmapStorage(_scheme(), 8, T, tmp_path / "m"))
    storage = MemmapStorage(_scheme(), 8, T, tmp_path / "s", row_order="step")
    with pytest.raises(ArgumentError, match="row_order 'field' differs from the order of the given storage"):
        EpisodeBuffer(_scheme(), 8, T, storage=storage, row_order="field")
    assert EpisodeBuffer(_scheme(), 8, T, storage=storage).storage.layout.order == "step"  # the storage's order


def test_reopen_recovers_the_last_flush(tmp_path):
    storage = MemmapStorage(_scheme(), 8, T, tmp_path / "m")
    storage.columns["obs"][:] = 2.0
    flush(storage)
    reopened = open_storage(tmp_path / "m")
    assert torch.equal(reopened.rows, storage.rows)
    reopened.columns["obs"][0] = 7.0  # shared: the storage keeps using the file...
    assert float(open_storage(tmp_path / "m").columns["obs"][0, 0, 0]) == 2.0  # ...which holds flushes only
    flush(reopened)
    assert float(open_storage(tmp_path / "m").columns["obs"][0, 0, 0]) == 7.0


def test_relayout_moves_to_a_new_file_and_keeps_values(tmp_path, row_order):
    buffer = _buffer(tmp_path / "m", row_order=row_order)
    buffer.add(_episodes(2, 0))
    first = buffer.storage.file
    big = _episodes(1, 1)
    buffer.storage.relayout({"actions": torch.int16})
    buffer.add(big)
    assert buffer.storage.file != first and first.exists()  # kept until a flush no longer needs it
    xreplay.save(buffer, tmp_path / "m")
    xreplay.save(buffer, tmp_path / "m")
    assert not first.exists()
    reopened = xreplay.load(tmp_path / "m", mmap="shared", kind=EpisodeBuffer)
    assert torch.equal(reopened.storage.rows, buffer.storage.rows) and reopened.storage.layout.order == row_order


def test_buffer_save_into_its_directory_is_a_flush(tmp_path, row_order):
    buffer = _buffer(tmp_path / "m", capacity=64, row_order=row_order)
    buffer.add(_episodes(1, 9))  # the first actions widen the "auto" column: a new rows file
    xreplay.save(buffer, tmp_path / "m")
    buffer.add(_episodes(4, 0))
    report = xreplay.save(buffer, tmp_path / "m")
    assert report.incremental and report.bytes_written < buffer.storage.nbytes / 4  # 4 of 64 rows, not a copy
    recovered = xreplay.load(tmp_path / "m", mmap="shared", kind=EpisodeBuffer)
    assert isinstance(recovered.storage, MemmapStorage) and len(recovered) == 5
    assert sorted(p.name for p in (tmp_path / "m").glob("rows.live-*")) == [buffer.storage.file.name]
    assert torch.equal(recovered.storage.rows, buffer.storage.rows)
    copy = xreplay.load(tmp_path / "m", kind=EpisodeBuffer)  # read into memory instead
    assert type(copy.storage) is TensorStorage and torch.equal(copy.storage.rows, buffer.storage.rows)
    verify(tmp_path / "m")


def test_memmap_buffer_saved_elsewhere_is_a_normal_checkpoint(tmp_path):
    buffer = _buffer(tmp_path / "m")
    buffer.add(_episodes(5, 0))
    xreplay.save(buffer, tmp_path / "copy")
    loaded = load(tmp_path / "copy")
    assert type(loaded.storage) is TensorStorage and torch.equal(loaded.storage.rows, buffer.storage.rows)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")
def test_killed_writer_recovers_every_flushed_episode(tmp_path):
    buffer = _buffer(tmp_path / "m", capacity=64)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            buffer.add(_episodes(10, 0))
            xreplay.save(buffer, tmp_path / "m")  # flush: these 10 episodes must survive
            buffer.add(_episodes(7, 1))  # not flushed
            os.write(write_fd, b"x")
            signal.pause()
        finally:
            os._exit(1)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    recovered = xreplay.load(tmp_path / "m", mmap="shared", kind=EpisodeBuffer)
    expected = EpisodeBuffer(_scheme(), 64, T, seed=0)
    expected.add(_episodes(10, 0))
    assert len(recovered) == 10 and recovered.writer.state_dict() == expected.writer.state_dict()
    assert torch.equal(recovered.storage.rows[:10], expected.storage.rows[:10])
    recovered.add(_episodes(1, 2))  # and it keeps going on the file
    assert len(xreplay.load(tmp_path / "m", mmap="shared", kind=EpisodeBuffer)) == 10  # until the next flush


# -- issue 9, finding 6: a storage flush never clobbers its buffer's checkpoint, and a crash exposes exactly
# -- the last flush ---------------------------------------------------------------------------------------


def test_storage_flush_saves_the_buffer_over_it(tmp_path):
    from tests.persistence import kinds

    buffer = kinds.filled("memmap", tmp_path / "m", writes=5)
    xreplay.save(buffer, tmp_path / "m")
    kinds.write("memmap", buffer, 5)
    flush(buffer.storage)  # before the fix: rewrote metadata.json as a bare storage, deleted the lengths
    meta = verify(tmp_path / "m")
    assert meta["kind"] == "episode_buffer" and "lengths" in meta["arrays"]
    assert kinds.snapshot(xreplay.load(tmp_path / "m", mmap="shared", kind=EpisodeBuffer)) == kinds.snapshot(buffer)


def test_a_bare_storage_flush_refuses_to_replace_a_buffer_checkpoint(tmp_path):
    from xreplay.errors import CheckpointMismatchError

    buffer = _buffer(tmp_path / "m")
    buffer.add(_episodes(3, 0))
    xreplay.save(buffer, tmp_path / "m")
    storage = buffer.storage
    storage.bind_owner(None)  # a storage nobody owns any more
    with pytest.raises(CheckpointMismatchError, match=r"holds a 'episode_buffer' checkpoint.*flush\(buffer\)"):
        flush(storage)
    assert len(xreplay.load(tmp_path / "m", kind=EpisodeBuffer)) == 3


def _crash_child(path, writes, after, ready_fd, crash_in_apply):
    from tests.persistence import kinds

    buffer = kinds.filled("memmap", path, writes=writes)
    if crash_in_apply:  # die half-way through writing the flushed rows into the file, after the commit
        import xreplay.persistence.live as live

        real = live.write_rows_at

        def half_then_die(file, rows, ranges, skip_zero=False, offset=0):
            start, stop = ranges[0]
            real(file, rows, [(start, start + max(1, (stop - start) // 2))], skip_zero, offset)
            os.kill(os.getpid(), signal.SIGKILL)

        flush(buffer.storage)  # a clean flush first, so the next one writes a redo record
        for i in range(writes, writes + 3):
            kinds.write("memmap", buffer, i)
        live.write_rows_at = half_then_die
        os.write(ready_fd, b"x")
        flush(buffer.storage)
        return
    flush(buffer.storage)
    for i in range(writes, writes + after):  # overwrite flushed slots in place, never flushed
        kinds.write("memmap", buffer, i)
    os.write(ready_fd, b"x")
    signal.pause()


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")
@pytest.mark.parametrize("crash_in_apply", [False, True], ids=["unflushed_writes", "killed_while_applying_a_flush"])
def test_after_a_crash_the_buffer_is_exactly_its_last_flush(tmp_path, crash_in_apply):
    from tests.persistence import kinds

    writes = 12  # a capacity of 8: the ring has wrapped, so later writes overwrite flushed episodes
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            _crash_child(tmp_path / "m", writes, 6, write_fd, crash_in_apply)
        finally:
            os._exit(1)
    os.close(write_fd)
    assert os.read(read_fd, 1) == b"x"
    if not crash_in_apply:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    expected = kinds.snapshot(kinds.filled("memmap", tmp_path / "reference", writes=writes + 3 * crash_in_apply))
    for mmap in (True, "shared", False):  # shared replays a cut-short flush into the file, then the others read it
        recovered = xreplay.load(tmp_path / "m", mmap=mmap, kind=EpisodeBuffer)
        assert kinds.snapshot(recovered) == expected, mmap
    verify(tmp_path / "m")
