"""MemmapStorage: episode rows in a file on disk, mapped copy-on-write, for buffers larger than memory."""

from __future__ import annotations

import mmap
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.errors import CapacityError, CheckpointError
from xreplay.scheme import Scheme
from xreplay.storage.layout import RowLayout
from xreplay.storage.npy import npy_header, record_dtype
from xreplay.storage.tensor import TensorStorage

__all__ = ["MemmapStorage", "map_rows"]

_LIVE_NUMBER = re.compile(r"^rows\.live-(\d{6})\.(bin|npy)$")  # .bin: a raw rows file from before format 3


class MemmapStorage(TensorStorage):
    """A :class:`TensorStorage` whose rows are a file in a checkpoint directory, mapped copy-on-write.

    The file layout is public: rows live in ``path/rows.live-N.npy``, a standard ``.npy`` file of
    ``capacity`` records of the storage's :class:`~xreplay.storage.layout.RowLayout` (dtype
    :func:`~xreplay.storage.npy.record_dtype`; its 4096-byte header is followed by ``capacity x
    row_bytes`` bytes, a sparse file: untouched slots take no disk), used through a copy-on-write
    map and ``torch.from_numpy``, so the
    operating system pages them in and out and a buffer can be larger than memory. Writes stay
    private to the process until the file is written, so the file only ever holds the states
    written to it.

    Writing it is a checkpoint's job: :func:`xreplay.persistence.flush` writes the changed rows
    through a redo record and commits the checkpoint in ``path`` (that of the buffer over this
    storage, when there is one: see :attr:`owner`), and after a crash
    :func:`xreplay.persistence.open_storage` (or ``xreplay.load(path, mmap="shared")``) recovers
    exactly the last flush, every row checked against its checksum. Private copies of written
    pages are released at each flush: between two flushes, the pages written take memory, so
    flush regularly.

    Args:
        scheme: The fields to store.
        capacity: Number of episode slots.
        max_seq_length: Steps per episode.
        path: A directory to create (or an empty one) for the rows and metadata.
        row_order: ``"field"`` or ``"step"`` (see :class:`~xreplay.storage.TensorStorage`).

    Raises:
        CheckpointError: ``path`` exists and is not an empty directory.
        CapacityError: The file would not fit on the disk.

    Example:
        >>> import tempfile
        >>> from xreplay.scheme import Field, Scheme
        >>> s = MemmapStorage(Scheme({"r": Field((1,))}), capacity=4, max_seq_length=3, path=tempfile.mkdtemp() + "/m")
        >>> s.columns["r"][1] = 2.0  # private to this process until a flush writes the file
        >>> s.file.name, s.file.stat().st_size == s.data_offset + s.nbytes, s.pristine
        ('rows.live-000001.npy', True, True)
    """

    def __init__(
        self,
        scheme: Scheme,
        capacity: int,
        max_seq_length: int,
        path: str | os.PathLike[str],
        row_order: str = "field",
    ):
        """Create ``path`` and a zero-filled (sparse) rows file in it."""
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CheckpointError(f"cannot create a MemmapStorage at {self.path}: it exists and is not empty", path)
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._files: list[Path] = []
        self._map: mmap.mmap | None = None
        self._owner: Any = None
        self._pristine = True
        self.data_offset = 0
        """Bytes before the rows in :attr:`file`: its ``.npy`` header (0 for a raw rows file of format 1 or 2)."""
        try:
            super().__init__(scheme, capacity, max_seq_length, row_order=row_order)
        except BaseException:
            if created:  # a refused storage leaves nothing behind
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    @classmethod
    def attach(
        cls,
        scheme: Scheme,
        layout: RowLayout,
        rows: np.ndarray,
        file: Path,
        mapping: mmap.mmap | None,
        row_crc: np.ndarray,
        data_offset: int = 0,
    ) -> MemmapStorage:
        """Return a storage over a loaded copy-on-write map of its rows ``file`` (rows at ``data_offset``)."""
        storage = cls.__new__(cls)
        storage.scheme, storage.layout = scheme, layout
        storage.capacity, storage.device, storage.pin_memory = int(rows.shape[0]), torch.device("cpu"), False
        storage.path, storage._files = Path(file).parent, [Path(file)]
        storage._map, storage._owner, storage._pristine = mapping, None, False
        storage.data_offset = int(data_offset)
        storage.row_crc = np.array(row_crc, dtype=np.uint32)
        storage.rows = torch.from_numpy(rows.reshape(rows.shape[0], -1))
        storage.columns = layout.views(storage.rows)
        return storage

    @property
    def file(self) -> Path:
        """Return the file that holds the rows now."""
        return self._files[-1]

    @property
    def row_array(self) -> np.ndarray:
        """Return the rows as a 2-d uint8 numpy array (the copy-on-write map of :attr:`file`)."""
        return self.rows.numpy()

    @property
    def pristine(self) -> bool:
        """Return whether :attr:`file` was never written (it reads as zeros)."""
        return self._pristine

    def mark_written(self) -> None:
        """Record that :attr:`file` is being written in place."""
        self._pristine = False

    def bind_owner(self, owner: Any) -> None:
        """Record ``owner``, the buffer over this storage: a flush then saves that buffer, not the bare storage."""
        self._owner = owner

    @property
    def owner(self) -> Any:
        """Return the buffer over this storage (None for a bare storage)."""
        return self._owner

    def _next_file(self) -> Path:
        """Return a rows file name not used in the directory yet."""
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := _LIVE_NUMBER.match(p.name))]
        return self.path / f"rows.live-{max(numbers, default=0) + 1:06d}.npy"

    def _allocate(self, layout: RowLayout) -> torch.Tensor:
        """Create a new zero-filled (sparse) rows file for ``layout`` (a ``.npy`` file) and map it copy-on-write."""
        header = npy_header(record_dtype(layout), (self.capacity,))
        needed = len(header) + self.capacity * layout.row_bytes
        free = shutil.disk_usage(self.path).free
        if needed > free:
            raise CapacityError(
                f"memmap storage for {self.capacity} episodes x {layout.row_bytes} bytes needs "
                f"{needed / 2**20:.1f} MiB but {self.path} has {free / 2**20:.1f} MiB free"
            )
        file = self._next_file()
        with open(file, "xb") as handle:
            handle.write(header)
            handle.truncate(needed)
        self._files.append(file)
        rows, self._map = map_rows(file, (self.capacity, layout.row_bytes), len(header))
        self.data_offset = len(header)
        self.row_crc = np.zeros(self.capacity, dtype=np.uint32)
        self._pristine = True
        return torch.from_numpy(rows)

    def flushed(self, ranges: list[tuple[int, int]] | None) -> None:
        """Release the private copies of the pages of rows ``ranges`` (all when None): the file now holds them."""
        if self._map is None or not hasattr(self._map, "madvise"):
            return
        page, row_bytes = mmap.PAGESIZE, self.layout.row_bytes
        base = self.data_offset  # the map starts at the file's header
        spans = (
            [(0, len(self._map))]
            if ranges is None
            else [(base + a * row_bytes, base + b * row_bytes) for a, b in ranges]
        )
        for start, stop in spans:
            first = -(-start // page) * page  # whole pages inside the span only: neighbours may be unflushed
            last = stop // page * page
            if last > first:
                self._map.madvise(mmap.MADV_DONTNEED, first, last - first)

    def committed(self, file_name: str) -> None:
        """Delete this storage's older rows files: committed metadata now names ``file_name`` only."""
        for old in self._files[:-1]:
            if old.name != file_name:
                old.unlink(missing_ok=True)
        self._files = [f for f in self._files if f.name == file_name or f == self.file]


def map_rows(file: Path, shape: tuple[int, ...], offset: int = 0) -> tuple[np.ndarray, mmap.mmap | None]:
    """Return a copy-on-write map of a rows file (rows from byte ``offset``) as a 2-d uint8 array, and the map.

    The map (None when there are no rows) starts at the beginning of the file, so ``offset`` needs no alignment.
    """
    capacity, row_bytes = int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))
    if capacity * row_bytes == 0:
        return np.zeros((capacity, row_bytes), dtype=np.uint8), None
    fd = os.open(file, os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, offset + capacity * row_bytes, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    rows = np.frombuffer(mapping, dtype=np.uint8, count=capacity * row_bytes, offset=offset)
    return rows.reshape(capacity, row_bytes), mapping
