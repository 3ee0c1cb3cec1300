"""Live arrays: a :class:`~xreplay.storage.MemmapStorage` rows file, flushed in place without a torn state.

The storage maps its rows file copy-on-write, so writes stay in the process
until a flush and the file only ever holds flushed states. A flush into the
storage's own directory (see :func:`write_live`):

1. finds the rows written since the last flush (from the buffer's ring, or by
   comparing every row with the file when the ring cannot tell);
2. writes those rows as a redo record (an ordinary ``.delta`` file with its
   CRC-32) and sets their entries in the row-checksum array;
3. commits ``metadata.json`` naming the file, the redo record and the row
   checksums: from this point a reader replays the record onto the file;
4. writes the same rows into the file in place, fsyncs it, and releases the
   private copies of those pages (they read back from the file).

A crash before step 3 leaves the previous flush; after it, the record
completes the rows. A rows file no committed metadata names yet (a new
storage, or one widened to a new layout) is written in place directly.
Readers (:func:`read_live`) apply the record in memory, or in the file when
loading with ``mmap="shared"`` (:func:`recover_live`), and check every row
against its checksum.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from xreplay.errors import CheckpointCorruptError
from xreplay.persistence.npy_files import check_header
from xreplay.persistence.schema import contained_file
from xreplay.persistence.streams import (
    CHUNK_BYTES,
    check_size,
    fsync_file,
    read_into,
    row_crc32,
    verify_file,
    write_chunks,
    write_rows_at,
)
from xreplay.storage.memmap import map_rows

__all__ = ["LiveRows", "LiveWrite", "crc_array_name", "read_live", "recover_live", "write_live"]


class LiveRows(Protocol):
    """What a storage whose rows live in a file offers to the saver."""

    @property
    def file(self) -> Path:
        """Return the rows file in use."""

    @property
    def row_array(self) -> np.ndarray:
        """Return the rows as a 2-d uint8 array (the copy-on-write map of :attr:`file`)."""

    @property
    def row_crc(self) -> np.ndarray:
        """Return the CRC-32 of each row as of the last flush (uint32, one per row)."""

    @property
    def data_offset(self) -> int:
        """Return the bytes before the rows in :attr:`file` (its ``.npy`` header; 0 for a raw file)."""

    @property
    def pristine(self) -> bool:
        """Return whether the file was never written (it holds zeros, sparse)."""

    def mark_written(self) -> None:
        """Record that the file is being written in place (it is no longer pristine)."""

    def flushed(self, ranges: list[tuple[int, int]] | None) -> None:
        """Release the private copies of rows ``ranges`` (all when None), now equal to the file."""

    def committed(self, file_name: str) -> None:
        """Learn that committed metadata names ``file_name`` (older rows files can go)."""


def crc_array_name(name: str) -> str:
    """Return the name of the row-checksum array of live array ``name``."""
    return f"{name}.row_crc32"


@dataclasses.dataclass
class LiveWrite:
    """A flush of one live array: its metadata entry, and what to do once the metadata is committed."""

    entry: dict[str, Any]
    bytes_written: int
    apply: list[tuple[int, int]] | None  # rows to write into the file in place after the commit
    file: Path
    live: LiveRows
    fresh: bool

    def after_commit(self, fsync: bool) -> None:
        """Write the redo rows into the file (or nothing for a fresh file) and release private pages."""
        if self.apply:
            write_rows_at(self.file, self.live.row_array, self.apply, offset=self.live.data_offset)
            if fsync:
                fsync_file(self.file)
        self.live.flushed(None if self.fresh else self.apply)
        self.live.committed(self.file.name)


def _all_rows(rows: np.ndarray) -> list[tuple[int, int]]:
    """Return the one range covering every row."""
    return [(0, int(rows.shape[0]))] if rows.shape[0] else []


def _differing_rows(file: Path, rows: np.ndarray, offset: int) -> list[tuple[int, int]]:
    """Return the row ranges where ``rows`` differ from ``file``'s bytes after ``offset`` (compared chunk by chunk)."""
    capacity, row_bytes = int(rows.shape[0]), int(rows.shape[1])
    changed = np.zeros(capacity, dtype=bool)
    step = max(1, CHUNK_BYTES // max(row_bytes, 1))
    buffer = np.empty((min(step, max(capacity, 1)), row_bytes), dtype=np.uint8)
    with open(file, "rb", buffering=0) as stream:
        stream.seek(offset)
        for first in range(0, capacity, step):
            count = min(step, capacity - first)
            target = buffer[:count]
            got = stream.readinto(target.reshape(-1).data)
            if got != target.nbytes:
                return _all_rows(rows)
            changed[first : first + count] = (target != rows[first : first + count]).any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], changed.view(np.int8), [0]))))  # run starts and ends
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def write_live(
    directory: Path,
    name: str,
    live: LiveRows,
    old_entry: dict[str, Any] | None,
    ranges: list[tuple[int, int]] | None,
    delta_file: str,
    fsync: bool,
) -> LiveWrite:
    """Prepare the flush of live array ``name`` into its own ``directory`` (steps 1-2 of the module doc).

    Args:
        directory: The checkpoint directory, which holds ``live.file``.
        name: The array's name.
        live: The storage.
        old_entry: The array's entry in the committed metadata, if any.
        ranges: Rows written since that commit, None when unknown.
        delta_file: File name for the redo record.
        fsync: Make written files durable before returning.
    """
    rows, file = live.row_array, live.file
    header = {"dtype": rows.dtype.str, "shape": [int(d) for d in rows.shape]}
    committed = old_entry.get("file") if old_entry is not None and old_entry.get("live") else None
    entry = {**header, "file": file.name, "live": True, "row_crc32": crc_array_name(name), "deltas": []}
    if committed != file.name:  # no committed metadata names this file: write it in place now
        everything = _all_rows(rows)
        row_crc32(rows, live.row_crc, everything)
        skip_zero = live.pristine  # a never written sparse file already reads as zeros there
        live.mark_written()
        write_rows_at(file, rows, everything, skip_zero=skip_zero, offset=live.data_offset)
        if fsync:
            fsync_file(file)
        return LiveWrite(entry, rows.nbytes, None, file, live, True)
    if ranges is None:
        ranges = _differing_rows(file, rows, live.data_offset)
    row_crc32(rows, live.row_crc, ranges)
    written = 0
    if ranges:
        nbytes, crc = write_chunks(directory / delta_file, rows, ranges, fsync)
        entry["deltas"] = [{"file": delta_file, "nbytes": nbytes, "crc32": crc, "ranges": [list(r) for r in ranges]}]
        written = nbytes
    return LiveWrite(entry, written, ranges, file, live, False)


def _covered(entry: dict[str, Any], capacity: int) -> np.ndarray:
    """Return which rows the entry's redo records rewrite."""
    covered = np.zeros(capacity, dtype=bool)
    for delta in entry.get("deltas", []):
        for start, stop in delta["ranges"]:
            covered[start:stop] = True
    return covered


def _check_rows(file: Path, rows: np.ndarray, expected: np.ndarray, skip: np.ndarray | None = None) -> None:
    """Raise CheckpointCorruptError naming the first row of ``rows`` whose CRC-32 is not ``expected``'s."""
    got = np.empty(rows.shape[0], dtype=np.uint32)
    row_crc32(rows, got, _all_rows(rows))
    bad = got != expected
    if skip is not None:
        bad &= ~skip
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CheckpointCorruptError(
            f"checkpoint file {file} fails its checksum at row {first} ({int(bad.sum())} rows differ from the "
            f"row checksums in metadata): it is corrupted; restore it from a copy or load another checkpoint",
            file,
        )


def _verify_file_rows(file: Path, entry: dict[str, Any], expected: np.ndarray, offset: int) -> None:
    """Check the rows of a live file (from byte ``offset``) that no redo record rewrites, streaming it in chunks."""
    capacity, row_bytes = int(entry["shape"][0]), int(np.prod(entry["shape"][1:], dtype=np.int64))
    skip = _covered(entry, capacity)
    step = max(1, CHUNK_BYTES // max(row_bytes, 1))
    buffer = np.empty((min(step, max(capacity, 1)), row_bytes), dtype=np.uint8)
    with open(file, "rb", buffering=0) as stream:
        stream.seek(offset)
        for first in range(0, capacity, step):
            count = min(step, capacity - first)
            target = buffer[:count]
            if stream.readinto(target.reshape(-1).data) != target.nbytes:
                raise CheckpointCorruptError(f"checkpoint file {file} ended early (truncated while read)", file)
            _check_rows(file, target, expected[first : first + count], skip[first : first + count])


def read_live(
    directory: Path, entry: dict[str, Any], row_crc: np.ndarray | None, mapped: bool, verify: bool, header: bytes
) -> tuple[np.ndarray, mmap.mmap | None]:
    """Return a live array with its redo records applied: mapped copy-on-write, or read into memory.

    ``row_crc`` (None only for format 1) holds the rows' checksums; with ``verify`` every row is checked.
    ``header`` is what the file holds before the rows (its ``.npy`` header, empty for a raw file).

    Raises:
        CheckpointCorruptError: A row or a redo record fails its checksum, or a size or the header differs.
    """
    file = contained_file(directory, entry["file"])
    shape, offset = tuple(entry["shape"]), len(header)
    check_size(file, int(np.prod(shape, dtype=np.int64)), offset)
    check_header(file, header)
    if verify and row_crc is not None:
        _verify_file_rows(file, entry, row_crc, offset)
    mapping = None
    if mapped:
        rows, mapping = map_rows(file, shape, offset)
    else:
        rows = np.empty((shape[0], int(np.prod(shape[1:], dtype=np.int64))), dtype=np.uint8)
        read_into(file, rows.reshape(-1).data, None, offset)
    for delta in entry.get("deltas", []):
        targets = [rows[a:b].reshape(-1).data for a, b in delta["ranges"]]
        read_into(contained_file(directory, delta["file"]), targets, delta["crc32"])
        if verify and row_crc is not None:
            covered = np.zeros(rows.shape[0], dtype=bool)
            for a, b in delta["ranges"]:
                covered[a:b] = True
            _check_rows(file, rows[covered], row_crc[covered])
    return rows, mapping


def recover_live(directory: Path, entry: dict[str, Any], header: bytes, fsync: bool = True) -> None:
    """Replay the redo records of a live array onto its file (after a flush that was cut short).

    ``header`` is what the file holds before the rows. Each record's checksum is checked in full
    (streamed) before any byte of the file is written.
    """
    file = contained_file(directory, entry["file"])
    check_size(file, int(np.prod(entry["shape"], dtype=np.int64)), len(header))
    check_header(file, header)
    row_bytes = int(np.prod(entry["shape"][1:], dtype=np.int64))
    for delta in entry.get("deltas", []):
        source = contained_file(directory, delta["file"])
        verify_file(source, int(delta["nbytes"]), int(delta["crc32"]))
        buffer = bytearray(min(CHUNK_BYTES, max(int(delta["nbytes"]), 1)))
        fd = os.open(file, os.O_WRONLY)
        try:
            with open(source, "rb", buffering=0) as stream:
                for start, stop in delta["ranges"]:
                    position, end = len(header) + int(start) * row_bytes, len(header) + int(stop) * row_bytes
                    while position < end:
                        view = memoryview(buffer)[: min(len(buffer), end - position)]
                        if stream.readinto(view) != len(view):
                            raise CheckpointCorruptError(f"checkpoint file {source} ended early while read", source)
                        while view:
                            done = os.pwrite(fd, view, position)
                            view, position = view[done:], position + done
        finally:
            os.close(fd)
    if fsync and entry.get("deltas"):
        fsync_file(file)
