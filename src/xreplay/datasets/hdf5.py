"""HDF5 files of a buffer's items: one dataset per field, attributes for the scheme and the counters.

The file is plain HDF5, readable with h5py alone::

    /                      attrs: format="xreplay.hdf5", format_version, kind, capacity, size, writes, ...
    /fields/<name>         one dataset per field, rows in age order (row 0 is the oldest item)
    /lengths               episode buffers only: steps of each episode

A transition buffer's fields are ``[size, *item]`` in the stored dtype (nested names such as
``obs/achieved_goal`` become nested groups); the root attribute ``fields`` (JSON) lists each
field's shape and dtype. An episode buffer's per-step fields are ``[size, max_seq_length, *item]``
and per-episode ones ``[size, *item]``, in the compact dtype the buffer stores (each dataset's
``dtype`` attribute names the declared one); derived fields (one-hot) are not written, the root
attribute ``scheme`` (JSON) says how to compute them. Datasets are chunked (about 1 MiB per chunk),
optionally compressed, and carry HDF5's Fletcher-32 checksum unless ``checksum=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.datasets._common import (
    age_slices,
    decode_scheme,
    encode_scheme,
    numpy_dtype,
    remove_quietly,
    require,
)
from xreplay.errors import DatasetCorruptError, DatasetError, DatasetFieldMissingError, DatasetMismatchError
from xreplay.samplers.prioritized import PrioritizedSampler

__all__ = ["FORMAT", "FORMAT_VERSION", "from_hdf5", "to_hdf5"]

FORMAT = "xreplay.hdf5"
FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 20
_READ_BYTES = 64 << 20  # rows read per step when loading into a new buffer

Reader = Callable[[int, int], np.ndarray]  # (first row, count) -> contiguous [count, *item] in age order


def to_hdf5(
    buffer: TransitionBuffer | EpisodeBuffer,
    path: str | os.PathLike[str],
    *,
    compression: str | None = None,
    compression_opts: Any = None,
    checksum: bool = True,
    chunk_bytes: int = _CHUNK_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write the items of ``buffer`` to an HDF5 file at ``path`` (atomically: a temporary file, then a rename).

    Args:
        buffer: A :class:`TransitionBuffer` or :class:`EpisodeBuffer`.
        path: The file to write.
        compression: An h5py filter (``"gzip"``, ``"lzf"``) or None.
        compression_opts: Its option (the gzip level).
        checksum: Add HDF5's Fletcher-32 checksum to every chunk, so that corrupted bytes are detected on read.
        chunk_bytes: Target size of one chunk.
        overwrite: Replace an existing file.

    Returns:
        The path written.

    Raises:
        DatasetError: ``path`` exists and ``overwrite`` is false, or the write failed (nothing is left at ``path``).

    Example:
        >>> import tempfile, h5py
        >>> buf = TransitionBuffer(10)
        >>> _ = buf.extend({"obs": np.arange(6.0).reshape(3, 2), "reward": np.ones(3)})
        >>> path = to_hdf5(buf, tempfile.mkdtemp() + "/replay.h5")
        >>> with h5py.File(path) as f:
        ...     f["fields/obs"][:].tolist(), int(f.attrs["size"])
        ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], 3)
        >>> len(from_hdf5(path))
        3
    """
    h5py = require("h5py")
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; pass overwrite=True to replace it", path)
    attrs, columns = _export_plan(buffer)
    filters = {"compression": compression, "compression_opts": compression_opts, "fletcher32": checksum}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as out:
            out.attrs.update(attrs)
            size = int(attrs["size"])
            for name, (item, dtype, read, extra) in columns.items():
                _write_column(out, name, size, item, dtype, read, extra, filters, chunk_bytes)
        os.replace(tmp, path)
    except OSError as e:
        remove_quietly(tmp)
        raise DatasetError(f"writing {path} failed ({e}); nothing was written there", path) from e
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


def _write_column(
    out: Any,
    name: str,
    size: int,
    item: tuple[int, ...],
    dtype: np.dtype,
    read: Reader,
    extra: dict[str, Any],
    filters: dict[str, Any],
    chunk_bytes: int,
) -> None:
    """Create one chunked dataset and copy ``read``'s rows into it, one chunk at a time."""
    item_bytes = int(np.prod(item, dtype=np.int64)) * dtype.itemsize
    if item_bytes == 0:  # zero-sized items: nothing to chunk or compress
        dataset = out.create_dataset(name, shape=(size, *item), dtype=dtype)
    else:
        rows = max(1, min(chunk_bytes // item_bytes, max(size, 1)))
        dataset = out.create_dataset(
            name, shape=(size, *item), dtype=dtype, chunks=(rows, *item), maxshape=(None, *item), **filters
        )
        for first in range(0, size, rows):  # whole chunks, aligned: no chunk is read back and rewritten
            count = min(rows, size - first)
            dataset.write_direct(read(first, count), dest_sel=np.s_[first : first + count])
    dataset.attrs.update(extra)


def _export_plan(buffer: Any) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, ...], np.dtype, Reader, dict]]]:
    """Return the root attributes and, per dataset, (item shape, dtype, reader, attributes)."""
    from xreplay.version import __version__

    writer = buffer.writer
    attrs: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xreplay_version": __version__,
        "capacity": writer.capacity,
        "size": writer.size,
        "writes": writer.writes,
    }
    if isinstance(buffer, TransitionBuffer):
        attrs["kind"] = "transition_buffer"
        return attrs, _transition_columns(buffer, attrs)
    if isinstance(buffer, EpisodeBuffer):
        attrs["kind"] = "episode_buffer"
        return attrs, _episode_columns(buffer, attrs)
    raise TypeError(f"to_hdf5 writes a TransitionBuffer or an EpisodeBuffer, received {type(buffer).__name__}")


def _slot_reader(view: Any, writer: Any, item: tuple[int, ...], dtype: np.dtype, chunk_rows: int) -> Reader:
    """Return a reader of ``view`` (numpy or torch ``[capacity, *item]``) that copies age-ordered rows."""
    stage = np.empty((chunk_rows, *item), dtype=dtype)

    def read(first: int, count: int) -> np.ndarray:
        out = stage[:count] if count <= chunk_rows else np.empty((count, *item), dtype=dtype)
        done = 0
        for part in age_slices(writer, first, count):
            rows = view[part]
            if not isinstance(rows, np.ndarray):
                rows = rows.cpu().numpy()
            out[done : done + rows.shape[0]] = rows
            done += rows.shape[0]
        return out

    return read


def _chunk_rows(item: tuple[int, ...], dtype: np.dtype) -> int:
    """Return the rows of one ~1 MiB chunk of ``item``-shaped rows."""
    return max(1, _CHUNK_BYTES // max(1, int(np.prod(item, dtype=np.int64)) * dtype.itemsize))


def _transition_columns(buffer: TransitionBuffer, attrs: dict[str, Any]) -> dict[str, Any]:
    """Return the datasets of a transition buffer (next observations stored once are written out in full)."""
    storage, writer = buffer.storage, buffer.writer
    derived = buffer.next_obs_fields
    # A next-observation field "next_obs/x" is stored as the observation field "obs/x" of the following slot.
    obs_of = {name: f"{buffer.next_obs_from}{name[len(buffer.next_obs) :]}" for name in derived}
    fields: dict[str, dict[str, Any]] = {}
    columns: dict[str, Any] = {}
    for name, spec in storage.specs.items():
        fields[name] = {"shape": list(spec.shape), "dtype": str(numpy_dtype(spec.dtype))}
    for name in derived:
        fields[name] = dict(fields[obs_of[name]])
    _check_nesting(list(fields))
    for name, info in fields.items():
        item, dtype = tuple(info["shape"]), np.dtype(info["dtype"])
        rows = _chunk_rows(item, dtype)
        if name in derived:
            columns[f"fields/{name}"] = (item, dtype, _derived_reader(buffer, name, writer), {})
        else:
            column = storage.columns[name]
            view = column.numpy() if column.device.type == "cpu" else column
            columns[f"fields/{name}"] = (item, dtype, _slot_reader(view, writer, item, dtype, rows), {})
    attrs["fields"] = json.dumps(fields)
    attrs["next_obs_from"] = buffer.next_obs_from or ""
    attrs["next_obs"] = buffer.next_obs
    attrs["sampler"] = "prioritized" if isinstance(buffer.sampler, PrioritizedSampler) else "uniform"
    return columns


def _derived_reader(buffer: TransitionBuffer, name: str, writer: Any) -> Reader:
    """Return a reader of a next-observation field that the buffer stores once (gathered per chunk)."""

    def read(first: int, count: int) -> np.ndarray:
        slots = np.concatenate([np.arange(s.start, s.stop) for s in age_slices(writer, first, count)])
        return np.ascontiguousarray(buffer.gather(slots, [name])[name].cpu().numpy())

    return read


def _check_nesting(names: list[str]) -> None:
    """Raise DatasetError when a field name is a group of another (``obs`` and ``obs/x``): HDF5 cannot hold both."""
    groups = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    prefixes = {"/".join(g.split("/")[: i + 1]) for g in groups for i in range(g.count("/") + 1)}
    clash = sorted(set(names) & prefixes)
    if clash:
        raise DatasetError(f"field {clash[0]!r} is also the group of other fields; HDF5 cannot store both")


def _episode_columns(buffer: EpisodeBuffer, attrs: dict[str, Any]) -> dict[str, Any]:
    """Return the datasets of an episode buffer: stored fields in their compact dtypes, and the lengths."""
    storage, writer, scheme = buffer.storage, buffer.writer, buffer.scheme
    host = storage.host_columns
    columns: dict[str, Any] = {}
    for name in scheme.stored():
        layout = storage.layout.columns[name]
        dtype = numpy_dtype(layout.dtype)
        view = host[name] if host is not None else storage.columns[name]
        extra = {"dtype": str(scheme[name].dtype).removeprefix("torch."), "per_step": scheme[name].per_step}
        reader = _slot_reader(view, writer, layout.shape, dtype, _chunk_rows(layout.shape, dtype))
        columns[f"fields/{name}"] = (layout.shape, dtype, reader, extra)
    for name, field in scheme.items():
        if field.derived is not None and not storage.layout.columns[name].mask:
            raise DatasetError(
                f"field {name!r} is derived ({field.derived!r}) but holds values that are not one-hot, which "
                "to_hdf5 cannot export; declare it as a stored field"
            )
    lengths = buffer.episode_lengths()
    columns["lengths"] = ((), np.dtype(np.int32), _slot_reader(lengths, writer, (), np.dtype(np.int32), 1 << 18), {})
    attrs["scheme"] = json.dumps(encode_scheme(scheme))
    attrs["max_seq_length"] = buffer.max_seq_length
    return columns


# -- reading ---------------------------------------------------------------------------------------


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
        if header["kind"] == "transition_buffer":
            return _load_transitions(file, header, path, buffer, device, seed)
        return _load_episodes(file, header, path, buffer, device, seed)


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
    node = file.get(name)
    if not isinstance(node, h5py.Dataset):
        raise DatasetFieldMissingError(f"{path}: dataset {name!r} is missing", path)
    if tuple(node.shape) != shape:
        raise DatasetCorruptError(f"{path}: dataset {name!r} expected shape {shape}, received {node.shape}", path)
    return node


def _read(dataset: Any, rows: slice, path: Path) -> np.ndarray:
    """Return ``dataset[rows]``, wrapping read failures (bad checksum, truncated data) as DatasetCorruptError."""
    try:
        return dataset[rows]
    except OSError as e:
        raise DatasetCorruptError(
            f"{path}: dataset {dataset.name!r} rows {rows.start}..{rows.stop} cannot be read ({e})", path
        ) from e


def _load_transitions(
    file: Any, header: dict[str, Any], path: Path, target: Any, device: str, seed: int | None
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
            target.extend({name: _read(d, rows, path) for name, d in datasets.items()})
        return target
    if not isinstance(target, TransitionBuffer):
        raise DatasetMismatchError(f"{path} holds transitions; buffer is a {type(target).__name__}", path)
    _check_transition_target(target, fields, path)
    if size:
        target.extend({name: _read(d, slice(0, size), path) for name, d in datasets.items()})
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
    file: Any, header: dict[str, Any], path: Path, target: Any, device: str, seed: int | None
) -> EpisodeBuffer:
    """Fill an episode buffer from an open file."""
    size = header["size"]
    try:
        scheme_info = json.loads(_attr(file, "scheme", path))
    except (ValueError, TypeError) as e:
        raise DatasetCorruptError(f"{path}: root attribute 'scheme' is not JSON ({e})", path) from e
    scheme = decode_scheme(scheme_info, str(path))
    steps = int(_attr(file, "max_seq_length", path))
    lengths = _read(_dataset(file, "lengths", (size,), path), slice(0, size), path).astype(np.int64)
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
            target.add({name: _read(d, rows, path) for name, d in datasets.items()}, lengths=lengths[rows])
        return target
    keep = _check_episode_target(target, scheme, steps, int(lengths.max()) if size else 0, path)
    if size:
        values = {}
        for name, d in datasets.items():
            value = _read(d, slice(0, size), path)
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
