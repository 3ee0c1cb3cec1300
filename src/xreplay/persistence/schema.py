"""Rules that a checkpoint's ``metadata.json`` must follow, checked before any file it names is opened.

A checkpoint is untrusted input. :class:`Validator` reads typed values out of
the metadata document, raising :class:`~xreplay.errors.CheckpointSchemaError`
that names the dotted key, the rule and the value found; :func:`check_document`
applies the rules every checkpoint shares (header, ring, array entries, file
names), and each kind adds its own (capacity, shapes, cursors...) through its
adapter's ``validate``. :func:`contained_file` is the one way a file named by a
checkpoint is turned into a path: a plain name inside the folder, a regular
file, no symbolic link leading out.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import (
    CheckpointError,
    CheckpointPathError,
    CheckpointSchemaError,
    XReplayError,
)

__all__ = [
    "ARRAY_FILE", "DELTA_FILE", "LIVE_FILE", "Validator", "check_document", "contained_file", "entry_nbytes",
]  # fmt: skip

ARRAY_FILE = re.compile(r"^[A-Za-z0-9_\-]{1,160}\.g\d{6}\.npy$")
DELTA_FILE = re.compile(r"^[A-Za-z0-9_\-]{1,160}\.g\d{6}\.delta$")
LIVE_FILE = re.compile(r"^[A-Za-z0-9_\-]{1,160}\.live-\d{6}\.(npy|bin)$")  # .bin: a storage created before format 3
_RAW_ARRAY_FILE = re.compile(r"^[A-Za-z0-9_\-]{1,160}\.g\d{6}\.bin$")  # formats 1 and 2: no .npy header
_RAW_LIVE_FILE = re.compile(r"^[A-Za-z0-9_\-]{1,160}\.live-\d{6}\.bin$")
_EXAMPLES = {  # what each pattern's names look like, for error messages
    ARRAY_FILE: "rows.g000001.npy", DELTA_FILE: "rows.g000002.delta", LIVE_FILE: "rows.live-000001.npy",
    _RAW_ARRAY_FILE: "rows.g000001.bin", _RAW_LIVE_FILE: "rows.live-000001.bin",
}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,160}$")  # array names; '.' separates a component prefix
_KIND = re.compile(r"^[a-z0-9_.]{1,64}$")
_DTYPE = re.compile(r"^[<>|=]?(b1|i1|i2|i4|i8|u1|u2|u4|u8|f2|f4|f8|c8|c16)$")  # numbers and bools only
_MAX_DIMS = 32
_MAX_BYTES = 2**60  # no real array is larger; keeps every size an exact int64
_MISSING = object()
_INDEX = re.compile(r"\[(\d+)\]")


def _short(value: Any) -> str:
    """Return ``repr(value)`` cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Validator:
    """Typed reads of one metadata document; every failure names the dotted key, the rule and the value.

    Example:
        >>> v = Validator("/ckpt", {"state": {"writer": {"cursor": 13}}})
        >>> try:
        ...     v.integer("state.writer.cursor", low=0, high=7)
        ... except CheckpointSchemaError as error:
        ...     print(error.key, "|", error.rule)
        state.writer.cursor | must be an integer in [0, 7]
    """

    def __init__(self, path: str | os.PathLike[str], document: Any):
        """Check values of ``document``, the parsed ``metadata.json`` of the checkpoint at ``path``."""
        self.path = Path(path)
        self.document = document
        self._dotted: dict[int, bool] = {}  # id of a visited object of the document -> whether a key has a dot

    def fail(self, key: str, rule: str, value: Any = _MISSING) -> CheckpointSchemaError:
        """Return (for the caller to raise) the error for ``key`` breaking ``rule`` with ``value``."""
        holds = "" if value is _MISSING else f"; it holds {_short(value)}"
        return CheckpointSchemaError(
            f"{self.path}/metadata.json: key {key!r} {rule}{holds}. The checkpoint is damaged "
            f"or was not written by xreplay: restore it from a copy or save it again",
            self.path,
            key=key,
            rule=rule,
        )

    def get(self, key: str, value: Any = _MISSING) -> Any:
        """Return the value at dotted ``key`` (or ``value`` when given), failing when a part is missing."""
        if value is not _MISSING:
            return value
        node, parts, i = self.document, key.split("."), 0
        while i < len(parts):
            if not isinstance(node, dict):
                raise self.fail(".".join(parts[:i]) or key, "must be a JSON object", node)
            dotted = self._dotted.get(id(node))
            if dotted is None:
                dotted = self._dotted[id(node)] = any("." in name for name in node)
            for j in range(len(parts) if dotted else i + 1, i, -1):  # longest match first: names may hold dots
                last, _, rest = parts[j - 1].partition("[")
                base = ".".join([*parts[i : j - 1], last])
                if base in node:
                    break
            else:
                raise self.fail(".".join(parts[: i + 1]), "is missing")
            node = node[base]
            for index in _INDEX.findall("[" + rest) if rest else []:
                if not isinstance(node, list) or int(index) >= len(node):
                    raise self.fail(".".join(parts[:j]), "is missing")
                node = node[int(index)]
            i = j
        return node

    def mapping(self, key: str, value: Any = _MISSING) -> dict[str, Any]:
        """Return the JSON object at ``key``."""
        found = self.get(key, value)
        if not isinstance(found, dict):
            raise self.fail(key, "must be a JSON object", found)
        return found

    def sequence(self, key: str, value: Any = _MISSING, length: int | None = None, max_length: int = 2**31) -> list:
        """Return the JSON list at ``key`` (of exactly ``length`` items when given)."""
        found = self.get(key, value)
        if not isinstance(found, list) or (length is not None and len(found) != length) or len(found) > max_length:
            rule = "must be a list" + (f" of {length} items" if length is not None else "")
            raise self.fail(key, rule, found)
        return found

    def integer(self, key: str, value: Any = _MISSING, low: int | None = None, high: int | None = None) -> int:
        """Return the integer at ``key``, within ``[low, high]`` where given (booleans are not integers)."""
        found = self.get(key, value)
        ok = isinstance(found, int) and not isinstance(found, bool)
        if ok and (low is not None and found < low or high is not None and found > high):
            ok = False
        if not ok:
            bounds = f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise self.fail(key, "must be an integer" + (bounds if low is not None or high is not None else ""), found)
        return int(found)

    def number(self, key: str, value: Any = _MISSING, low: float | None = None, high: float | None = None) -> float:
        """Return the finite number at ``key``, within ``[low, high]`` where given."""
        found = self.get(key, value)
        ok = isinstance(found, (int, float)) and not isinstance(found, bool) and bool(np.isfinite(found))
        if ok and (low is not None and found < low or high is not None and found > high):
            ok = False
        if not ok:
            bounds = f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise self.fail(key, "must be a finite number" + bounds, found)
        return float(found)

    def boolean(self, key: str, value: Any = _MISSING) -> bool:
        """Return the boolean at ``key``."""
        found = self.get(key, value)
        if not isinstance(found, bool):
            raise self.fail(key, "must be true or false", found)
        return found

    def string(
        self, key: str, value: Any = _MISSING, choices: Any = None, pattern: re.Pattern[str] | None = None
    ) -> str:
        """Return the string at ``key``, one of ``choices`` or matching ``pattern`` where given."""
        found = self.get(key, value)
        if not isinstance(found, str):
            raise self.fail(key, "must be a string", found)
        if choices is not None and found not in choices:
            raise self.fail(key, f"must be one of {sorted(choices)}", found)
        if pattern is not None and not pattern.match(found):
            raise self.fail(key, f"must match {pattern.pattern}", found)
        return found

    def optional(self, key: str) -> Any:
        """Return the value at ``key``, None when the last part is absent (its parents must exist)."""
        parent, _, last = key.rpartition(".")
        node = self.mapping(parent) if parent else self.document
        return node.get(last)

    def shape(self, key: str, value: Any = _MISSING) -> tuple[int, ...]:
        """Return the array shape (a list of non-negative integers) at ``key``."""
        found = self.sequence(key, value, max_length=_MAX_DIMS)
        return tuple(self.integer(f"{key}[{i}]", d, low=0, high=_MAX_BYTES) for i, d in enumerate(found))

    def array_entry(self, name: str) -> dict[str, Any]:
        """Return the entry of array ``name``, failing when the checkpoint lists no such array."""
        return self.mapping(f"arrays.{name}", self.mapping("arrays").get(name))

    def array_shape(self, name: str, shape: tuple[int, ...], dtype: str | tuple[str, ...] | None = None) -> None:
        """Check that array ``name`` exists with exactly ``shape`` (and one of the numpy ``dtype`` when given)."""
        entry = self.array_entry(name)
        found = tuple(entry["shape"])
        if found != tuple(shape):
            raise self.fail(f"arrays.{name}.shape", f"must be {list(shape)} (from the structure)", list(found))
        allowed = (dtype,) if isinstance(dtype, str) else dtype
        if allowed is not None and np.dtype(entry["dtype"]) not in [np.dtype(d) for d in allowed]:
            raise self.fail(
                f"arrays.{name}.dtype", f"must be one of {[np.dtype(d).str for d in allowed]}", entry["dtype"]
            )

    @contextlib.contextmanager
    def restoring(self, key: str) -> Iterator[None]:
        """Turn a failure while building ``key``'s object from checked values into an error naming ``key``."""
        try:
            yield
        except CheckpointError:
            raise
        except (XReplayError, KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise self.fail(key, f"is inconsistent ({type(exc).__name__}: {exc})") from exc


def entry_nbytes(entry: dict[str, Any]) -> int:
    """Return the bytes of a checked array entry's full array."""
    return int(np.prod(entry["shape"], dtype=object)) * np.dtype(entry["dtype"]).itemsize


def _check_file_name(v: Validator, key: str, pattern: re.Pattern[str]) -> str:
    """Return the file name at ``key``: a plain name of the expected form, never a path."""
    name = v.get(key)
    example = _EXAMPLES[pattern]
    if isinstance(name, str) and not pattern.match(name) and _NAME.match(name) and name not in (".", ".."):
        version = v.document.get("format_version")
        raise v.fail(key, f"must be a file name of the form {example} in format version {version}", name)
    if not isinstance(name, str) or not pattern.match(name):
        raise CheckpointPathError(
            f"{v.path}/metadata.json: {key} must be a plain file name inside the checkpoint folder (like {example}); "
            f"it holds {_short(name)}, which could reach outside the folder. Refusing to open it: the checkpoint "
            f"is damaged or crafted",
            v.path,
        )
    return name


def _check_deltas(v: Validator, key: str, shape: tuple[int, ...], row_bytes: int) -> None:
    """Check the delta files of an array: names, row ranges inside the array, sizes and checksums."""
    entry = v.mapping(key)
    entry.setdefault("deltas", [])  # live entries of format 1 had none
    deltas = v.sequence(f"{key}.deltas", entry["deltas"], max_length=4096)
    for i, delta in enumerate(deltas):
        where = f"{key}.deltas[{i}]"
        v.mapping(where, delta)
        _check_file_name(v, f"{where}.file", DELTA_FILE)
        v.integer(f"{where}.crc32", low=0, high=2**32 - 1)
        if not shape:
            raise v.fail(f"{where}", "may only belong to an array with a leading dimension", delta)
        ranges = v.sequence(f"{where}.ranges", max_length=2**20)
        rows = 0
        for j, pair in enumerate(ranges):
            start, stop = v.sequence(f"{where}.ranges[{j}]", pair, length=2)
            start = v.integer(f"{where}.ranges[{j}][0]", start, low=0, high=shape[0])
            v.integer(f"{where}.ranges[{j}][1]", stop, low=start + 1, high=shape[0])
            rows += stop - start
        v.integer(f"{where}.nbytes", low=rows * row_bytes, high=rows * row_bytes)


def _check_entry(v: Validator, name: str, version: int) -> None:
    """Check one array entry: dtype, shape, file name, size, checksum and deltas."""
    key = f"arrays.{name}"
    entry = v.mapping(key)
    v.string(f"{key}.dtype", pattern=_DTYPE)
    shape = v.shape(f"{key}.shape")
    nbytes = entry_nbytes(entry)
    if nbytes > _MAX_BYTES:
        raise v.fail(f"{key}.shape", f"must describe at most {_MAX_BYTES} bytes", list(shape))
    row_bytes = nbytes // shape[0] if shape and shape[0] else 0
    live = entry.get("live", False)
    if live is not False and live is not True:
        raise v.fail(f"{key}.live", "must be true or false", live)
    if live:
        _check_file_name(v, f"{key}.file", LIVE_FILE if version >= 3 else _RAW_LIVE_FILE)
        crc_name = entry.get("row_crc32")
        if crc_name is not None or version >= 2:
            v.string(f"{key}.row_crc32", crc_name, pattern=_NAME)
            if crc_name == name or crc_name not in v.mapping("arrays"):
                raise v.fail(f"{key}.row_crc32", "must name another array of this checkpoint", crc_name)
            crc_entry = v.mapping(f"arrays.{crc_name}")
            if crc_entry.get("live") or list(crc_entry.get("shape", [])) != list(shape[:1]) or not shape:
                raise v.fail(f"{key}.row_crc32", f"must name a uint32 array of shape {list(shape[:1])}", crc_name)
            v.string(f"arrays.{crc_name}.dtype", crc_entry.get("dtype"), choices={"<u4", "|u4", "=u4"})
    else:
        _check_file_name(v, f"{key}.file", ARRAY_FILE if version >= 3 else _RAW_ARRAY_FILE)
        v.integer(f"{key}.nbytes", low=nbytes, high=nbytes)
        v.integer(f"{key}.crc32", low=0, high=2**32 - 1)
    _check_deltas(v, key, shape, row_bytes)


def _check_ring(v: Validator, arrays: dict[str, Any]) -> None:
    """Check the optional ``ring`` (slots written in order) against the arrays it names."""
    ring = v.optional("ring")
    if ring is None:
        return
    v.mapping("ring")
    capacity = v.integer("ring.capacity", low=0, high=_MAX_BYTES)
    v.integer("ring.cursor", low=0, high=max(capacity - 1, 0))
    v.integer("ring.writes", low=0)
    if v.optional("ring.untracked") is not None:
        v.integer("ring.untracked", low=0)
    for i, name in enumerate(v.sequence("ring.arrays", max_length=4096)):
        v.string(f"ring.arrays[{i}]", name, choices=arrays)
        shape = arrays[name]["shape"]
        if not shape or shape[0] != capacity:
            raise v.fail(f"arrays.{name}.shape", f"must lead with the ring capacity {capacity}", shape)


def check_document(path: Path, document: dict[str, Any]) -> Validator:
    """Check the parts every checkpoint shares; return a validator for the kind's own rules.

    Raises:
        CheckpointSchemaError: A key is missing, mistyped or out of range.
        CheckpointPathError: An array names a file that is not a plain file name.
    """
    v = Validator(path, document)
    version = v.integer("format_version", low=1)
    v.string("kind", pattern=_KIND)
    v.integer("generation", low=1)
    v.string("lineage", pattern=re.compile(r"^[0-9a-f]{1,64}$"))
    v.mapping("structure")
    v.mapping("state")
    arrays = v.mapping("arrays")
    if len(arrays) > 100_000:
        raise v.fail("arrays", "must list at most 100000 arrays", len(arrays))
    for name in arrays:
        v.string(f"arrays[{_short(name)}]", name, pattern=_NAME)
        _check_entry(v, name, version)
    _check_ring(v, arrays)
    return v


def contained_file(directory: Path, name: str) -> Path:
    """Return ``directory / name`` after checking that it is a regular file inside ``directory``.

    ``name`` was checked to be a plain file name; this also refuses a symbolic link that leads out
    of the folder and anything that is not a regular file (a device or a pipe would never end).

    Raises:
        CheckpointPathError: The file resolves outside the folder or is not a regular file.
        CheckpointFileMissingError: The file does not exist (raised by the caller's size check).
    """
    file = directory / name
    if not _NAME.match(name) or name in (".", ".."):
        raise CheckpointPathError(f"checkpoint file name {name!r} is not a plain file name", directory)
    real = Path(os.path.realpath(file))
    if real.parent != Path(os.path.realpath(directory)):
        raise CheckpointPathError(
            f"checkpoint file {file} is a link to {real}, outside the checkpoint folder; refusing to open it",
            file,
        )
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return file  # the caller's size check names it as missing
    if not stat.S_ISREG(mode):
        raise CheckpointPathError(f"checkpoint file {file} is not a regular file; refusing to open it", file)
    return file
