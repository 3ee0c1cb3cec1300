"""Save and load checkpoints: atomic, streamed, checksummed, incremental.

Every save commits by atomically replacing ``metadata.json``, the one file that
is ever overwritten; array files are created once under a new generation name
and never modified, so a crash at any point leaves the previous checkpoint
complete. A first save goes to a temporary directory beside the target that is
renamed into place once complete.

Saving the same buffer again to the same path (in the same process, or after
loading it from there) appends one delta file per ring array holding only the
slots written since, when that is cheaper; deltas are compacted into a full
save once they exceed half of the base file (or :data:`MAX_DELTAS` files).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import CheckpointError, CheckpointMismatchError, CheckpointWriteError, NotACheckpointError
from xreplay.persistence.format import (
    METADATA,
    array_file,
    is_checkpoint_file,
    is_live_file,
    new_metadata,
    read_metadata,
    write_metadata,
)
from xreplay.persistence.kinds import adapter_for, adapter_of_kind
from xreplay.persistence.streams import as_numpy, check_size, fsync_dir, read_into, verify_file, write_chunks

__all__ = ["MAX_DELTAS", "SaveReport", "load", "save", "verify"]

MAX_DELTAS = 32
"""Delta files per array before a save compacts them into a new base file."""
_DELTA_SHARE = 0.5  # deltas may total at most this share of the base file's bytes

# Per object, per resolved path: (lineage, generation, ring state) of the last save or load.
_HISTORY: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, int, dict[str, Any]]]] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class SaveReport:
    """What a save wrote.

    Attributes:
        path: The checkpoint directory.
        incremental: Whether only slots written since the last save were written.
        generation: The save's number at this path (1 for the first).
        bytes_written: Bytes of array data written (metadata excluded).
    """

    path: Path
    incremental: bool
    generation: int
    bytes_written: int


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    """Return ``meta`` as JSON reads it back (tuples become lists), failing early on what JSON cannot hold."""
    try:
        return json.loads(json.dumps(meta))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata is not JSON-able: {exc}") from None


def _array_header(array: Any) -> dict[str, Any]:
    """Return the dtype string and shape of an array or tensor."""
    dtype = np.dtype(as_numpy(array[:0] if array.ndim else array).dtype)
    return {"dtype": dtype.str, "shape": [int(d) for d in array.shape]}


def _changed_ranges(before: dict[str, Any], ring: dict[str, Any]) -> list[tuple[int, int]] | None:
    """Return the slot ranges written between two ring states, None when unknown or everything."""
    if (
        before.get("capacity") != ring["capacity"]
        or before.get("arrays") != ring["arrays"]
        or before.get("untracked") != ring.get("untracked")  # writes the ring cursor did not see
    ):
        return None
    cap, start, n = int(ring["capacity"]), int(before["cursor"]), int(ring["writes"]) - int(before["writes"])
    if n < 0 or n >= cap or cap == 0 or (start + n) % cap != int(ring["cursor"]):
        return None  # went backwards, wrapped fully, or the cursor was moved by hand
    end = start + n  # slots [start, end) modulo the capacity
    return [(start, min(end, cap))] + ([(0, end - cap)] if end > cap else []) if n else []


def _delta_plan(obj: Any, path: Path, old: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """Return ``{"ranges": [...], "arrays": [...]}`` when a delta save is valid, else None."""
    ring = meta.get("ring")
    record = _HISTORY.get(obj, {}).get(str(path.resolve())) if _weakrefable(obj) else None
    if old is None or ring is None or record is None:
        return None
    lineage, generation, before = record
    if old.get("lineage") != lineage or old.get("generation") != generation or old.get("kind") != meta["kind"]:
        return None  # another writer saved here since
    if old.get("structure") != meta.get("structure"):
        return None
    ranges = _changed_ranges(before, ring)
    return None if ranges is None else {"ranges": ranges, "arrays": list(ring["arrays"])}


def _weakrefable(obj: Any) -> bool:
    """Return whether ``obj`` can key the save history."""
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _remember(obj: Any, path: Path, document: dict[str, Any]) -> None:
    """Record the checkpoint ``obj`` now matches, so the next save to ``path`` can be incremental."""
    if document.get("ring") is not None and _weakrefable(obj):
        entry = (str(document["lineage"]), int(document["generation"]), dict(document["ring"]))
        _HISTORY.setdefault(obj, {})[str(path.resolve())] = entry


def _write_delta(
    directory: Path, name: str, array: Any, old: dict[str, Any], ranges: list[tuple[int, int]], gen: int, fsync: bool
) -> tuple[dict[str, Any], int] | None:
    """Append a delta file of ``ranges`` to ``old``'s entry; None when a full file is due instead."""
    header = _array_header(array)
    if old.get("live") or {k: old.get(k) for k in header} != header or not header["shape"]:
        return None
    row_bytes = old["nbytes"] // header["shape"][0] if header["shape"][0] else 0
    new_bytes = sum(b - a for a, b in ranges) * row_bytes
    total = sum(d["nbytes"] for d in old["deltas"]) + new_bytes
    if total > _DELTA_SHARE * old["nbytes"] or len(old["deltas"]) >= MAX_DELTAS:
        return None  # compact: write a new base file
    if not ranges:
        return dict(old), 0
    file = array_file(name, gen, delta=True)
    nbytes, crc = write_chunks(directory / file, array, ranges, fsync)
    delta = {"file": file, "nbytes": nbytes, "crc32": crc, "ranges": [list(r) for r in ranges]}
    return {**old, "deltas": [*old["deltas"], delta]}, nbytes


def _write_one(
    directory: Path, name: str, array: Any, old: dict[str, Any] | None, ranges: list | None, gen: int, fsync: bool
) -> tuple[dict[str, Any], int, bool]:
    """Write one array as a delta against ``old`` when ``ranges`` allow, else in full; return (entry, bytes, delta)."""
    if old is not None and ranges is not None:
        done = _write_delta(directory, name, array, old, ranges, gen, fsync)
        if done is not None:
            return done[0], done[1], True
    file = array_file(name, gen)
    nbytes, crc = write_chunks(directory / file, array, None, fsync)
    return {**_array_header(array), "file": file, "nbytes": nbytes, "crc32": crc, "deltas": []}, nbytes, False


def _write_arrays(
    directory: Path,
    arrays: dict[str, Any],
    live: dict[str, str],
    old: dict[str, Any] | None,
    plan: dict[str, Any] | None,
    gen: int,
    fsync: bool,
) -> tuple[dict[str, Any], int, bool]:
    """Write every array (delta or full); return (entries, bytes written, whether every ring array was a delta)."""
    entries: dict[str, Any] = {}
    written, incremental = 0, plan is not None
    for name, array in arrays.items():
        if name in live and Path(live[name]).parent.resolve() == directory.resolve():
            entries[name] = {**_array_header(array), "file": Path(live[name]).name, "live": True}
            continue  # the storage's own file, flushed by its adapter
        in_ring = plan is not None and old is not None and name in plan["arrays"]
        previous = old["arrays"].get(name) if in_ring and old is not None else None
        entry, nbytes, delta = _write_one(
            directory, name, array, previous, plan["ranges"] if in_ring and plan else None, gen, fsync
        )
        entries[name] = entry
        written += nbytes
        incremental = incremental and (delta or not in_ring)
    return entries, written, incremental


def _referenced(document: dict[str, Any]) -> set[str]:
    """Return the array files a metadata document lists."""
    files = set()
    for entry in document.get("arrays", {}).values():
        if entry.get("live"):
            continue  # a storage's own file: never removed by a save
        files.add(entry["file"])
        files.update(d["file"] for d in entry.get("deltas", []))
    return files


def _remove_unreferenced(directory: Path, document: dict[str, Any] | None) -> None:
    """Delete array files and temp files that ``document`` does not list (left by failed or older saves)."""
    keep = _referenced(document) if document is not None else set()
    for entry in directory.iterdir():
        stale_temp = entry.name.startswith(f".{METADATA}.tmp-")
        if (is_checkpoint_file(entry.name) and entry.name not in keep) or stale_temp:
            entry.unlink(missing_ok=True)


def _existing(path: Path) -> dict[str, Any] | None:
    """Return the metadata of the checkpoint at ``path``; None when the path is absent or an empty directory.

    Raises:
        NotACheckpointError: ``path`` holds something else, which a save will not overwrite.
    """
    if not path.exists():
        return None
    if path.is_dir() and all(is_live_file(entry.name) for entry in path.iterdir()):
        return None  # empty, or a new MemmapStorage's rows file waiting for its first metadata
    try:
        return read_metadata(path)
    except NotACheckpointError:
        raise NotACheckpointError(
            f"will not save to {path}: it exists and is not an xreplay checkpoint; choose another path", path
        ) from None


@dataclasses.dataclass
class _Pending:
    """One save in progress: the new metadata document and what to write."""

    document: dict[str, Any]
    arrays: dict[str, Any]
    live: dict[str, str]
    fsync: bool


def _commit(directory: Path, pending: _Pending, old: dict | None, plan: dict | None) -> tuple[int, bool]:
    """Write the arrays into ``directory`` and commit the document; on failure remove what was written."""
    document = pending.document
    try:
        entries, written, incremental = _write_arrays(
            directory, pending.arrays, pending.live, old, plan, document["generation"], pending.fsync
        )
        document["arrays"] = entries
        write_metadata(directory, document, pending.fsync)
    except BaseException:
        _remove_unreferenced(directory, old)
        raise
    return written, incremental


def _save_fresh(path: Path, pending: _Pending) -> int:
    """Write a complete checkpoint in a temporary directory beside ``path``, then rename it into place."""
    for stale in path.parent.glob(f".{path.name}.xreplay-tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a save that was killed
    temp = path.parent / f".{path.name}.xreplay-tmp-{secrets.token_hex(4)}"
    temp.mkdir()
    try:
        written, _ = _commit(temp, pending, None, None)
        os.replace(temp, path)  # also replaces an empty directory
        if pending.fsync:
            fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return written


def save(obj: Any, path: str | os.PathLike[str], incremental: bool = True, fsync: bool = True) -> SaveReport:
    """Save ``obj`` (a buffer) as a checkpoint directory at ``path``, atomically.

    Args:
        obj: An object with a checkpoint adapter (see :mod:`xreplay.persistence.kinds`).
        path: The checkpoint directory; an existing checkpoint there is replaced only once the
            new one is complete.
        incremental: Write only the slots written since this object's last save to (or load
            from) ``path`` when that is cheaper.
        fsync: Flush files and directories to disk before committing (durable across power loss;
            without it a save survives a crash of the process but not of the machine).

    Raises:
        NotACheckpointError: ``path`` exists and is something else.
        CheckpointWriteError: Writing failed (e.g. no space left); the previous checkpoint is intact.
    """
    path = Path(path)
    adapter = adapter_for(obj)
    meta, arrays = adapter.state(obj)
    live = {name: str(file) for name, file in meta.pop("live", {}).items()}
    meta = _jsonable({**meta, "kind": adapter.kind})
    old = _existing(path)
    plan = _delta_plan(obj, path, old, meta) if incremental else None
    generation = int(old["generation"]) + 1 if old is not None else 1
    lineage = str(old["lineage"]) if plan is not None and old is not None else secrets.token_hex(8)
    pending = _Pending(new_metadata(adapter.kind, generation, lineage, meta), arrays, live, fsync)
    try:
        if old is None and path.is_dir() and any(path.iterdir()):
            written, was_delta = _commit(path, pending, None, None)  # beside live files: commit in place
        elif old is None:
            written, was_delta = _save_fresh(path, pending), False
        else:
            _remove_unreferenced(path, old)
            written, was_delta = _commit(path, pending, old, plan)
            _remove_unreferenced(path, pending.document)
    except OSError as exc:
        if isinstance(exc, CheckpointError):
            raise
        error = CheckpointWriteError(f"saving to {path} failed: {exc}; the previous checkpoint is unchanged", path)
        error.errno = exc.errno
        raise error from exc
    _remember(obj, path, pending.document)
    return SaveReport(path, was_delta, generation, written)


def _load_array(directory: Path, entry: dict[str, Any], mmap: bool | str, verify: bool) -> np.ndarray:
    """Return one array: read and checked, or memory-mapped (copy-on-write, or shared for live files)."""
    dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
    file = directory / entry["file"]
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    check_size(file, nbytes)
    if mmap and nbytes:
        mode = "r+" if mmap == "shared" and entry.get("live") else "c"
        array = np.memmap(file, dtype=dtype, mode=mode, shape=shape)  # type: ignore[call-overload]
        if verify and not entry.get("live"):
            verify_file(file, nbytes, entry["crc32"])
    else:
        array = np.empty(shape, dtype)
        read_into(file, array.reshape(-1).view(np.uint8).data, entry.get("crc32"))
    flat = array.reshape(shape[0], -1).view(np.uint8) if shape and shape[0] else None
    for delta in entry.get("deltas", []):
        assert flat is not None
        targets = [flat[a:b].reshape(-1).data for a, b in delta["ranges"]]
        read_into(directory / delta["file"], targets, delta["crc32"])
    return array


def load(
    path: str | os.PathLike[str],
    mmap: bool | str = False,
    verify: bool | None = None,
    kind: str | None = None,
    **options: Any,
) -> Any:
    """Load the checkpoint at ``path`` and return the object it holds.

    Args:
        path: A checkpoint directory written by :func:`save`.
        mmap: ``False`` reads every array into memory, checking checksums. ``True`` maps the array
            files copy-on-write instead: nothing is read up front, the object can be modified, and
            its changes stay in private memory (the files are never written). ``"shared"`` maps the
            live file of a :class:`~xreplay.storage.MemmapStorage` read-write, to keep using it.
        verify: Check every file's checksum; default ``True`` without ``mmap`` (the reads compute
            it) and ``False`` with it (sizes are checked; call :func:`verify` to read and check).
        kind: Expected checkpoint kind (``"episode_buffer"``...); another kind raises.
        **options: Passed to the kind's restore (``device``, ``scheme`` to check...).

    Raises:
        CheckpointFileMissingError: ``path`` or a file it lists is missing.
        NotACheckpointError: ``path`` holds no xreplay checkpoint.
        CheckpointVersionError: It was written in a newer format.
        CheckpointMismatchError: It holds another kind than ``kind``, or another scheme.
        CheckpointCorruptError: A file is truncated or fails its checksum.
    """
    path = Path(path)
    document = read_metadata(path)
    if kind is not None and document["kind"] != kind:
        raise CheckpointMismatchError(f"{path} holds a {document['kind']!r} checkpoint, not {kind!r}", path)
    adapter = adapter_of_kind(document["kind"])
    verify = not mmap if verify is None else verify
    arrays = {name: _load_array(path, entry, mmap, verify) for name, entry in document["arrays"].items()}
    obj = adapter.restore({**document, "path": str(path)}, arrays, **options)
    _remember(obj, path, document)
    return obj


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read every file of the checkpoint at ``path`` and check its size and checksum.

    Returns:
        The checkpoint's metadata.

    Raises:
        The errors of :func:`load`.
    """
    path = Path(path)
    document = read_metadata(path)
    for entry in document["arrays"].values():
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        verify_file(path / entry["file"], nbytes, entry.get("crc32"))
        row_bytes = nbytes // shape[0] if shape and shape[0] else 0
        for delta in entry.get("deltas", []):
            size = sum(b - a for a, b in delta["ranges"]) * row_bytes
            verify_file(path / delta["file"], size, delta["crc32"])
    return document
