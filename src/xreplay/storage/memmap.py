"""MemmapStorage: episode rows in a file on disk, for buffers larger than memory, recovered exactly after a crash."""

from __future__ import annotations

import mmap
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xreplay.errors import CapacityError, CheckpointError, CheckpointMismatchError
from xreplay.scheme import Scheme
from xreplay.storage.layout import RowLayout
from xreplay.storage.tensor import TensorStorage

__all__ = ["MemmapStorage"]

_LIVE_NUMBER = re.compile(r"^rows\.live-(\d{6})\.bin$")


class MemmapStorage(TensorStorage):
    """A :class:`TensorStorage` whose rows are a file in a checkpoint directory, mapped copy-on-write.

    Rows live in ``path/rows.live-N.bin`` (a sparse file: untouched slots take no disk) and are
    used through a copy-on-write map and ``torch.from_numpy``, so the operating system pages
    them in and out and a buffer can be larger than memory. Writes stay private to the process
    until :meth:`flush`, which writes them to the file through a redo record (see
    :mod:`xreplay.persistence.live`) and commits the checkpoint in ``path``; the file therefore
    only ever holds flushed states, and after a crash :meth:`open` (or
    ``EpisodeBuffer.load(path, mmap="shared")``) recovers exactly the last flush, every row
    checked against its checksum. Private copies of written pages are released at each flush:
    between two flushes, the pages written take memory, so flush regularly.

    A storage used by a buffer belongs to it: :meth:`flush` then saves that buffer's checkpoint
    (kind, lengths, cursor, RNG), exactly like ``buffer.save(path)``, and never replaces it by a
    bare storage checkpoint.

    Args:
        scheme: The fields to store.
        capacity: Number of episode slots.
        max_seq_length: Steps per episode.
        path: A directory to create (or an empty one) for the rows and metadata.

    Raises:
        CheckpointError: ``path`` exists and is not empty.
        CapacityError: The file would not fit on the disk.

    Example:
        >>> import tempfile
        >>> from xreplay.scheme import Field, Scheme
        >>> path = tempfile.mkdtemp() + "/rows"
        >>> s = MemmapStorage(Scheme({"r": Field((1,))}), capacity=4, max_seq_length=3, path=path)
        >>> s.columns["r"][1] = 2.0
        >>> s.flush()
        >>> float(MemmapStorage.open(path).columns["r"][1, 0])
        2.0
    """

    checkpoint_kind: ClassVar[str] = "memmap_storage"

    def __init__(self, scheme: Scheme, capacity: int, max_seq_length: int, path: str | os.PathLike[str]):
        """Create ``path`` and a zero-filled rows file in it, and commit its first checkpoint."""
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CheckpointError(f"cannot create a MemmapStorage at {self.path}: it exists and is not empty", path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._files: list[Path] = []
        self._map: mmap.mmap | None = None
        self._owner: Any = None
        self._pristine = True
        super().__init__(scheme, capacity, max_seq_length)
        self.flush()

    @classmethod
    def attach(
        cls,
        scheme: Scheme,
        layout: RowLayout,
        rows: np.ndarray,
        file: Path,
        mapping: mmap.mmap | None,
        row_crc: np.ndarray,
    ) -> MemmapStorage:
        """Return a storage over a loaded copy-on-write map of its rows ``file`` (used when reopening)."""
        storage = cls.__new__(cls)
        storage.scheme, storage.layout = scheme, layout
        storage.capacity, storage.device, storage.pin_memory = int(rows.shape[0]), torch.device("cpu"), False
        storage.path, storage._files = Path(file).parent, [Path(file)]
        storage._map, storage._owner, storage._pristine = mapping, None, False
        storage.row_crc = np.array(row_crc, dtype=np.uint32)
        storage.rows = torch.from_numpy(rows.reshape(rows.shape[0], -1))
        storage.columns = layout.views(storage.rows)
        return storage

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MemmapStorage:
        """Reopen the storage in ``path`` as of its last flush (also the storage of an EpisodeBuffer saved there).

        Raises:
            CheckpointError: ``path`` holds no rows file of a MemmapStorage (or the errors of loading it).
        """
        from xreplay.persistence import load

        found = load(path, mmap="shared")
        storage = found if isinstance(found, MemmapStorage) else getattr(found, "storage", None)
        if not isinstance(storage, MemmapStorage):
            raise CheckpointError(f"{path} holds no MemmapStorage rows file; load it with xreplay.persistence.load")
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
        """Make :meth:`flush` save ``owner`` (the buffer over this storage) instead of the bare storage."""
        self._owner = owner

    def _next_file(self) -> Path:
        """Return a rows file name not used in the directory yet."""
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := _LIVE_NUMBER.match(p.name))]
        return self.path / f"rows.live-{max(numbers, default=0) + 1:06d}.bin"

    def _allocate(self, layout: RowLayout) -> torch.Tensor:
        """Create a new zero-filled (sparse) rows file for ``layout`` and map it copy-on-write."""
        from xreplay.persistence.live import map_rows

        needed = self.capacity * layout.row_bytes
        free = shutil.disk_usage(self.path).free
        if needed > free:
            raise CapacityError(
                f"memmap storage for {self.capacity} episodes x {layout.row_bytes} bytes needs "
                f"{needed / 2**20:.1f} MiB but {self.path} has {free / 2**20:.1f} MiB free"
            )
        file = self._next_file()
        with open(file, "xb") as handle:
            handle.truncate(needed)
        self._files.append(file)
        rows, self._map = map_rows(file, (self.capacity, layout.row_bytes))
        self.row_crc = np.zeros(self.capacity, dtype=np.uint32)
        self._pristine = True
        return torch.from_numpy(rows)

    def flushed(self, ranges: list[tuple[int, int]] | None) -> None:
        """Release the private copies of the pages of rows ``ranges`` (all when None): the file now holds them."""
        if self._map is None or not hasattr(self._map, "madvise"):
            return
        page, row_bytes = mmap.PAGESIZE, self.layout.row_bytes
        spans = [(0, len(self._map))] if ranges is None else [(a * row_bytes, b * row_bytes) for a, b in ranges]
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

    def flush(self) -> None:
        """Write the rows to disk and commit the checkpoint in :attr:`path` (what :meth:`open` recovers).

        The checkpoint is that of the buffer over this storage, when there is one.

        Raises:
            CheckpointMismatchError: No buffer owns this storage and :attr:`path` holds a buffer's
                checkpoint, which a bare storage flush would replace.
        """
        from xreplay.persistence import save

        if self._owner is not None:
            save(self._owner, self.path)
            return
        kind = _saved_kind(self.path)
        if kind not in (None, self.checkpoint_kind):
            raise CheckpointMismatchError(
                f"{self.path} holds a {kind!r} checkpoint; flushing the bare storage would replace it. Flush it "
                f"through its buffer: buffer.save({str(self.path)!r}) (or load the buffer with mmap='shared')",
                self.path,
            )
        save(self, self.path)

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` naming the live rows file (see :mod:`xreplay.persistence.kinds`)."""
        from xreplay.persistence.codec import encode_layout, encode_scheme

        structure = {
            "scheme": encode_scheme(self.scheme),
            "capacity": self.capacity,
            "layout": encode_layout(self.layout),
        }
        return {"structure": structure, "state": {}, "live": {"rows": self}}, {"rows": self.rows}

    @classmethod
    def checkpoint_validate(cls, v: Any) -> None:
        """Check a ``memmap_storage`` checkpoint's metadata before any of its files is opened."""
        from xreplay.persistence.codec import check_layout, check_scheme

        capacity = v.integer("structure.capacity", low=0, high=2**40)
        layout = check_layout(v, "structure.layout", check_scheme(v, "structure.scheme"))
        v.array_shape("rows", (capacity, layout.row_bytes), "|u1")

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> TensorStorage:
        """Return the storage of a checkpoint: a MemmapStorage when loaded with ``mmap="shared"``."""
        from xreplay.persistence.codec import decode_scheme
        from xreplay.persistence.episode_buffer import storage_from_rows

        structure = meta["structure"]
        live = meta.get("live", {}).get("rows")
        return storage_from_rows(decode_scheme(structure["scheme"]), structure["layout"], arrays["rows"], live)


def _saved_kind(path: Path) -> str | None:
    """Return the kind of the checkpoint committed at ``path``, None when there is none."""
    from xreplay.persistence.format import read_metadata

    if not (path / "metadata.json").exists():
        return None
    return str(read_metadata(path).get("kind"))
