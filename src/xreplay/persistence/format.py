"""The on-disk format: ``metadata.json`` plus one ``.npy`` file per array (and append-only delta files).

A checkpoint is a directory::

    metadata.json              the only file ever replaced; the commit point of every save
    rows.g000001.npy           array "rows": a .npy header padded to 4096 bytes, then its raw C-order bytes
    rows.g000004.delta         rows written since: the bytes of the listed row ranges, in order
    lengths.g000004.npy        ...

``metadata.json`` holds ``format`` (:data:`FORMAT_NAME`), ``format_version``
(:data:`FORMAT_VERSION`), ``written_by`` and ``readable_since`` (xreplay
versions), ``kind``, ``generation`` (one more per save), ``lineage`` (a random
id shared by the saves of one buffer's history), the adapter's ``structure``,
``state`` and ``ring``, ``arrays``: per array its numpy ``dtype`` string,
``shape``, base ``file`` with ``nbytes`` and ``crc32``, and ``deltas`` (each a
``file``, ``nbytes``, ``crc32`` and ``ranges`` of leading-dimension rows), and
``checksum``: the CRC-32 of the document itself (its other keys, serialized
canonically), so a damaged ``metadata.json`` never loads as another state.
A ``live`` array is the rows file of a :class:`~xreplay.storage.MemmapStorage`
(``rows.live-000001.npy``), written in place at each flush; its ``row_crc32``
names an array holding one CRC-32 per row, and its ``deltas`` are redo records
of the last flush.

Every array file is a standard ``.npy`` file (``numpy.load(file, mmap_mode="r")``
opens it): see :mod:`xreplay.persistence.npy_files` for its header, which states
the metadata's dtype and shape (the ``rows`` of episode storage: records of the
row layout, one field per scheme field). ``nbytes`` and ``crc32`` cover the data
after the header. Delta files are xreplay's own: an array with deltas reads
through numpy as of its base file; a full save (``incremental=False``) or a
compaction leaves base files only.

Every file name is a plain name of one of the forms above (see
:mod:`xreplay.persistence.schema`); anything else is refused before a file
is opened. Older versions are still read: version 2 wrote raw ``.bin`` files
without headers (a memmap storage created then keeps its ``rows.live-N.bin``),
and version 1 (xreplay 0.1.0) also had no document checksum and no row
checksums.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from xreplay.errors import (
    CheckpointCorruptError,
    CheckpointFileMissingError,
    CheckpointVersionError,
    NotACheckpointError,
)
from xreplay.persistence.schema import contained_file
from xreplay.persistence.streams import fsync_dir

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA",
    "READABLE_SINCE",
    "array_file",
    "document_crc",
    "is_checkpoint_file",
    "is_live_file",
    "read_metadata",
    "write_metadata",
]

FORMAT_NAME = "xreplay-checkpoint"
FORMAT_VERSION = 3
"""The newest format version this xreplay writes and reads."""

READABLE_SINCE = {1: "0.1.0", 2: "0.1.0", 3: "0.1.0"}
"""Format version -> first xreplay version that reads it."""

METADATA = "metadata.json"
MAX_METADATA_BYTES = 256 * 2**20
"""Larger metadata files are refused before they are read."""
_FILE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+\.g\d{6}\.(npy|bin|delta)$")  # .bin: formats 1 and 2
_LIVE_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+\.live-\d{6}\.(npy|bin)$")


def array_file(name: str, generation: int, delta: bool = False) -> str:
    """Return the file name of array ``name`` written by save number ``generation``."""
    safe = re.sub(r"[^A-Za-z0-9_\-]", "_", name)
    return f"{safe}.g{generation:06d}.{'delta' if delta else 'npy'}"


def is_checkpoint_file(name: str) -> bool:
    """Return whether ``name`` looks like an array file this module writes."""
    return bool(_FILE_PATTERN.match(name))


def is_live_file(name: str) -> bool:
    """Return whether ``name`` looks like a MemmapStorage rows file (written in place, never by a save)."""
    return bool(_LIVE_PATTERN.match(name))


def _xreplay_version() -> str:
    """Return the running xreplay version."""
    from xreplay.version import __version__

    return __version__


def document_crc(document: dict[str, Any]) -> int:
    """Return the CRC-32 of ``document`` without its ``checksum`` key, serialized canonically."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


def _parse(file: Path) -> Any:
    """Return the JSON value in ``file``, refusing oversized, undecodable or too deeply nested files."""
    size = file.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise CheckpointCorruptError(
            f"checkpoint file {file} holds {size} bytes, more than any metadata.json xreplay writes "
            f"({MAX_METADATA_BYTES}); it is corrupted or crafted",
            file,
        )
    try:
        return json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointCorruptError(
            f"checkpoint file {file} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]}); it is corrupted: "
            f"restore it from a copy or load another checkpoint",
            file,
        ) from None


def read_metadata(path: Path) -> dict[str, Any]:
    """Return the parsed, checksum- and version-checked ``metadata.json`` of the checkpoint at ``path``.

    Raises:
        CheckpointFileMissingError: ``path`` does not exist.
        NotACheckpointError: ``path`` is not a directory holding an xreplay ``metadata.json``.
        CheckpointCorruptError: ``metadata.json`` is not valid JSON or fails its checksum.
        CheckpointVersionError: The checkpoint's format is newer than this xreplay reads.
    """
    if not path.exists():
        raise CheckpointFileMissingError(f"no checkpoint at {path}: the path does not exist", path)
    file = path / METADATA
    if not path.is_dir() or not (file.is_file() or file.is_symlink()):
        raise NotACheckpointError(f"{path} is not an xreplay checkpoint: it has no {METADATA}", path)
    meta = _parse(contained_file(path, METADATA))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise NotACheckpointError(f"{path} is not an xreplay checkpoint: {file} lacks format {FORMAT_NAME!r}", path)
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointVersionError(
            f"{path} was written by xreplay {str(meta.get('written_by', '?'))[:40]} in checkpoint format version "
            f"{str(version)[:40]}; this xreplay {_xreplay_version()} reads versions 1 to {FORMAT_VERSION}: "
            f"upgrade to xreplay >= {str(meta.get('readable_since', '?'))[:40]} to load it",
            path,
        )
    if version >= 2:
        stored = meta.get("checksum")
        expected = document_crc(meta)
        if not isinstance(stored, dict) or stored.get("crc32") != expected:
            raise CheckpointCorruptError(
                f"checkpoint file {file} fails its checksum (metadata.json says {str(stored)[:60]}, its content "
                f"gives {{'crc32': {expected}}}): it is corrupted; restore it from a copy or load another checkpoint",
                file,
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
    """Atomically replace ``directory/metadata.json`` with ``document`` (temp file, fsync, rename, fsync dir).

    ``document`` gains its ``checksum`` key.
    """
    temp = directory / f".{METADATA}.tmp-{os.getpid()}"
    document["checksum"] = {"crc32": document_crc(document)}
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
