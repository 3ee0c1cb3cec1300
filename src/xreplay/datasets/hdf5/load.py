"""from_hdf5: an HDF5 file written by :func:`~xreplay.datasets.to_hdf5` read back into a buffer.

Everything the file claims is checked before it is trusted: the root attributes (format, version,
kind, size, capacity), each dataset's presence, shape and dtype, the episode lengths, each
dataset's CRC-32 (recomputed as its rows are read, compared when its last row is), and, when the
items go into an existing buffer, that its fields are the file's; read failures (a bad Fletcher-32
chunk checksum, truncated data) become :class:`~xreplay.errors.DatasetCorruptError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.datasets._common import decode_scheme, numpy_dtype, require
from xreplay.datasets.hdf5.layout import CHECKSUMS, CRC_ATTRIBUTE, FORMAT, FORMAT_VERSION
from xreplay.errors import DatasetCorruptError, DatasetError, DatasetFieldMissingError, DatasetMismatchError
from xreplay.persistence.streams import crc32

__all__ = ["from_hdf5"]

_READ_BYTES = 64 << 20  # rows read per step when loading into a new buffer


def from_hdf5(
    path: str | os.PathLike[str],
    *,
    buffer: TransitionBuffer | EpisodeBuffer | None = None,
    device: str = "cpu",
    seed: int | None = None,
) -> TransitionBuffer | EpisodeBuffer:
    """Return a buffer holding the items of an HDF5 file written by :func:`to_hdf5`, in the same age order.

    Args:
        path: The file.
        buffer: A buffer to add the items to (checked first, then written in one add, so a failure
            leaves it unchanged); a new one like the exported buffer (capacity, sampler kind,
            next-observation storage) by default.
        device: Device of a new buffer.
        seed: Seed of a new buffer's random generator.

    Raises:
        DatasetError: No file at ``path``.
        DatasetCorruptError: Not HDF5, truncated, a failed checksum, or contents that contradict the attributes.
        DatasetFieldMissingError: A field the attributes list has no dataset.
        DatasetMismatchError: The fields differ from those of ``buffer``.
    """
    h5py = require("h5py")
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no HDF5 file at {path}", path)
    try:
        file = h5py.File(path, "r")
    except OSError as e:
        raise DatasetCorruptError(f"{path} cannot be opened as HDF5 (truncated or not HDF5): {e}", path) from e
    with file:
        header = _header(file, path)
        reads = _CheckedReads(file, path)
        if header["kind"] == "transition_buffer":
            return _load_transitions(file, header, path, reads, buffer, device, seed)
        return _load_episodes(file, header, path, reads, buffer, device, seed)


def _attr(file: Any, name: str, path: Path) -> Any:
    """Return root attribute ``name`` or raise DatasetCorruptError naming it."""
    if name not in file.attrs:
        raise DatasetCorruptError(f"{path}: root attribute {name!r} is missing; not a file written by to_hdf5", path)
    value = file.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _header(file: Any, path: Path) -> dict[str, Any]:
    """Return the checked root attributes."""
    fmt = _attr(file, "format", path)
    if fmt != FORMAT:
        raise DatasetCorruptError(f"{path}: attribute 'format' is {fmt!r}, expected {FORMAT!r}", path)
    version = int(_attr(file, "format_version", path))
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{path} is format version {version}; this xreplay reads up to {FORMAT_VERSION}: upgrade xreplay", path
        )
    kind = _attr(file, "kind", path)
    if kind not in ("transition_buffer", "episode_buffer"):
        raise DatasetCorruptError(f"{path}: attribute 'kind' is {kind!r}, expected a buffer kind", path)
    size, capacity = int(_attr(file, "size", path)), int(_attr(file, "capacity", path))
    if not 0 <= size <= capacity or capacity < 1:
        raise DatasetCorruptError(f"{path}: size {size} and capacity {capacity} need 0 <= size <= capacity", path)
    return {"kind": kind, "size": size, "capacity": capacity}


def _dataset(file: Any, name: str, shape: tuple[int, ...], path: Path) -> Any:
    """Return dataset ``name`` after checking it exists with ``shape``."""
    h5py = require("h5py")
    parent, parts = file, name.split("/")
    for depth, part in enumerate(parts):  # a file is untrusted input: nothing it names may lie in another file
        if isinstance(parent, h5py.Group) and isinstance(parent.get(part, getlink=True), h5py.ExternalLink):
            raise DatasetCorruptError(
                f"{path}: {'/'.join(parts[: depth + 1])!r} is a link to another file; to_hdf5 keeps every "
                "dataset in the file it writes, and from_hdf5 reads nothing outside it",
                path,
            )
        parent = parent.get(part) if isinstance(parent, h5py.Group) else None
    node = parent
    if not isinstance(node, h5py.Dataset):
        raise DatasetFieldMissingError(f"{path}: dataset {name!r} is missing", path)
    if node.external or node.is_virtual:
        raise DatasetCorruptError(
            f"{path}: dataset {name!r} keeps its data in other files (external or virtual storage); "
            "from_hdf5 reads nothing outside the file",
            path,
        )
    if tuple(node.shape) != shape:
        raise DatasetCorruptError(f"{path}: dataset {name!r} expected shape {shape}, received {node.shape}", path)
    return node


class _CheckedReads:
    """Reads of a file's datasets, in row order, each checked against the dataset's CRC-32 when the file has them.

    Args:
        file: The open file.
        path: Its path (for messages).

    Raises:
        DatasetCorruptError: The root attribute ``checksum`` names no known method.
    """

    def __init__(self, file: Any, path: Path):
        """Read the file's checksum method (files from before the attribute have Fletcher-32 chunks)."""
        method = file.attrs.get("checksum", "fletcher32")
        method = method.decode() if isinstance(method, bytes) else str(method)
        if method not in [c or "none" for c in CHECKSUMS]:
            raise DatasetCorruptError(
                f"{path}: root attribute 'checksum' is {method!r}, expected 'crc32', 'fletcher32' or 'none'", path
            )
        self.path, self.method, self.named = path, method, "checksum" in file.attrs
        self._running: dict[str, tuple[bool, int]] = {}  # dataset name -> (checked by CRC, CRC so far)

    def _checked(self, dataset: Any) -> bool:
        """Return whether ``dataset``'s CRC-32 is checked; refuse a dataset that lacks the check the root promises.

        A dataset's ``crc32`` attribute is checked whatever the root says (a damaged root attribute
        must not turn checking off); a file that names Fletcher-32 must have it on every chunked dataset.
        """
        if self.method == "crc32" or CRC_ATTRIBUTE in dataset.attrs:
            return True
        if self.method == "fletcher32" and self.named and dataset.chunks is not None and not dataset.fletcher32:
            raise DatasetCorruptError(
                f"{self.path}: dataset {dataset.name!r} has no Fletcher-32 chunk checksums, which the root "
                "attribute checksum='fletcher32' promises; the file is damaged or was edited",
                self.path,
            )
        return False

    def read(self, dataset: Any, rows: slice) -> np.ndarray:
        """Return ``dataset[rows]``, the rows after those read before, comparing its CRC-32 once its last is read.

        Raises:
            DatasetCorruptError: The rows cannot be read (a bad Fletcher-32 chunk, truncated data),
                or the dataset's bytes differ from its ``crc32`` attribute.
        """
        try:
            values = dataset[rows]
        except OSError as e:
            raise DatasetCorruptError(
                f"{self.path}: dataset {dataset.name!r} rows {rows.start}..{rows.stop} cannot be read ({e})", self.path
            ) from e
        running = self._running.get(dataset.name)
        if running is None:
            running = self._running[dataset.name] = (self._checked(dataset), 0)
        checked, crc = running
        if checked:
            crc = crc32(np.ascontiguousarray(values).data, crc)  # folded in row order: the loaders read row 0 up
            self._running[dataset.name] = (True, crc)
            if rows.stop == dataset.shape[0]:
                self._compare(dataset, crc & 0xFFFFFFFF)
        return values

    def _compare(self, dataset: Any, crc: int) -> None:
        """Raise DatasetCorruptError unless ``crc`` is the dataset's ``crc32`` attribute."""
        expected = dataset.attrs.get(CRC_ATTRIBUTE)
        if expected is None:
            raise DatasetCorruptError(
                f"{self.path}: dataset {dataset.name!r} has no {CRC_ATTRIBUTE!r} attribute, which the root "
                "attribute checksum='crc32' promises; the file is damaged or was edited",
                self.path,
            )
        try:
            expected = int(expected)
        except (TypeError, ValueError) as e:
            raise DatasetCorruptError(
                f"{self.path}: dataset {dataset.name!r}: its {CRC_ATTRIBUTE!r} attribute should be a CRC-32 "
                f"(an integer), received {expected!r}; the file is damaged or was edited",
                self.path,
            ) from e
        if expected != crc:
            raise DatasetCorruptError(
                f"{self.path}: dataset {dataset.name!r} fails its checksum: expected CRC-32 {expected:#010x} "
                f"(its {CRC_ATTRIBUTE!r} attribute), received {crc:#010x} from its bytes; the file is corrupted",
                self.path,
            )


def _load_transitions(
    file: Any, header: dict[str, Any], path: Path, reads: _CheckedReads, target: Any, device: str, seed: int | None
) -> TransitionBuffer:
    """Fill a transition buffer from an open file."""
    size = header["size"]
    try:
        fields = {
            name: (tuple(int(d) for d in f["shape"]), np.dtype(f["dtype"]))
            for name, f in json.loads(_attr(file, "fields", path)).items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise DatasetCorruptError(f"{path}: root attribute 'fields' is not a valid field list ({e!r})", path) from e
    datasets = {name: _dataset(file, f"fields/{name}", (size, *item), path) for name, (item, _d) in fields.items()}
    for name, (_item, dtype) in fields.items():
        if datasets[name].dtype != dtype:
            raise DatasetCorruptError(
                f"{path}: dataset 'fields/{name}' expected dtype {dtype}, received {datasets[name].dtype}", path
            )
    if target is None:
        next_obs_from = str(_attr(file, "next_obs_from", path)) or None
        target = TransitionBuffer(
            header["capacity"],
            sampler=str(_attr(file, "sampler", path)),
            device=device,
            seed=seed,
            next_obs_from=next_obs_from,
            next_obs=str(_attr(file, "next_obs", path)),
        )
        step = max(1, _READ_BYTES // max(1, sum(int(np.prod(i)) * d.itemsize for i, d in fields.values())))
        for first in range(0, size, step):  # bounded memory: a failure discards the new buffer anyway
            rows = slice(first, min(size, first + step))
            target.extend({name: reads.read(d, rows) for name, d in datasets.items()})
        return target
    if not isinstance(target, TransitionBuffer):
        raise DatasetMismatchError(f"{path} holds transitions; buffer is a {type(target).__name__}", path)
    _check_transition_target(target, fields, path)
    if size:
        target.extend({name: reads.read(d, slice(0, size)) for name, d in datasets.items()})
    return target


def _check_transition_target(target: TransitionBuffer, fields: dict[str, Any], path: Path) -> None:
    """Raise DatasetMismatchError unless ``target``'s fields are the file's (when it has any)."""
    specs = target.storage.specs
    if not specs:
        return
    derived = target.next_obs_fields
    expected = {name: (spec.shape, numpy_dtype(spec.dtype)) for name, spec in specs.items()}
    for name in derived:
        expected[name] = expected[f"{target.next_obs_from}{name[len(target.next_obs) :]}"]
    for name in sorted(set(expected) | set(fields)):
        want, got = expected.get(name), fields.get(name)
        if want is None or got is None:
            raise DatasetMismatchError(
                f"{path}: field {name!r}: the buffer {'has no such field' if want is None else 'has it'}, "
                f"the file {'has it' if got is not None else 'has no such field'}; expected fields "
                f"{sorted(expected)}, received {sorted(fields)}",
                path,
            )
        if want[0] != got[0] or want[1].kind.replace("u", "i") != got[1].kind.replace("u", "i"):
            raise DatasetMismatchError(
                f"{path}: field {name!r}: expected item shape {want[0]} and dtype {want[1]} (the buffer's), "
                f"received {got[0]} and {got[1]}",
                path,
            )


def _load_episodes(
    file: Any, header: dict[str, Any], path: Path, reads: _CheckedReads, target: Any, device: str, seed: int | None
) -> EpisodeBuffer:
    """Fill an episode buffer from an open file."""
    size = header["size"]
    try:
        scheme_info = json.loads(_attr(file, "scheme", path))
    except (ValueError, TypeError) as e:
        raise DatasetCorruptError(f"{path}: root attribute 'scheme' is not JSON ({e})", path) from e
    scheme = decode_scheme(scheme_info, str(path))
    steps = int(_attr(file, "max_seq_length", path))
    lengths = reads.read(_dataset(file, "lengths", (size,), path), slice(0, size)).astype(np.int64)
    if size and (lengths.min() < 0 or lengths.max() > steps):
        bad = int(lengths[(lengths < 0) | (lengths > steps)][0])
        raise DatasetCorruptError(f"{path}: dataset 'lengths' expected values in [0, {steps}], received {bad}", path)
    datasets = {}
    for name in scheme.stored():
        lead = (size, steps) if scheme[name].per_step else (size,)
        datasets[name] = _dataset(file, f"fields/{name}", (*lead, *scheme.item_shape(name)), path)
        if datasets[name].dtype.kind not in "biuf":
            raise DatasetCorruptError(
                f"{path}: dataset 'fields/{name}' expected numbers, received dtype {datasets[name].dtype}", path
            )
    if target is None:
        target = EpisodeBuffer(scheme, header["capacity"], steps, device=device, seed=seed)
        row = sum(d.dtype.itemsize * int(np.prod(d.shape[1:])) for d in datasets.values())
        step = max(1, _READ_BYTES // max(1, row))
        for first in range(0, size, step):
            rows = slice(first, min(size, first + step))
            target.add({name: reads.read(d, rows) for name, d in datasets.items()}, lengths=lengths[rows])
        return target
    keep = _check_episode_target(target, scheme, steps, int(lengths.max()) if size else 0, path)
    if size:
        values = {}
        for name, d in datasets.items():
            value = reads.read(d, slice(0, size))
            values[name] = value[:, :keep] if scheme[name].per_step else value
        target.add(values, lengths=lengths)
    return target


def _check_episode_target(target: Any, scheme: Any, steps: int, longest: int, path: Path) -> int:
    """Raise DatasetMismatchError unless ``target`` holds the file's fields; return the steps to keep."""
    if not isinstance(target, EpisodeBuffer):
        raise DatasetMismatchError(f"{path} holds episodes; buffer is a {type(target).__name__}", path)
    ours = target.scheme
    if sorted(ours.stored()) != sorted(scheme.stored()):
        raise DatasetMismatchError(
            f"{path}: expected the buffer's stored fields {sorted(ours.stored())}, received {sorted(scheme.stored())}",
            path,
        )
    for name in scheme.stored():
        want = (ours.item_shape(name), ours[name].per_step)
        got = (scheme.item_shape(name), scheme[name].per_step)
        if want != got:
            raise DatasetMismatchError(
                f"{path}: field {name!r}: expected item shape {want[0]} (per_step={want[1]}), "
                f"received {got[0]} (per_step={got[1]})",
                path,
            )
    if longest > target.max_seq_length:
        raise DatasetMismatchError(
            f"{path}: episodes of up to {longest} steps do not fit max_seq_length={target.max_seq_length}", path
        )
    return min(steps, target.max_seq_length)
