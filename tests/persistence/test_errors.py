"""Bad checkpoints and failed saves raise typed errors that name the path and the reason."""

from __future__ import annotations

import errno
import json
import os

import pytest

import xreplay
import xreplay.persistence.streams as streams
from tests.persistence.persistence_helpers import episodes, filled_buffer, reseal, same_buffer
from xreplay import EpisodeBuffer, Field, Scheme
from xreplay.compat.pymarl import ReplayBuffer
from xreplay.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointFileMissingError,
    CheckpointMismatchError,
    CheckpointVersionError,
    CheckpointWriteError,
    NotACheckpointError,
)
from xreplay.persistence import load, verify


@pytest.fixture
def ckpt(tmp_path):
    xreplay.save(filled_buffer(), tmp_path / "ckpt")
    return tmp_path / "ckpt"


def _meta(path):
    return json.loads((path / "metadata.json").read_text())


def _rows_file(path):
    return path / _meta(path)["arrays"]["rows"]["file"]


def test_errors_are_oserrors_with_the_path():
    error = CheckpointCorruptError("checkpoint file /x fails its checksum", "/x")
    assert isinstance(error, OSError) and error.filename == "/x" and str(error).startswith("checkpoint file /x")


def test_directory_without_metadata_is_not_a_checkpoint(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(NotACheckpointError, match="no metadata.json"):
        load(tmp_path / "other")


def test_foreign_metadata_is_not_a_checkpoint(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metadata.json").write_text('{"name": "something else"}')
    with pytest.raises(NotACheckpointError, match="lacks format"):
        load(tmp_path / "other")


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointFileMissingError, match="does not exist") as info:
        load(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)


def test_missing_array_file_is_named(ckpt):
    _rows_file(ckpt).unlink()
    with pytest.raises(CheckpointFileMissingError, match=r"rows\.g000001\.npy is missing"):
        load(ckpt)


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_truncated_file_is_named(ckpt, mmap):
    rows = _rows_file(ckpt)
    os.truncate(rows, rows.stat().st_size - 7)
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy holds .* truncated"):
        load(ckpt, mmap=mmap)


def test_flipped_byte_fails_the_checksum(ckpt):
    rows = _rows_file(ckpt)
    data = bytearray(rows.read_bytes())
    data[4096 + (len(data) - 4096) // 2] ^= 0xFF  # in the data, after the .npy header
    rows.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy fails its checksum"):
        load(ckpt)
    with pytest.raises(CheckpointCorruptError):
        verify(ckpt)
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy fails its checksum"):
        load(ckpt, mmap=True)  # a map is checked too, by streaming the file through the checksum...
    assert len(load(ckpt, mmap=True, verify=False)) == 10  # ...unless the caller accepts the risk


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda h: h.replace(b"'shape': (16,)", b"'shape': (61,)"), id="shape"),
        pytest.param(lambda h: h.replace(b"'<f4'", b"'<f8'", 1), id="dtype"),
        pytest.param(lambda h: b"\0" + h[1:], id="magic"),
    ],
)
@pytest.mark.parametrize("reader", ["load", "mmap", "unverified", "verify"])
def test_a_header_that_differs_from_the_metadata_is_refused_naming_the_file(ckpt, damage, reader):
    rows = _rows_file(ckpt)
    data = rows.read_bytes()
    header = damage(data[:4096])
    assert len(header) == 4096 and header != data[:4096]
    rows.write_bytes(header + data[4096:])
    read = {
        "load": load,
        "mmap": lambda p: load(p, mmap=True),
        "unverified": lambda p: load(p, mmap=True, verify=False),  # headers are checked even then
        "verify": verify,
    }[reader]
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy does not start with the 4096-byte \.npy"):
        read(ckpt)


def test_corrupted_delta_fails_the_checksum(ckpt):
    buffer = xreplay.load(ckpt, kind=EpisodeBuffer)
    buffer.add(episodes(1, 4))
    assert xreplay.save(buffer, ckpt).incremental
    delta = ckpt / _meta(ckpt)["arrays"]["rows"]["deltas"][0]["file"]
    delta.write_bytes(b"\0" * delta.stat().st_size)
    with pytest.raises(CheckpointCorruptError, match=r"\.delta fails its checksum"):
        load(ckpt, mmap=True)


def test_garbled_metadata_is_corrupt(ckpt):
    (ckpt / "metadata.json").write_text('{"format": "xreplay-checkpoint", ')
    with pytest.raises(CheckpointCorruptError, match="not valid JSON"):
        load(ckpt)


def test_newer_format_version_names_the_xreplay_that_reads_it(ckpt):
    meta = _meta(ckpt)
    meta.update(format_version=99, written_by="7.0.0", readable_since="6.5.0")
    reseal(ckpt, meta)
    with pytest.raises(CheckpointVersionError, match=r"format version 99.*upgrade to xreplay >= 6\.5\.0"):
        load(ckpt)


def test_other_kind_is_a_mismatch(ckpt):
    with pytest.raises(CheckpointMismatchError, match="'episode_buffer' checkpoint, not 'pymarl.replay_buffer'"):
        ReplayBuffer.load(ckpt)


def test_other_scheme_is_a_mismatch(ckpt):
    with pytest.raises(CheckpointMismatchError, match="another scheme"):
        xreplay.load(ckpt, scheme=Scheme({"reward": Field((1,))}), kind=EpisodeBuffer)


def test_unknown_kind_is_a_mismatch(ckpt):
    meta = _meta(ckpt)
    meta["kind"] = "someone_elses_buffer"
    reseal(ckpt, meta)
    with pytest.raises(CheckpointMismatchError, match="unknown to this xreplay"):
        load(ckpt)


def test_save_refuses_to_overwrite_a_non_checkpoint(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(NotACheckpointError, match="will not save"):
        xreplay.save(filled_buffer(), tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_unsupported_object_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="cannot checkpoint a dict"):
        from xreplay.persistence import save

        save({"a": 1}, tmp_path / "x")


def _disk_full_after(monkeypatch, budget):
    """Make os.write (as the array streams use it) fail with ENOSPC once ``budget`` bytes are written."""
    real = os.write
    left = [budget]

    def write(fd, data):
        if left[0] < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        left[0] -= len(data)
        return real(fd, data)

    monkeypatch.setattr(streams.os, "write", write)


@pytest.mark.parametrize(
    ("incremental", "budget"),
    [
        pytest.param(True, 0, id="delta-first_write"),
        pytest.param(True, 100, id="delta-mid_rows"),
        pytest.param(True, 2000, id="delta-later_array"),
        pytest.param(False, 0, id="full-first_write"),
        pytest.param(False, 100, id="full-in_the_header"),
        pytest.param(False, 4196, id="full-mid_rows"),  # after the rows file's 4096-byte .npy header
        pytest.param(False, 11146, id="full-later_array"),  # rows written (4096 + 2944 bytes), inside lengths
    ],
)
def test_full_disk_fails_clearly_and_keeps_the_previous_checkpoint(ckpt, monkeypatch, budget, incremental):
    buffer = xreplay.load(ckpt, kind=EpisodeBuffer)
    buffer.add(episodes(3, 8))
    _disk_full_after(monkeypatch, budget)
    with pytest.raises(CheckpointWriteError, match="No space left.*previous checkpoint is unchanged") as info:
        xreplay.save(buffer, ckpt, incremental=incremental)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    verify(ckpt)
    assert same_buffer(filled_buffer(), xreplay.load(ckpt, kind=EpisodeBuffer))
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(
        ["metadata.json", "rows.g000001.npy", "lengths.g000001.npy"]
    )


def test_full_disk_on_a_first_save_leaves_nothing(tmp_path, monkeypatch):
    _disk_full_after(monkeypatch, 100)
    with pytest.raises(CheckpointWriteError):
        xreplay.save(filled_buffer(), tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == [".ckpt.xreplay-lock"]  # the saver lock file stays (empty)
    assert (tmp_path / ".ckpt.xreplay-lock").read_text() == ""
