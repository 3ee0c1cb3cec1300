"""The on-disk format: ``metadata.json`` plus one raw array file per array (and append-only delta files).

A checkpoint is a directory::

    metadata.json              the only file ever replaced; the commit point of every save
    rows.g000001.bin           raw C-order bytes of array "rows" (dtype and shape in metadata)
    rows.g000004.delta         rows written since: the bytes of the listed row ranges, in order
    lengths.g000004.bin        ...

``metadata.json`` holds ``format`` (:data:`FORMAT_NAME`), ``format_version``
(:data:`FORMAT_VERSION`), ``written_by`` and ``readable_since`` (xreplay
versions), ``kind``, ``generation`` (one more per save), ``lineage`` (a random
id shared by the saves of one buffer's history), the adapter's ``structure``,
``state`` and ``ring``, and ``arrays``: per array its numpy ``dtype`` string,
``shape``, base ``file`` with ``nbytes`` and ``crc32``, and ``deltas`` (each a
``file``, ``nbytes``, ``crc32`` and ``ranges`` of leading-dimension rows).
A ``live`` array is the file of a :class:`~xreplay.storage.MemmapStorage`,
written in place; it has no checksum.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from xreplay.errors import (
    CheckpointCorruptError,
    CheckpointFileMissingError,
    CheckpointVersionError,
    NotACheckpointError,
)
from xreplay.persistence.streams import fsync_dir

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA",
    "READABLE_SINCE",
    "array_file",
    "is_checkpoint_file",
    "is_live_file",
    "read_metadata",
    "write_metadata",
]

FORMAT_NAME = "xreplay-checkpoint"
FORMAT_VERSION = 1
"""The newest format version this xreplay writes and reads."""

READABLE_SINCE = {1: "0.1.0"}
"""Format version -> first xreplay version that reads it."""

METADATA = "metadata.json"
_FILE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+\.g\d{6}\.(bin|delta)$")
_LIVE_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+\.live-\d{6}\.bin$")


def array_file(name: str, generation: int, delta: bool = False) -> str:
    """Return the file name of array ``name`` written by save number ``generation``."""
    safe = re.sub(r"[^A-Za-z0-9_\-]", "_", name)
    return f"{safe}.g{generation:06d}.{'delta' if delta else 'bin'}"


def is_checkpoint_file(name: str) -> bool:
    """Return whether ``name`` looks like an array file this module writes."""
    return bool(_FILE_PATTERN.match(name))


def is_live_file(name: str) -> bool:
    """Return whether ``name`` looks like a MemmapStorage rows file (written in place, never by a save)."""
    return bool(_LIVE_PATTERN.match(name))


def _xreplay_version() -> str:
    """Return the running xreplay version."""
    from xreplay import __version__

    return __version__


def read_metadata(path: Path) -> dict[str, Any]:
    """Return the parsed, version-checked ``metadata.json`` of the checkpoint at ``path``.

    Raises:
        CheckpointFileMissingError: ``path`` does not exist.
        NotACheckpointError: ``path`` is not a directory holding an xreplay ``metadata.json``.
        CheckpointCorruptError: ``metadata.json`` is not valid JSON.
        CheckpointVersionError: The checkpoint's format is newer than this xreplay reads.
    """
    if not path.exists():
        raise CheckpointFileMissingError(f"no checkpoint at {path}: the path does not exist", path)
    file = path / METADATA
    if not path.is_dir() or not file.is_file():
        raise NotACheckpointError(f"{path} is not an xreplay checkpoint: it has no {METADATA}", path)
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorruptError(
            f"checkpoint file {file} is not valid JSON ({exc}); it is corrupted", file
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise NotACheckpointError(f"{path} is not an xreplay checkpoint: {file} lacks format {FORMAT_NAME!r}", path)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointVersionError(
            f"{path} was written by xreplay {meta.get('written_by', '?')} in checkpoint format version {version}; "
            f"this xreplay {_xreplay_version()} reads versions up to {FORMAT_VERSION}: "
            f"upgrade to xreplay >= {meta.get('readable_since', '?')} to load it",
            path,
        )
    return meta


def new_metadata(kind: str, generation: int, lineage: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Return the header of a metadata document for an adapter's ``meta``."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "written_by": _xreplay_version(),
        "readable_since": READABLE_SINCE[FORMAT_VERSION],
        "kind": kind,
        "generation": generation,
        "lineage": lineage,
        "structure": meta.get("structure", {}),
        "state": meta.get("state", {}),
        "ring": meta.get("ring"),
        "arrays": {},
    }


def write_metadata(directory: Path, document: dict[str, Any], fsync: bool = True) -> None:
    """Atomically replace ``directory/metadata.json`` with ``document`` (temp file, fsync, rename, fsync dir)."""
    temp = directory / f".{METADATA}.tmp-{os.getpid()}"
    data = json.dumps(document, indent=1, sort_keys=False).encode("utf-8")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, directory / METADATA)
    if fsync:
        fsync_dir(directory)
