"""MemmapStorage: episode rows in a file on disk, for buffers larger than memory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xreplay.errors import CapacityError, CheckpointError
from xreplay.scheme import Scheme
from xreplay.storage.layout import RowLayout
from xreplay.storage.tensor import TensorStorage

__all__ = ["MemmapStorage"]


class MemmapStorage(TensorStorage):
    """A :class:`TensorStorage` whose rows are a memory-mapped file in a checkpoint directory.

    Rows live in ``path/rows.live-N.bin`` (a sparse file: untouched slots take no disk) and are
    used through ``np.memmap`` and ``torch.from_numpy``, so the operating system pages them in
    and out and a buffer can be larger than memory. Everything else behaves as in
    :class:`TensorStorage` (it subclasses it to replace only where rows are allocated).

    :meth:`flush` writes the dirty pages to disk and commits ``path/metadata.json``; after a
    crash, :meth:`open` (or ``EpisodeBuffer.load(path, mmap="shared")`` for a buffer saved with
    ``buffer.save(path)``) recovers the rows as of the last flush. Slots written after that
    flush may already hold their new contents (the kernel writes pages back when it likes):
    in a buffer that has wrapped, those slots (the oldest episodes, right after the flushed
    cursor) can hold partly written episodes; flush after the writes you must keep.

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
        """Create ``path`` and a zero-filled rows file in it."""
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CheckpointError(f"cannot create a MemmapStorage at {self.path}: it exists and is not empty", path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._files: list[Path] = []
        self._map: np.memmap | None = None
        super().__init__(scheme, capacity, max_seq_length)
        self.flush()

    @classmethod
    def attach(cls, scheme: Scheme, layout: RowLayout, rows: np.memmap) -> MemmapStorage:
        """Return a storage over an existing read-write map of a rows file (used when reopening)."""
        storage = cls.__new__(cls)
        storage.scheme, storage.layout = scheme, layout
        storage.capacity, storage.device, storage.pin_memory = int(rows.shape[0]), torch.device("cpu"), False
        storage.path, storage._files = Path(str(rows.filename)).parent, [Path(str(rows.filename))]
        storage._map = rows
        storage.rows = torch.from_numpy(rows)
        storage.columns = layout.views(storage.rows)
        return storage

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MemmapStorage:
        """Reopen the storage in ``path`` as of its last flush (also the storage of a saved buffer there)."""
        from xreplay.persistence.checkpoint import _load_array
        from xreplay.persistence.codec import decode_layout, decode_scheme
        from xreplay.persistence.format import read_metadata

        meta = read_metadata(Path(path))
        entry = meta["arrays"].get("rows", {})
        if not entry.get("live"):
            raise CheckpointError(f"{path} holds no MemmapStorage rows file; load it with xreplay.persistence.load")
        rows = _load_array(Path(path), entry, "shared", False)
        scheme = decode_scheme(meta["structure"]["scheme"])
        return cls.attach(scheme, decode_layout(scheme, meta["structure"]["layout"]), rows)  # type: ignore[arg-type]

    @property
    def file(self) -> Path:
        """Return the file that holds the rows now."""
        return self._files[-1]

    def _allocate(self, layout: RowLayout) -> torch.Tensor:
        """Create a new zero-filled (sparse) rows file for ``layout`` and map it."""
        needed = self.capacity * layout.row_bytes
        free = shutil.disk_usage(self.path).free
        if needed > free:
            raise CapacityError(
                f"memmap storage for {self.capacity} episodes x {layout.row_bytes} bytes needs "
                f"{needed / 2**20:.1f} MiB but {self.path} has {free / 2**20:.1f} MiB free"
            )
        file = self.path / f"rows.live-{len(self._files) + 1:06d}.bin"
        with open(file, "xb") as handle:
            handle.truncate(needed)
        self._files.append(file)
        if needed == 0:
            self._map = None
            return torch.zeros((self.capacity, layout.row_bytes), dtype=torch.uint8)
        self._map = np.memmap(file, dtype=np.uint8, mode="r+", shape=(self.capacity, layout.row_bytes))
        return torch.from_numpy(self._map)

    def flush(self) -> None:
        """Write dirty rows to disk and commit the storage's metadata (what :meth:`open` recovers)."""
        from xreplay.persistence import save

        save(self, self.path)

    def checkpoint_flush(self) -> str:
        """Write dirty rows to disk (msync), remove rows files of older layouts, return the current file."""
        if self._map is not None:
            self._map.flush()
        keep = {self.file.name, *self._committed_files()}
        for old in self._files[:-1]:
            if old.name not in keep:
                old.unlink(missing_ok=True)  # replaced by a relayout and named by no committed metadata
        self._files = [f for f in self._files if f.name in keep]
        return str(self.file)

    def _committed_files(self) -> set[str]:
        """Return the live files the metadata on disk names."""
        try:
            meta = json.loads((self.path / "metadata.json").read_text())
        except (OSError, ValueError):
            return set()
        return {e["file"] for e in meta.get("arrays", {}).values() if e.get("live")}

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` naming the live rows file (see :mod:`xreplay.persistence.kinds`)."""
        from xreplay.persistence.codec import encode_layout, encode_scheme

        structure = {
            "scheme": encode_scheme(self.scheme),
            "capacity": self.capacity,
            "layout": encode_layout(self.layout),
        }
        return {"structure": structure, "state": {}, "live": {"rows": self.checkpoint_flush()}}, {"rows": self.rows}

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> TensorStorage:
        """Return the storage of a checkpoint: a MemmapStorage when its rows are mapped read-write."""
        from xreplay.persistence.codec import decode_scheme
        from xreplay.persistence.episode_buffer import storage_from_rows

        structure = meta["structure"]
        return storage_from_rows(decode_scheme(structure["scheme"]), structure["layout"], arrays["rows"])
