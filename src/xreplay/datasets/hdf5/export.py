"""to_hdf5: a buffer's items written to an HDF5 file, one chunked dataset per field (see :mod:`.layout`).

Rows are written in age order (row 0 is the oldest item), several whole chunks per write, through
readers that hand out a ring's slots as they are stored (copied only where a run of rows wraps
around the ring or is not contiguous, and, for a transition buffer's next observations stored
once, gathered from the next slot's observation). Each dataset's CRC-32 is folded over the same
runs of rows as they are written; the file is written beside its target and renamed into place.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.datasets._common import (
    age_slices,
    encode_scheme,
    numpy_dtype,
    remove_quietly,
    require,
    writers_stopped,
)
from xreplay.datasets.hdf5.layout import CHECKSUMS, CRC_ATTRIBUTE, FORMAT, FORMAT_VERSION
from xreplay.errors import ArgumentError, DatasetError
from xreplay.persistence.streams import crc32
from xreplay.samplers.prioritized import PrioritizedSampler

__all__ = ["to_hdf5"]

_CHUNK_BYTES = 1 << 20
_WRITE_BYTES = 8 << 20  # rows handed to one write (whole chunks): few calls, and still in cache for the CRC

Reader = Callable[[int, int], np.ndarray]  # (first row, count) -> contiguous [count, *item] in age order


def to_hdf5(
    buffer: TransitionBuffer | EpisodeBuffer,
    path: str | os.PathLike[str],
    *,
    compression: str | None = None,
    compression_opts: Any = None,
    checksum: str | None = "crc32",
    chunk_bytes: int = _CHUNK_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write the items of ``buffer`` to an HDF5 file at ``path`` (atomically: a temporary file, then a rename).

    Args:
        buffer: A :class:`TransitionBuffer` or :class:`EpisodeBuffer`.
        path: The file to write.
        compression: An h5py filter (``"gzip"``, ``"lzf"``) or None.
        compression_opts: Its option (the gzip level).
        checksum: How :func:`from_hdf5` detects corrupted bytes: ``"crc32"`` (each dataset's CRC-32
            in its ``crc32`` attribute, checked as it is read; any tool can recompute it with
            ``zlib.crc32``), ``"fletcher32"`` (HDF5's checksum filter on every chunk, checked by
            HDF5 itself on every read; about 1.2x the default's write time), or None (no check).
        chunk_bytes: Target size of one chunk.
        overwrite: Replace an existing file.

    Returns:
        The path written.

    Raises:
        ArgumentError: ``checksum`` is not one of ``"crc32"``, ``"fletcher32"`` or None.
        DatasetError: ``path`` exists and ``overwrite`` is false, or the write failed (nothing is left at ``path``).

    Example:
        >>> import tempfile, h5py
        >>> from xreplay.datasets import from_hdf5
        >>> buf = TransitionBuffer(10)
        >>> _ = buf.extend({"obs": np.arange(6.0).reshape(3, 2), "reward": np.ones(3)})
        >>> path = to_hdf5(buf, tempfile.mkdtemp() + "/replay.h5")
        >>> with h5py.File(path) as f:
        ...     f["fields/obs"][:].tolist(), int(f.attrs["size"])
        ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], 3)
        >>> len(from_hdf5(path))
        3
    """
    if checksum not in CHECKSUMS or isinstance(checksum, bool):
        raise ArgumentError(
            f"checksum {checksum!r}: expected one of {', '.join(map(repr, CHECKSUMS))} "
            '("crc32" is the default; None writes no checksum)'
        )
    h5py = require("h5py")
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; pass overwrite=True to replace it", path)
    with writers_stopped(buffer):  # every item as it is when the export starts (a write would tear it)
        attrs, columns = _export_plan(buffer)
        attrs["checksum"] = checksum or "none"
        filters = {
            "compression": compression,
            "compression_opts": compression_opts,
            "fletcher32": checksum == "fletcher32",
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        slow_crc = checksum == "crc32" and crc32 is zlib.crc32  # no ISA-L: zlib's CRC beside the writes
        pool = ThreadPoolExecutor(1, thread_name_prefix="xreplay-hdf5-crc") if slow_crc else None
        try:
            # No chunk cache: every chunk is written whole, once, so a cache would only copy it once more.
            with h5py.File(tmp, "w", rdcc_nbytes=0) as out:
                out.attrs.update(attrs)
                size = int(attrs["size"])
                for name, (item, dtype, read, extra) in columns.items():
                    crc = _RunningCrc(pool) if checksum == "crc32" else None
                    _write_column(out, name, size, item, dtype, read, extra, filters, chunk_bytes, crc)
            os.replace(tmp, path)
        except OSError as e:
            remove_quietly(tmp)
            raise DatasetError(f"writing {path} failed ({e}); nothing was written there", path) from e
        except BaseException:
            remove_quietly(tmp)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
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
    crc: _RunningCrc | None,
) -> None:
    """Create one chunked dataset and write ``read``'s rows into it, whole chunks at a time (and fold ``crc``)."""
    item_bytes = int(np.prod(item, dtype=np.int64)) * dtype.itemsize
    if item_bytes == 0:  # zero-sized items: nothing to chunk or compress
        dataset = out.create_dataset(name, shape=(size, *item), dtype=dtype)
    else:
        rows = max(1, min(chunk_bytes // item_bytes, max(size, 1)))
        dataset = out.create_dataset(
            name, shape=(size, *item), dtype=dtype, chunks=(rows, *item), maxshape=(None, *item), **filters
        )
        step = rows * max(1, _WRITE_BYTES // (rows * item_bytes))  # whole chunks, aligned: none is rewritten
        for first in range(0, size, step):
            count = min(step, size - first)
            values = read(first, count)
            if crc is not None:
                crc.fold(values)
            dataset.write_direct(values, dest_sel=np.s_[first : first + count])
            if crc is not None:
                crc.wait()  # ``values`` may be a stage that the next read overwrites
    if crc is not None:
        extra = {**extra, CRC_ATTRIBUTE: crc.value()}
    dataset.attrs.update(extra)


class _RunningCrc:
    """One dataset's CRC-32, folded over its runs of rows in order.

    With ISA-L's CRC (the ``accel`` extra: about 30 GB/s, little next to the write) each run is
    folded at once; with zlib's (about 2 GB/s) on ``pool``'s thread while the caller writes the
    same rows (zlib and h5py's writes release the GIL).

    Args:
        pool: A one-thread pool for zlib's CRC, None to fold on the calling thread.
    """

    def __init__(self, pool: ThreadPoolExecutor | None):
        """Start at the CRC of no bytes."""
        self._pool, self._crc = pool, 0
        self._pending: Future[int] | None = None

    def fold(self, values: np.ndarray) -> None:
        """Fold the bytes of ``values`` (C-contiguous), or start folding them on the pool's thread."""
        if self._pool is None:
            self._crc = crc32(values.data, self._crc)
        else:
            self._pending = self._pool.submit(crc32, values.data, self._crc)

    def wait(self) -> None:
        """Return once the last run is folded (its rows may change after)."""
        if self._pending is not None:
            self._crc, self._pending = self._pending.result(), None

    def value(self) -> np.uint32:
        """Return the CRC-32 of every run folded."""
        self.wait()
        return np.uint32(self._crc & 0xFFFFFFFF)


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


def _slot_reader(view: Any, writer: Any, item: tuple[int, ...], dtype: np.dtype) -> Reader:
    """Return a reader of ``view`` (numpy or torch ``[capacity, *item]``) that hands out age-ordered rows.

    A run of rows that lies in one contiguous range of a CPU array is returned as a view (no copy);
    one that wraps around the ring, or lies in strided or device memory, is copied into a stage.
    """
    stage: list[np.ndarray] = []  # allocated on the first copy, reused after it

    def read(first: int, count: int) -> np.ndarray:
        parts = age_slices(writer, first, count)
        if len(parts) == 1 and isinstance(view, np.ndarray):
            rows = view[parts[0]]
            if rows.flags.c_contiguous and rows.dtype == dtype:
                return rows
        if not stage or stage[0].shape[0] < count:
            stage[:] = [np.empty((count, *item), dtype=dtype)]
        out = stage[0][:count]
        done = 0
        for part in parts:
            rows = view[part]
            if not isinstance(rows, np.ndarray):
                rows = rows.cpu().numpy()
            out[done : done + rows.shape[0]] = rows
            done += rows.shape[0]
        return out

    return read


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
        if name in derived:
            columns[f"fields/{name}"] = (item, dtype, _derived_reader(buffer, name, writer), {})
        else:
            column = storage.columns[name]
            view = column.numpy() if column.device.type == "cpu" else column
            columns[f"fields/{name}"] = (item, dtype, _slot_reader(view, writer, item, dtype), {})
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
        columns[f"fields/{name}"] = (layout.shape, dtype, _slot_reader(view, writer, layout.shape, dtype), extra)
    for name, field in scheme.items():
        if field.derived is not None and not storage.layout.columns[name].mask:
            raise DatasetError(
                f"field {name!r} is derived ({field.derived!r}) but holds values that are not one-hot, which "
                "to_hdf5 cannot export; declare it as a stored field"
            )
    lengths = buffer.episode_lengths()
    columns["lengths"] = ((), np.dtype(np.int32), _slot_reader(lengths, writer, (), np.dtype(np.int32)), {})
    attrs["scheme"] = json.dumps(encode_scheme(scheme))
    attrs["max_seq_length"] = buffer.max_seq_length
    return columns
