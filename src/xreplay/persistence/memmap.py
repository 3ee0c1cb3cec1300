"""Checkpoints of a :class:`~xreplay.storage.MemmapStorage` in its own directory: :func:`flush`, :func:`open_storage`.

A memmap storage's rows file lives in its checkpoint directory and is written
in place (see :mod:`xreplay.persistence.live`): :func:`flush` saves into that
directory (the checkpoint of the buffer over the storage when there is one,
kind ``memmap_storage`` for a bare storage), and :func:`open_storage` reopens
the rows of the last flush with ``mmap="shared"``, recovering a flush a crash
cut short.

Example:
    >>> import tempfile
    >>> from xreplay.scheme import Field, Scheme
    >>> path = tempfile.mkdtemp() + "/rows"
    >>> s = MemmapStorage(Scheme({"r": Field((1,))}), capacity=4, max_seq_length=3, path=path)
    >>> s.columns["r"][1] = 2.0
    >>> _ = flush(s)
    >>> float(open_storage(path).columns["r"][1, 0])
    2.0
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xreplay.errors import CheckpointError, CheckpointMismatchError
from xreplay.persistence.checkpoint import SaveReport, load, save
from xreplay.persistence.codec import check_layout, check_scheme, decode_scheme, encode_layout, encode_scheme
from xreplay.persistence.episode_buffer import storage_from_rows
from xreplay.persistence.format import METADATA, read_metadata
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.schema import Validator
from xreplay.storage.memmap import MemmapStorage
from xreplay.storage.tensor import TensorStorage

__all__ = ["MEMMAP_STORAGE", "MemmapStorageAdapter", "flush", "open_storage"]


class MemmapStorageAdapter:
    """Saves, checks and restores a bare :class:`~xreplay.storage.MemmapStorage` (kind ``memmap_storage``)."""

    kind = "memmap_storage"

    def state(self, storage: MemmapStorage) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` naming the live rows file."""
        structure = {
            "scheme": encode_scheme(storage.scheme),
            "capacity": storage.capacity,
            "layout": encode_layout(storage.layout),
        }
        return {"structure": structure, "state": {}, "live": {"rows": storage}}, {"rows": storage.state_dict()["rows"]}

    def validate(self, v: Validator) -> None:
        """Check a ``memmap_storage`` checkpoint's metadata before any of its files is opened."""
        capacity = v.integer("structure.capacity", low=0, high=2**40)
        layout = check_layout(v, "structure.layout", check_scheme(v, "structure.scheme"))
        v.array_shape("rows", (capacity, layout.row_bytes), "|u1")

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> TensorStorage:
        """Return the storage of a checkpoint: a MemmapStorage when loaded with ``mmap="shared"``."""
        structure = meta["structure"]
        live = meta.get("live", {}).get("rows")
        return storage_from_rows(decode_scheme(structure["scheme"]), structure["layout"], arrays["rows"], live)


MEMMAP_STORAGE = MemmapStorageAdapter()
register_kind(MEMMAP_STORAGE, classes=(MemmapStorage,))


def flush(target: Any, fsync: bool = True) -> SaveReport:
    """Write a memmap storage's rows to its file and commit the checkpoint in its directory.

    Args:
        target: A :class:`~xreplay.storage.MemmapStorage`, or a buffer whose storage is one. A storage
            that a buffer uses saves that buffer (its kind, lengths, cursor and RNG), never a bare storage.
        fsync: Make the flush durable across power loss.

    Raises:
        CheckpointError: ``target`` has no memmap storage.
        CheckpointMismatchError: A bare storage would replace the checkpoint of a buffer in its directory.
    """
    storage = target if isinstance(target, MemmapStorage) else getattr(target, "storage", None)
    if not isinstance(storage, MemmapStorage):
        raise CheckpointError(f"cannot flush a {type(target).__name__}: it has no MemmapStorage; use xreplay.save")
    owner = storage.owner if storage.owner is not None else (target if target is not storage else None)
    if owner is not None:
        return save(owner, storage.path, fsync=fsync)
    kind = _saved_kind(storage.path)
    if kind not in (None, MEMMAP_STORAGE.kind):
        raise CheckpointMismatchError(
            f"{storage.path} holds a {kind!r} checkpoint; flushing the bare storage would replace it. Flush it "
            f"through its buffer: xreplay.persistence.flush(buffer) (or load the buffer with mmap='shared')",
            storage.path,
        )
    return save(storage, storage.path, fsync=fsync)


def open_storage(path: str | os.PathLike[str]) -> MemmapStorage:
    """Reopen the memmap storage in ``path`` as of its last flush (also that of a buffer saved there).

    Raises:
        CheckpointError: ``path`` holds no rows file of a MemmapStorage (or the errors of loading it).
    """
    found = load(path, mmap="shared")
    storage = found if isinstance(found, MemmapStorage) else getattr(found, "storage", None)
    if not isinstance(storage, MemmapStorage):
        raise CheckpointError(f"{path} holds no MemmapStorage rows file; load it with xreplay.load", path)
    return storage


def _saved_kind(path: Path) -> str | None:
    """Return the kind of the checkpoint committed at ``path``, None when there is none."""
    if not (path / METADATA).exists():
        return None
    return str(read_metadata(path).get("kind"))
