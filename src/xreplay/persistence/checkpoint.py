"""Save checkpoints: atomic, streamed, checksummed, incremental, one saver per path, consistent under threads.

Every save commits by atomically replacing ``metadata.json``, the one file that
is ever overwritten; array files are created once under a new generation name
and never modified, so a crash at any point leaves the previous checkpoint
complete. A first save goes to a temporary directory beside the target that is
renamed into place once complete. Files of the previous checkpoint are removed
only after the new ``metadata.json`` is committed, read back and checked.

A save holds the path's saver lock (:mod:`xreplay.persistence.locks`), so a
second saver of the same path waits or fails, and the saved object's mutation
lock while it copies, so other threads' writes wait and the checkpoint is one
consistent state whose checksums cover exactly the bytes written.

Saving the same buffer again to the same path (in the same process, or after
loading it from there) appends one delta file per ring array holding only the
slots written since, when that is cheaper; deltas are compacted into a full
save once they exceed half of the base file (or :data:`MAX_DELTAS` files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import CheckpointError, CheckpointWriteError, NotACheckpointError
from xreplay.persistence.format import (
    FORMAT_VERSION,
    METADATA,
    array_file,
    is_checkpoint_file,
    is_live_file,
    new_metadata,
    read_metadata,
    write_metadata,
)
from xreplay.persistence.history import recorded, remember
from xreplay.persistence.kinds import adapter_for
from xreplay.persistence.live import LiveRows, LiveWrite, crc_array_name, write_live
from xreplay.persistence.loading import load, verify
from xreplay.persistence.locks import DEFAULT_LOCK_TIMEOUT, saver_lock
from xreplay.persistence.npy_files import array_header, file_headers, record_dtypes
from xreplay.persistence.schema import check_document, contained_file
from xreplay.persistence.streams import as_numpy, check_size, fsync_dir, fsync_file, write_chunks

__all__ = ["MAX_DELTAS", "SaveReport", "load", "save", "verify"]

MAX_DELTAS = 32
"""Delta files per array before a save compacts them into a new base file."""
_DELTA_SHARE = 0.5  # deltas may total at most this share of the base file's bytes


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
        or before.get("clears", 0) != ring.get("clears", 0)  # the buffer was cleared since
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
    record = recorded(obj, path)
    if old is None or ring is None or record is None:
        return None
    lineage, generation, before = record
    if old.get("format_version") != FORMAT_VERSION:
        return None  # an older format's base files are rewritten in this one (a save upgrades the checkpoint)
    if old.get("lineage") != lineage or old.get("generation") != generation or old.get("kind") != meta["kind"]:
        return None  # another writer saved here since
    if old.get("structure") != meta.get("structure"):
        return None
    ranges = _changed_ranges(before, ring)
    return None if ranges is None else {"ranges": ranges, "arrays": list(ring["arrays"])}


@dataclasses.dataclass
class _Pending:
    """One save in progress: the new metadata document, what to write, and what was written."""

    document: dict[str, Any]
    arrays: dict[str, Any]
    live: dict[str, LiveRows]
    fsync: bool
    records: dict[str, np.dtype] = dataclasses.field(default_factory=dict)  # arrays stored as records (.npy)
    to_sync: list[Path] = dataclasses.field(default_factory=list)
    live_writes: list[LiveWrite] = dataclasses.field(default_factory=list)

    def write(
        self, file: Path, array: Any, ranges: list[tuple[int, int]] | None, header: bytes = b""
    ) -> tuple[int, int]:
        """Write one array file after ``header`` (its fsync deferred to :meth:`sync`); return (nbytes, crc32)."""
        done = write_chunks(file, array, ranges, self.fsync, defer_fsync=True, header=header)
        self.to_sync.append(file)
        return done

    def sync(self, directory: Path) -> None:
        """Flush every written file to disk (their writeback started while they were written)."""
        if self.fsync:
            for file in self.to_sync:
                fsync_file(file)


def _write_delta(
    pending: _Pending, directory: Path, name: str, array: Any, old: dict[str, Any], ranges: list, gen: int
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
    nbytes, crc = pending.write(directory / file, array, ranges)
    delta = {"file": file, "nbytes": nbytes, "crc32": crc, "ranges": [list(r) for r in ranges]}
    return {**old, "deltas": [*old["deltas"], delta]}, nbytes


def _write_one(
    pending: _Pending, directory: Path, name: str, array: Any, old: dict[str, Any] | None, ranges: list | None
) -> tuple[dict[str, Any], int, bool]:
    """Write one array as a delta against ``old`` when ``ranges`` allow, else in full; return (entry, bytes, delta)."""
    gen = pending.document["generation"]
    if old is not None and ranges is not None:
        done = _write_delta(pending, directory, name, array, old, ranges, gen)
        if done is not None:
            return done[0], done[1], True
    file = array_file(name, gen)
    header = _array_header(array)
    nbytes, crc = pending.write(directory / file, array, None, array_header(name, header, pending.records))
    return {**header, "file": file, "nbytes": nbytes, "crc32": crc, "deltas": []}, nbytes, False


def _write_arrays(
    directory: Path, pending: _Pending, old: dict[str, Any] | None, plan: dict[str, Any] | None
) -> tuple[dict[str, Any], int, bool]:
    """Write every array (delta, full or live flush); return (entries, bytes written, every ring array a delta)."""
    entries: dict[str, Any] = {}
    written, incremental = 0, plan is not None
    arrays = dict(pending.arrays)
    ring = set(plan["arrays"]) if plan is not None else set()
    old_arrays = old["arrays"] if old is not None else {}
    for name, live in pending.live.items():
        if os.path.realpath(live.file.parent) != os.path.realpath(directory):
            continue  # saved elsewhere: the rows are copied like any array
        ranges = plan["ranges"] if plan is not None and name in ring else None
        delta_file = array_file(name, pending.document["generation"], delta=True)
        flush = write_live(directory, name, live, old_arrays.get(name), ranges, delta_file, pending.fsync)
        pending.live_writes.append(flush)
        entries[name] = flush.entry
        written += flush.bytes_written
        incremental = incremental and ranges is not None
        arrays.pop(name)
        arrays[crc_array_name(name)] = live.row_crc  # written below, in the ring when the rows are
        if name in ring:
            ring.add(crc_array_name(name))
    for name, array in arrays.items():
        previous = old_arrays.get(name) if name in ring else None
        entry, nbytes, delta = _write_one(
            pending, directory, name, array, previous, plan["ranges"] if plan is not None and name in ring else None
        )
        entries[name] = entry
        written += nbytes
        incremental = incremental and (delta or name not in ring)
    return entries, written, incremental


def _referenced(document: dict[str, Any]) -> set[str]:
    """Return the array and delta files a metadata document lists (live rows files are never removed here)."""
    files = set()
    for entry in document.get("arrays", {}).values():
        if not entry.get("live"):
            files.add(entry["file"])
        files.update(d["file"] for d in entry.get("deltas", []))
    return files


def _remove_unreferenced(directory: Path, document: dict[str, Any] | None) -> None:
    """Delete array files and temp files that the committed ``document`` does not list (left by failed saves).

    Only called under the path's saver lock, so no other save is writing files there.
    """
    keep = _referenced(document) if document is not None else set()
    for entry in directory.iterdir():
        stale_temp = entry.name.startswith(f".{METADATA}.tmp-")
        if (is_checkpoint_file(entry.name) and entry.name not in keep) or stale_temp:
            entry.unlink(missing_ok=True)


def _existing(path: Path) -> dict[str, Any] | None:
    """Return the checked metadata of the checkpoint at ``path``; None when absent or an empty directory.

    Raises:
        NotACheckpointError: ``path`` holds something else, which a save will not overwrite.
    """
    if not path.exists():
        return None
    if path.is_dir() and all(is_live_file(entry.name) for entry in path.iterdir()):
        return None  # empty, or a new MemmapStorage's rows file waiting for its first metadata
    try:
        document = read_metadata(path)
    except NotACheckpointError:
        raise NotACheckpointError(
            f"will not save to {path}: it exists and is not an xreplay checkpoint; choose another path", path
        ) from None
    check_document(path, document)  # its file names are safe to delete by
    return document


def _check_committed(directory: Path, document: dict[str, Any]) -> None:
    """Read the committed metadata back and check it names this save and that every file it lists is whole.

    Raises:
        CheckpointError: What was committed is not what this save wrote.
    """
    found = read_metadata(directory)
    check_document(directory, found)
    if found.get("lineage") != document["lineage"] or found.get("generation") != document["generation"]:
        raise CheckpointWriteError(f"metadata.json in {directory} changed while this save committed", directory)
    headers = file_headers(found)
    for name, entry in found["arrays"].items():
        if not entry.get("live"):
            check_size(contained_file(directory, entry["file"]), int(entry["nbytes"]), len(headers[name]))
        for delta in entry.get("deltas", []):
            check_size(contained_file(directory, delta["file"]), int(delta["nbytes"]))


def _commit(directory: Path, pending: _Pending, old: dict | None, plan: dict | None) -> tuple[int, bool]:
    """Write the arrays into ``directory``, commit and check the document; on failure restore the old state."""
    document = pending.document
    committed = False
    try:
        entries, written, incremental = _write_arrays(directory, pending, old, plan)
        pending.sync(directory)
        document["arrays"] = entries
        write_metadata(directory, document, pending.fsync)
        committed = True
        _check_committed(directory, document)
    except BaseException:
        if committed and old is not None:
            write_metadata(directory, old, pending.fsync)  # the previous checkpoint's files are all still there
        _remove_unreferenced(directory, old)
        raise
    for flush in pending.live_writes:
        flush.after_commit(pending.fsync)
    return written, incremental


def _save_fresh(path: Path, pending: _Pending) -> int:
    """Write a complete checkpoint in a temporary directory beside ``path``, then rename it into place."""
    for stale in path.parent.glob(f".{path.name}.xreplay-tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a save that was killed (we hold the path's lock)
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


def _mutation_lock(adapter: Any, obj: Any) -> Any:
    """Return the context manager that stops ``obj``'s writers while it is copied."""
    lock = getattr(adapter, "lock", None)
    if lock is not None:
        return lock(obj)
    found = getattr(obj, "lock", None)
    return found if hasattr(found, "__enter__") else contextlib.nullcontext()


def _save_locked(obj: Any, adapter: Any, path: Path, incremental: bool, fsync: bool) -> SaveReport:
    """Save ``obj`` while holding the path's saver lock and ``obj``'s mutation lock."""
    meta, arrays = adapter.state(obj)
    live: dict[str, LiveRows] = dict(meta.pop("live", {}))
    meta = _jsonable({**meta, "kind": adapter.kind})
    old = _existing(path)
    plan = _delta_plan(obj, path, old, meta) if incremental else None
    generation = int(old["generation"]) + 1 if old is not None else 1
    lineage = str(old["lineage"]) if plan is not None and old is not None else secrets.token_hex(8)
    pending = _Pending(new_metadata(adapter.kind, generation, lineage, meta), arrays, live, fsync)
    pending.records = record_dtypes(pending.document["structure"])
    if old is None and path.is_dir() and any(path.iterdir()):
        written, was_delta = _commit(path, pending, None, None)  # beside live files: commit in place
    elif old is None:
        written, was_delta = _save_fresh(path, pending), False
    else:
        _remove_unreferenced(path, old)
        written, was_delta = _commit(path, pending, old, plan)
        _remove_unreferenced(path, pending.document)
    remember(obj, path, pending.document)
    return SaveReport(path, was_delta, generation, written)


def save(
    obj: Any,
    path: str | os.PathLike[str],
    incremental: bool = True,
    fsync: bool = True,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> SaveReport:
    """Save ``obj`` (a buffer) as a checkpoint directory at ``path``, atomically.

    Args:
        obj: An object with a checkpoint adapter (see :mod:`xreplay.persistence.kinds`).
        path: The checkpoint directory; an existing checkpoint there is replaced only once the
            new one is committed and checked.
        incremental: Write only the slots written since this object's last save to (or load
            from) ``path`` when that is cheaper.
        fsync: Flush files and directories to disk before committing (durable across power loss;
            without it a save survives a crash of the process but not of the machine).
        lock_timeout: Seconds to wait while another thread or process saves to ``path``.

    Raises:
        NotACheckpointError: ``path`` exists and is something else.
        CheckpointLockedError: Another saver held ``path`` for ``lock_timeout`` seconds (named in the message).
        CheckpointWriteError: Writing failed (e.g. no space left); the previous checkpoint is intact.
    """
    path = Path(path)
    adapter = adapter_for(obj)
    try:
        with saver_lock(path, lock_timeout), _mutation_lock(adapter, obj):
            return _save_locked(obj, adapter, path, incremental, fsync)
    except OSError as exc:
        if isinstance(exc, CheckpointError):
            raise
        error = CheckpointWriteError(f"saving to {path} failed: {exc}; the previous checkpoint is unchanged", path)
        error.errno = exc.errno
        raise error from exc
