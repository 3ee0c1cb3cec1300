"""Array files: stream bytes to and from disk in chunks, with a CRC-32 computed in a helper thread.

Writes never copy a contiguous CPU array: each chunk is a view of the array's memory, written by the
calling thread while the helper thread folds the same chunk into the checksum (both release the GIL),
so the checksum costs about nothing next to the disk. Non-contiguous or CUDA arrays are copied one
chunk at a time, which bounds the extra memory to a chunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.errors import CheckpointCorruptError, CheckpointFileMissingError

__all__ = [
    "CHUNK_BYTES",
    "ArrayLike",
    "RunningCrc",
    "as_numpy",
    "check_size",
    "crc32",
    "file_crc",
    "fsync_dir",
    "fsync_file",
    "read_into",
    "row_crc32",
    "verify_file",
    "write_chunks",
    "write_rows_at",
]

CHUNK_BYTES = 8 * 2**20
"""Bytes per write or read call: large enough for full disk speed, small next to any buffer."""

ArrayLike = np.ndarray | torch.Tensor


def _writeback_starter() -> Any:
    """Return Linux's ``sync_file_range`` (start writeback of a range without waiting), None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_START_WRITEBACK = _writeback_starter()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range; do not wait


def _fast_crc32() -> Any:
    """Return ISA-L's CRC-32 (the ``accel`` extra: same values as zlib's, about 5x faster), else None."""
    try:
        from isal.isal_zlib import crc32
    except ImportError:
        return None
    return crc32


_FAST_CRC32 = _fast_crc32()
crc32 = _FAST_CRC32 or zlib.crc32
"""CRC-32 of a buffer (``crc32(data, start=0)``): ISA-L's when installed, else zlib's; the values are equal."""


class RunningCrc:
    """A CRC-32 folded over chunks in order, so callers overlap it with I/O.

    With ISA-L's CRC (fast next to any disk) chunks are folded at once; with zlib's, on one helper
    thread while the caller writes.

    Example:
        >>> crc = RunningCrc()
        >>> crc.update(b"abc"); crc.update(b"def")
        >>> crc.value() == zlib.crc32(b"abcdef")
        True
    """

    def __init__(self) -> None:
        """Start at the CRC of no bytes (with a one-thread pool for zlib's CRC: first in, first out)."""
        self._crc = 0
        self._pool = None if _FAST_CRC32 else ThreadPoolExecutor(max_workers=1, thread_name_prefix="xreplay-crc")
        self._last: Future[None] | None = None

    def _fold(self, chunk: memoryview | bytes) -> None:
        """Fold ``chunk`` into the running value."""
        self._crc = crc32(chunk, self._crc)

    def update(self, chunk: memoryview | bytes) -> None:
        """Fold (or queue) ``chunk``; it must stay unchanged until :meth:`value` returns."""
        if self._pool is None:
            self._fold(chunk)
        else:
            self._last = self._pool.submit(self._fold, chunk)

    def value(self) -> int:
        """Wait for every queued chunk and return the CRC-32 as an unsigned int."""
        if self._last is not None:
            self._last.result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return self._crc & 0xFFFFFFFF


def as_numpy(array: ArrayLike) -> np.ndarray:
    """Return a CPU numpy view of ``array`` (a copy only for CUDA tensors)."""
    if isinstance(array, torch.Tensor):
        array = array.detach()
        return (array if array.device.type == "cpu" else array.cpu()).numpy()
    return np.asarray(array)


def _byte_chunks(array: ArrayLike, rows: tuple[int, int] | None = None) -> Iterator[memoryview]:
    """Yield the bytes of ``array`` (or of its leading-dimension ``rows`` range) in C order, chunk by chunk."""
    start, stop = (0, int(array.shape[0]) if array.ndim else 1) if rows is None else rows
    contiguous = array.is_contiguous() if isinstance(array, torch.Tensor) else array.flags.c_contiguous
    on_cpu = not isinstance(array, torch.Tensor) or array.device.type == "cpu"
    if array.ndim == 0:
        yield np.ascontiguousarray(as_numpy(array)).reshape(1).view(np.uint8).data
        return
    itemsize = array.element_size() if isinstance(array, torch.Tensor) else array.itemsize
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * itemsize
    step = max(1, CHUNK_BYTES // max(row_bytes, 1))  # whole rows per chunk
    if contiguous and on_cpu:
        flat = as_numpy(array).reshape(-1).view(np.uint8)  # a view: no copy
        for first in range(start, stop, step):
            yield flat[first * row_bytes : min(stop, first + step) * row_bytes].data
        return
    for first in range(start, stop, step):  # one bounded copy per chunk
        block = as_numpy(array[first : min(stop, first + step)])
        yield np.ascontiguousarray(block).reshape(-1).view(np.uint8).data


def write_chunks(
    file: Path,
    array: ArrayLike,
    ranges: list[tuple[int, int]] | None = None,
    fsync: bool = True,
    defer_fsync: bool = False,
    header: bytes = b"",
) -> tuple[int, int]:
    """Write ``header``, then ``array`` (or the concatenation of its leading-dimension ``ranges``) to a new ``file``.

    The checksum is folded over the very memory written, so the caller must keep ``array`` unchanged
    until this returns (savers hold the buffer's lock).

    Args:
        file: A file to create (it must not exist).
        array: What to write.
        ranges: Leading-dimension row ranges to write instead of the whole array.
        fsync: Make the file durable.
        defer_fsync: With ``fsync``, only start the disk writes; the caller calls :func:`fsync_file` later.
        header: Bytes to write before the array (a ``.npy`` header), outside the checksum.

    Returns:
        ``(nbytes, crc32)`` of the array bytes written (the header excluded).

    Raises:
        OSError: The file cannot be created or written (e.g. ENOSPC); a partial file is left for the
            caller to remove.
    """
    crc = RunningCrc()
    nbytes = 0
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, memoryview(header))
        for part in ranges if ranges is not None else [None]:
            for chunk in _byte_chunks(array, part):
                crc.update(chunk)
                _write_all(fd, chunk)
                if fsync and _START_WRITEBACK is not None:  # the disk works meanwhile
                    _START_WRITEBACK(fd, len(header) + nbytes, len(chunk), _SYNC_FILE_RANGE_WRITE)
                nbytes += len(chunk)
        if fsync and not defer_fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
        value = crc.value()
    return nbytes, value


def _write_all(fd: int, data: memoryview) -> None:
    """Write all of ``data`` at the descriptor's position (``os.write`` may write less than asked)."""
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def write_rows_at(
    file: Path, rows: np.ndarray, ranges: list[tuple[int, int]], skip_zero: bool = False, offset: int = 0
) -> None:
    """Write the leading-dimension ``ranges`` of 2-d uint8 ``rows`` into existing ``file`` at their own offsets.

    Row ``i`` starts at byte ``offset + i * row_bytes``. ``skip_zero`` leaves all-zero chunks unwritten
    (for a fresh sparse file, which already reads as zeros).

    Raises:
        OSError: The file cannot be opened or written.
    """
    row_bytes = int(rows.shape[1]) if rows.ndim == 2 else 0
    if row_bytes == 0:
        return
    step = max(1, CHUNK_BYTES // row_bytes)
    fd = os.open(file, os.O_WRONLY)
    try:
        for start, stop in ranges:
            for first in range(start, stop, step):
                block = rows[first : min(stop, first + step)]
                if skip_zero and not block.any():
                    continue
                view = np.ascontiguousarray(block).reshape(-1).data
                position = offset + first * row_bytes
                while view:
                    done = os.pwrite(fd, view, position)
                    view, position = view[done:], position + done
    finally:
        os.close(fd)


def row_crc32(rows: np.ndarray, out: np.ndarray, ranges: list[tuple[int, int]]) -> None:
    """Set ``out[i]`` to the CRC-32 of row ``i`` of 2-d uint8 ``rows`` for every row in ``ranges``."""
    for start, stop in ranges:
        for i in range(start, stop):
            out[i] = crc32(rows[i].data)


def fsync_file(file: Path) -> None:
    """Flush ``file``'s data to disk (after writes made through another descriptor)."""
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_into(file: Path, targets: memoryview | list[memoryview], expected_crc: int | None, offset: int = 0) -> None:
    """Fill ``targets`` (writable byte views, in order) with ``file``'s bytes from ``offset``, checking size and CRC-32.

    Raises:
        CheckpointFileMissingError: The file does not exist.
        CheckpointCorruptError: The file's size or checksum differs from the metadata.
    """
    parts = [targets] if isinstance(targets, memoryview) else targets
    check_size(file, sum(len(p) for p in parts), offset)
    crc = RunningCrc()
    try:
        with open(file, "rb", buffering=0) as stream:
            stream.seek(offset)
            for part in parts:
                for offset in range(0, len(part), CHUNK_BYTES):
                    chunk = part[offset : offset + CHUNK_BYTES]
                    if stream.readinto(chunk) != len(chunk):
                        raise CheckpointCorruptError(f"checkpoint file {file} ended early (truncated while read)", file)
                    crc.update(chunk)
    finally:
        value = crc.value()
    _check_crc(file, value, expected_crc)


def file_crc(file: Path, nbytes: int, offset: int = 0) -> int:
    """Return the CRC-32 of ``file``'s bytes after ``offset``, checking that they are ``nbytes``, reading in chunks."""
    check_size(file, nbytes, offset)
    crc = 0
    buffer = bytearray(min(CHUNK_BYTES, max(nbytes, 1)))
    with open(file, "rb", buffering=0) as stream:
        stream.seek(offset)
        while got := stream.readinto(buffer):
            crc = crc32(memoryview(buffer)[:got], crc)
    return crc & 0xFFFFFFFF


def _check_crc(file: Path, value: int, expected: int | None) -> None:
    """Raise CheckpointCorruptError when ``value`` is not the ``expected`` CRC-32 of ``file``."""
    if expected is not None and value != expected:
        raise CheckpointCorruptError(
            f"checkpoint file {file} fails its checksum (crc32 {value:#010x}, metadata.json says {expected:#010x}): "
            f"it is corrupted; restore it from a copy or load another checkpoint",
            file,
        )


def verify_file(file: Path, nbytes: int, expected_crc: int | None, offset: int = 0) -> None:
    """Raise a typed error unless ``file`` holds ``nbytes`` bytes after ``offset`` with CRC-32 ``expected_crc``."""
    _check_crc(file, file_crc(file, nbytes, offset), expected_crc)


def check_size(file: Path, nbytes: int, header: int = 0) -> None:
    """Raise a typed error unless ``file`` exists and holds exactly ``header + nbytes`` bytes."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise CheckpointFileMissingError(f"checkpoint file {file} is missing (listed in metadata.json)", file) from None
    if size != header + nbytes:
        lists = f"{nbytes}" if not header else f"{header + nbytes} (a {header}-byte .npy header, then {nbytes})"
        raise CheckpointCorruptError(
            f"checkpoint file {file} holds {size} bytes but metadata.json lists {lists}: "
            f"{'truncated' if size < header + nbytes else 'has extra bytes'}",
            file,
        )


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries (new names and renames) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
