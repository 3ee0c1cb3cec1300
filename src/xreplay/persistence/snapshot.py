r"""A single-file snapshot: magic, JSON header (format version, metadata, checksum), pickled payload.

Layout::

    b"XREPLAY\\n"                 8 bytes, magic
    header length                8 bytes, unsigned little endian
    header                       UTF-8 JSON: {"format_version", "kind", "metadata",
                                              "payload_bytes", "payload_sha256"}
    payload                      pickle of the state object

Writing goes to a temporary file in the destination's directory, is flushed
and fsynced, then ``os.replace``-d over the destination, so a reader sees
either the old file or the complete new one. Reading checks the magic, the
header, the format version, the payload length and its SHA-256 before
unpickling, so a corrupt or truncated file raises ``CheckpointError`` (naming
the file) and nothing is loaded.

Trust: the payload is a pickle, and unpickling runs code chosen by whoever
wrote the file. Only load snapshots you wrote or trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import tempfile
from typing import Any

from xreplay.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "read_snapshot", "write_snapshot"]

FORMAT_VERSION = 1
_MAGIC = b"XREPLAY\n"
_LENGTH = struct.Struct("<Q")


def write_snapshot(path: str | os.PathLike, kind: str, state: Any, metadata: dict | None = None) -> None:
    """Atomically write ``state`` (pickled) with a JSON header to ``path``.

    Args:
        path: Destination file; missing parent directories are created.
        kind: What the state belongs to (checked on read), e.g. ``"ding.DequeBuffer"``.
        state: Any picklable object.
        metadata: JSON-serialisable facts stored in the header (counts, capacity, ...).

    """
    path = os.fspath(path)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    header = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "metadata": metadata or {},
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        }
    ).encode()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".xreplay-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + _LENGTH.pack(len(header)) + header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_snapshot(path: str | os.PathLike, kind: str) -> tuple[Any, dict]:
    """Read and verify a snapshot written by :func:`write_snapshot`.

    Args:
        path: The snapshot file.
        kind: The kind the caller expects.

    Returns:
        ``(state, metadata)``.

    Raises:
        CheckpointError: the file is missing, not a snapshot, of another format
            version or kind, truncated, or fails its checksum.

    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read snapshot {path!r}: {e}") from e
    header = _parse_header(path, blob)
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"snapshot {path!r} has format version {header.get('format_version')!r}; "
            f"this xreplay reads version {FORMAT_VERSION}"
        )
    if header.get("kind") != kind:
        raise CheckpointError(f"snapshot {path!r} holds a {header.get('kind')!r}, expected a {kind!r}")
    start = len(_MAGIC) + _LENGTH.size + _LENGTH.unpack_from(blob, len(_MAGIC))[0]
    payload = blob[start:]
    if len(payload) != header.get("payload_bytes"):
        raise CheckpointError(
            f"snapshot {path!r} is truncated or padded: payload has {len(payload)} bytes, "
            f"header says {header.get('payload_bytes')}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise CheckpointError(f"snapshot {path!r} is corrupt: payload checksum mismatch")
    try:
        state = pickle.loads(payload)
    except Exception as e:  # a checksum-valid payload that still fails: written by an incompatible version
        raise CheckpointError(f"snapshot {path!r} payload cannot be unpickled: {e!r}") from e
    return state, header.get("metadata", {})


def _parse_header(path: str, blob: bytes) -> dict:
    """Return the JSON header of ``blob`` or raise ``CheckpointError``."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _LENGTH.size:
        raise CheckpointError(f"{path!r} is not an xreplay snapshot (bad magic or truncated header)")
    (length,) = _LENGTH.unpack_from(blob, len(_MAGIC))
    raw = blob[len(_MAGIC) + _LENGTH.size : len(_MAGIC) + _LENGTH.size + length]
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"snapshot {path!r} has a corrupt or truncated header: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"snapshot {path!r} header is not a JSON object")
    return header
