"""Load and verify checkpoints: every rule checked before a file is opened, every byte checked before use.

Loading a checkpoint is reading untrusted input. :func:`load` first checks
``metadata.json`` (its own checksum, then the rules of
:mod:`xreplay.persistence.schema` and of the checkpoint's kind, the memory it
needs), only then opens the files it names (plain names inside the folder),
checks their sizes and checksums (also when memory-mapping, by streaming the
file, unless ``verify=False``), and checks array values the kind depends on
before building anything. No code from the checkpoint runs: kinds that can
hold arbitrary Python objects refuse them unless ``trusted=True``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import (
    CheckpointError,
    CheckpointFileMissingError,
    CheckpointLockedError,
    CheckpointMismatchError,
    CheckpointSchemaError,
    CheckpointWriteError,
    XReplayError,
)
from xreplay.persistence.format import read_metadata
from xreplay.persistence.history import remember
from xreplay.persistence.kinds import adapter_of_kind, kind_of
from xreplay.persistence.live import read_live, recover_live
from xreplay.persistence.locks import DEFAULT_LOCK_TIMEOUT, saver_lock
from xreplay.persistence.memory import check_fits_memory
from xreplay.persistence.npy_files import check_header, file_headers
from xreplay.persistence.schema import Validator, check_document, contained_file, entry_nbytes
from xreplay.persistence.streams import check_size, read_into, verify_file

__all__ = ["load", "load_array", "verify"]

_ATTEMPTS = 3  # a save that replaces the checkpoint while it is read makes the reader start again, then lock


def _row_crc(
    path: Path, document: dict[str, Any], entry: dict[str, Any], verify: bool, headers: dict[str, bytes]
) -> np.ndarray | None:
    """Return the row checksums of a live entry (read and checked), None for format 1 entries without them."""
    name = entry.get("row_crc32")
    if name is None:
        if verify:
            raise CheckpointSchemaError(
                f"{path} was written by xreplay {document.get('written_by')} (format 1), whose memmap rows file "
                f"carries no checksum; load it with verify=False to accept it unchecked, then save it again",
                path,
                key="arrays.rows.row_crc32",
                rule="is required to verify a live rows file",
            )
        return None
    return load_array(path, document["arrays"][name], False, True, headers[name])


def load_array(directory: Path, entry: dict[str, Any], mmap: bool, verify: bool, header: bytes) -> np.ndarray:
    """Return one checked (non-live) array entry: read into memory, or memory-mapped copy-on-write.

    ``header`` is what its file holds before the data (:func:`~xreplay.persistence.npy_files.file_headers`).

    Raises:
        CheckpointPathError: The entry's file leads outside ``directory``.
        CheckpointFileMissingError: A file it names is missing.
        CheckpointCorruptError: A size, header or checksum differs (checksums are skipped only when not ``verify``).
    """
    dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
    file = contained_file(directory, entry["file"])
    nbytes, offset = entry_nbytes(entry), len(header)
    check_size(file, nbytes, offset)
    check_header(file, header)
    array: np.ndarray
    if mmap and nbytes:
        if verify:
            verify_file(file, nbytes, int(entry["crc32"]), offset)  # streamed: nothing stays in memory
        array = np.memmap(file, dtype=dtype, mode="c", shape=shape, offset=offset)  # type: ignore[call-overload]
    else:
        array = np.empty(shape, dtype)
        read_into(file, array.reshape(-1).view(np.uint8).data, int(entry["crc32"]) if verify else None, offset)
    flat = array.reshape(shape[0], -1).view(np.uint8) if shape and shape[0] else None
    for delta in entry.get("deltas", []):
        assert flat is not None  # the schema allows deltas only on arrays with rows
        targets = [flat[a:b].reshape(-1).data for a, b in delta["ranges"]]
        read_into(contained_file(directory, delta["file"]), targets, int(delta["crc32"]) if verify else None)
    return array


def _vanished(error: FileNotFoundError) -> CheckpointFileMissingError:
    """Return the typed error of a file that was removed (by a concurrent save) between its checks and its read."""
    if isinstance(error, CheckpointFileMissingError):
        return error
    return CheckpointFileMissingError(
        f"checkpoint file {error.filename} is missing (listed in metadata.json; removed while being read)",
        error.filename,
    )


def _load_arrays(
    path: Path, document: dict[str, Any], mmap: bool | str, verify: bool, locked: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return every array of a checked document, and the live ones as ``{name: (file, map, row checksums)}``.

    ``locked`` says the caller holds the path's saver lock (needed to finish a cut-short flush).
    """
    try:
        return _read_arrays(path, document, mmap, verify, locked)
    except FileNotFoundError as error:
        raise _vanished(error) from None


def _read_arrays(
    path: Path, document: dict[str, Any], mmap: bool | str, verify: bool, locked: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the arrays (see :func:`_load_arrays`)."""
    arrays: dict[str, np.ndarray] = {}
    live: dict[str, Any] = {}
    entries = document["arrays"]
    headers = file_headers(document)
    crc_names = {e["row_crc32"] for e in entries.values() if e.get("live") and e.get("row_crc32")}
    for name, entry in entries.items():
        if name in crc_names:
            continue
        if not entry.get("live"):
            arrays[name] = load_array(path, entry, bool(mmap), verify, headers[name])
            continue
        row_crc = _row_crc(path, document, entry, verify, headers)
        if mmap == "shared":
            with saver_lock(path, DEFAULT_LOCK_TIMEOUT) if not locked else contextlib.nullcontext():
                recover_live(path, entry, headers[name])  # finish a flush cut short: the file is the committed state
        rows, mapping = read_live(path, entry, row_crc, bool(mmap), verify, headers[name])
        arrays[name] = rows.reshape(tuple(entry["shape"]))
        if mmap == "shared":
            crc = row_crc if row_crc is not None else np.zeros(rows.shape[0], dtype=np.uint32)
            live[name] = {
                "file": path / entry["file"],
                "map": mapping,
                "row_crc": np.array(crc, dtype=np.uint32),
                "data_offset": len(headers[name]),
            }
    return arrays, live


def _memory_needed(document: dict[str, Any], adapter: Any, mmap: bool | str) -> int:
    """Return the bytes a load allocates: the arrays read into memory, plus what the kind copies."""
    entries = document["arrays"]
    read = 0 if mmap else sum(entry_nbytes(e) for e in entries.values())
    estimate = getattr(adapter, "memory_needed", None)
    return read + (int(estimate(document, bool(mmap))) if estimate is not None else 0)


def _checked(path: Path, kind: str | None, mmap: bool | str | None) -> tuple[dict[str, Any], Any, Validator]:
    """Return the checked metadata, its adapter and validator (nothing but metadata.json is read).

    ``mmap`` None skips the memory check (nothing is loaded).
    """
    document = read_metadata(path)
    v = check_document(path, document)
    if kind is not None and document["kind"] != kind:
        raise CheckpointMismatchError(f"{path} holds a {document['kind']!r} checkpoint, not {kind!r}", path)
    adapter = adapter_of_kind(document["kind"])
    validate = getattr(adapter, "validate", None)
    if validate is not None:
        validate(v)
    if mmap is not None:
        check_fits_memory(path, _memory_needed(document, adapter, mmap), f"its {len(document['arrays'])} arrays")
    return document, adapter, v


def _replaced(path: Path, document: dict[str, Any]) -> bool:
    """Return whether a save committed another generation at ``path`` since ``document`` was read."""
    try:
        now = read_metadata(path)
    except CheckpointError:
        return False
    return (now.get("lineage"), now.get("generation")) != (document["lineage"], document["generation"])


def _lock_if_possible(stack: contextlib.ExitStack, path: Path) -> bool:
    """Take the saver lock of ``path`` into ``stack``; False when its lock file cannot be created (read-only)."""
    try:
        stack.enter_context(saver_lock(path, DEFAULT_LOCK_TIMEOUT))
    except CheckpointLockedError:
        raise
    except CheckpointWriteError:
        return False
    return True


def _restore(adapter: Any, v: Validator, meta: dict[str, Any], arrays: dict[str, Any], options: dict) -> Any:
    """Run the kind's restore, turning any untyped failure on crafted input into a typed error."""
    try:
        return adapter.restore(meta, arrays, **options)
    except CheckpointError:
        raise
    except (XReplayError, KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise v.fail("structure", f"does not restore ({type(exc).__name__}: {exc})") from exc


def load(
    path: str | os.PathLike[str],
    mmap: bool | str = False,
    verify: bool | None = True,
    kind: str | type | None = None,
    trusted: bool = False,
    **options: Any,
) -> Any:
    """Load the checkpoint at ``path`` and return the object it holds.

    Args:
        path: A checkpoint directory written by :func:`~xreplay.persistence.save`.
        mmap: ``False`` reads every array into memory. ``True`` maps the array files copy-on-write
            instead: the object can be modified, its changes stay in private memory (the files are
            never written). ``"shared"`` also keeps using the rows file of a
            :class:`~xreplay.storage.MemmapStorage` (its flushes write it).
        verify: Check every file's checksum before use (default; with ``mmap`` the files are
            streamed through the checksum, not kept in memory). ``False`` checks only sizes and
            the metadata: a damaged array file then loads as wrong values, silently.
        kind: Expected checkpoint kind: its name (``"episode_buffer"``...) or the class registered for it
            (``EpisodeBuffer``); another kind raises.
        trusted: Allow a checkpoint holding arbitrary pickled Python objects (DI-engine records
            that are not arrays, numbers, strings, lists or dicts) to run the code unpickling
            implies. Only for checkpoints from someone you trust.
        **options: Passed to the kind's restore (``device``, ``scheme`` to check...).

    Raises:
        CheckpointFileMissingError: ``path`` or a file it lists is missing.
        NotACheckpointError: ``path`` holds no xreplay checkpoint.
        CheckpointVersionError: It was written in a newer format.
        CheckpointMismatchError: It holds another kind than ``kind``, or another scheme.
        CheckpointPathError: Its metadata names a file outside the folder (checked before opening any).
        CheckpointSchemaError: A metadata key breaks a rule (the message names the key and the rule).
        CheckpointCorruptError: A file is truncated or fails its checksum.
        CheckpointTooLargeError: It would not fit in the memory this process may allocate.
        UntrustedCheckpointError: It holds pickled objects and ``trusted`` is False.
    """
    path = Path(path)
    verify = True if verify is None else bool(verify)
    if isinstance(kind, type):
        kind = kind_of(kind)
    for attempt in range(_ATTEMPTS + 1):
        with contextlib.ExitStack() as stack:
            locked = attempt == _ATTEMPTS and _lock_if_possible(stack, path)  # last try: savers wait for it
            document, adapter, v = _checked(path, kind, mmap)
            try:
                arrays, live = _load_arrays(path, document, mmap, verify, locked)
                break
            except CheckpointFileMissingError:
                if attempt == _ATTEMPTS or not _replaced(path, document):
                    raise
                continue  # a concurrent save committed a newer checkpoint and removed this one's files
    if getattr(adapter, "may_run_code", False):
        options["trusted"] = trusted
    obj = _restore(adapter, v, {**document, "path": str(path), "live": live, "mapped": bool(mmap)}, arrays, options)
    remember(obj, path, document)
    return obj


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the checkpoint at ``path`` without loading it: metadata rules, then every file's size and checksum.

    Returns:
        The checkpoint's metadata.

    Raises:
        The errors of :func:`load` (except those of restoring the object).
    """
    path = Path(path)
    document, _adapter, _v = _checked(path, None, None)
    try:
        _verify_files(path, document)
    except FileNotFoundError as error:
        raise _vanished(error) from None
    return document


def _verify_files(path: Path, document: dict[str, Any]) -> None:
    """Check every file of a checked document (see :func:`verify`)."""
    entries = document["arrays"]
    headers = file_headers(document)
    for name, entry in entries.items():
        if entry.get("live"):
            read_live(path, entry, _row_crc(path, document, entry, True, headers), True, True, headers[name])
            continue
        file = contained_file(path, entry["file"])
        check_size(file, entry_nbytes(entry), len(headers[name]))
        check_header(file, headers[name])
        verify_file(file, entry_nbytes(entry), int(entry["crc32"]), len(headers[name]))
        shape = entry["shape"]
        row_bytes = entry_nbytes(entry) // shape[0] if shape and shape[0] else 0
        for delta in entry.get("deltas", []):
            size = sum(b - a for a, b in delta["ranges"]) * row_bytes
            verify_file(contained_file(path, delta["file"]), size, int(delta["crc32"]))
