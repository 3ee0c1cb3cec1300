"""Minari's HDF5 episode layout, written and read with h5py directly (Minari's own API is the reference).

A Minari HDF5 dataset is a folder ``data/`` with ``metadata.json`` and ``main_data.hdf5``; the
file has one group ``episode_<id>`` per episode (attributes ``id`` and ``total_steps``) holding
``observations`` (``T + 1`` rows: the observation after the last step included), ``actions``,
``rewards``, ``terminations`` and ``truncations`` (``T`` rows each); a ``Dict`` space is a group
of datasets, one per key. Writing through h5py's low-level API with cached types and dataspaces
(the types also given as the writes' memory types, so h5py makes no type object per write)
avoids most of the per-dataset cost of the high-level one (a dataset is created per episode and
part, thousands per file).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.datasets._common import require
from xreplay.errors import DatasetCorruptError, DatasetFieldMissingError

__all__ = ["EpisodeFileReader", "EpisodeFileWriter", "MAIN_FILE"]

MAIN_FILE = "main_data.hdf5"
PARTS = ("observations", "actions", "rewards", "terminations", "truncations")
_PART_NAMES = tuple((part, part.encode()) for part in PARTS)


def _nest(leaves: Mapping[str, np.ndarray]) -> np.ndarray | dict[str, Any]:
    """Return leaf arrays as the tree Minari stores: the root leaf alone, or nested dicts by ``/``."""
    if "" in leaves:
        return leaves[""]
    tree: dict[str, Any] = {}
    for leaf, value in leaves.items():
        *outer, last = leaf.split("/")
        node = tree
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


class EpisodeFileWriter:
    """Writes episodes into a new ``main_data.hdf5`` in Minari's layout.

    Args:
        path: The file to create.
    """

    def __init__(self, path: Path):
        """Create the file and the caches of HDF5 types and dataspaces."""
        self._h5py = require("h5py")
        self.file = self._h5py.File(path, "w")
        self._types: dict[np.dtype, Any] = {}
        self._spaces: dict[tuple[int, ...], Any] = {}
        self._scalar = self._h5py.h5s.create(self._h5py.h5s.SCALAR)
        self._int64 = self._type(np.dtype(np.int64))
        self.episodes = 0
        self.steps = 0

    def _type(self, dtype: np.dtype) -> Any:
        """Return the cached HDF5 type of ``dtype`` (booleans as h5py's enum, as Minari writes them)."""
        tid = self._types.get(dtype)
        if tid is None:
            tid = self._types[dtype] = self._h5py.h5t.py_create(dtype, logical=True)
        return tid

    def _space(self, shape: tuple[int, ...]) -> Any:
        """Return the cached dataspace of ``shape``."""
        sid = self._spaces.get(shape)
        if sid is None:
            sid = self._spaces[shape] = self._h5py.h5s.create_simple(shape)
        return sid

    def write(self, steps: int, parts: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Add one episode of ``steps`` steps: part name -> leaf name -> array (contiguous or not)."""
        h5 = self._h5py
        group = h5.h5g.create(self.file.id, b"episode_%d" % self.episodes)
        for key, number in ((b"id", self.episodes), (b"total_steps", steps)):
            attr = h5.h5a.create(group, key, self._int64, self._scalar)
            attr.write(np.array(number, dtype=np.int64), mtype=self._int64)
        for part, name in _PART_NAMES:
            leaves = parts[part]
            value = leaves.get("")
            if value is not None and len(leaves) == 1:  # one dataset, the common case: no tree, no call
                if not value.flags.c_contiguous:
                    value = np.ascontiguousarray(value)
                tid = self._types.get(value.dtype)
                space = self._spaces.get(value.shape)
                if tid is None or space is None:
                    tid, space = self._type(value.dtype), self._space(value.shape)
                dataset = h5.h5d.create(group, name, tid, space)
                if value.size:
                    dataset.write(h5.h5s.ALL, h5.h5s.ALL, value, mtype=tid)  # mtype given: h5py makes no type
            else:
                self._put(group, name, _nest(leaves))
        h5.h5g.create(group, b"infos")  # empty: Minari then reads infos as {}, as for the datasets it collects
        self.episodes += 1
        self.steps += steps

    def _put(self, group: Any, name: bytes, value: np.ndarray | dict[str, Any]) -> None:
        """Write ``value`` under ``group``: a dataset for an array, a subgroup for a dict."""
        h5 = self._h5py
        if isinstance(value, dict):
            sub = h5.h5g.create(group, name)
            for key, item in value.items():
                self._put(sub, key.encode(), item)
            return
        array = np.ascontiguousarray(value)
        tid = self._type(array.dtype)
        dataset = h5.h5d.create(group, name, tid, self._space(array.shape))
        if array.size:
            dataset.write(h5.h5s.ALL, h5.h5s.ALL, array, mtype=tid)

    def close(self) -> None:
        """Flush and close the file."""
        self.file.close()


class EpisodeFileReader:
    """Reads episodes of a Minari HDF5 file part by part straight into caller arrays (h5py's low-level API).

    Args:
        path: ``main_data.hdf5``.
        ids: Episode ids to read, in order.
    """

    def __init__(self, path: Path, ids: np.ndarray):
        """Open the file."""
        self._h5py = require("h5py")
        self.path = path
        self.ids = ids
        try:
            self.file = self._h5py.File(path, "r")
        except OSError as e:
            raise DatasetCorruptError(f"{path} cannot be opened as HDF5 (truncated or not HDF5): {e}", path) from e

    def _group(self, episode: int) -> Any:
        """Return the low-level group of episode ``episode``."""
        try:
            return self._h5py.h5g.open(self.file.id, f"episode_{episode}".encode())
        except (KeyError, ValueError) as e:
            raise DatasetFieldMissingError(f"{self.path}: episode {episode} is missing", self.path) from e

    def _dataset(self, group: Any, episode: int, name: str, shape: tuple[int, ...] | None) -> Any:
        """Return the low-level dataset ``name`` of an episode after checking its shape."""
        try:
            dataset = self._h5py.h5d.open(group, name.encode())
        except (KeyError, ValueError, TypeError) as e:
            expected = f" (expected shape {shape})" if shape is not None else ""
            raise DatasetFieldMissingError(
                f"{self.path}: episode {episode} has no dataset {name!r}{expected}", self.path
            ) from e
        if shape is not None and tuple(dataset.shape) != shape:
            raise DatasetCorruptError(
                f"{self.path}: episode {episode} dataset {name!r}: expected shape {shape}, received {dataset.shape}",
                self.path,
            )
        return dataset

    def lengths(self) -> np.ndarray:
        """Return the steps of every episode, from its ``rewards`` dataset.

        Raises:
            DatasetFieldMissingError: An episode or its rewards are missing.
        """
        out = np.empty(len(self.ids), dtype=np.int64)
        for k, episode in enumerate(self.ids.tolist()):
            rewards = self._dataset(self._group(episode), episode, "rewards", None)
            if len(rewards.shape) != 1:
                raise DatasetCorruptError(
                    f"{self.path}: episode {episode} dataset 'rewards': expected shape (steps,), "
                    f"received {rewards.shape}",
                    self.path,
                )
            out[k] = rewards.shape[0]
        return out

    def dtype(self, part: str) -> np.dtype:
        """Return the dtype of ``part`` (a one-dataset part) in the first episode."""
        first = int(self.ids[0])
        return np.dtype(self._dataset(self._group(first), first, part, None).dtype)

    def episodes(self, lengths: np.ndarray, items: Mapping[tuple[str, str], tuple[int, ...]]) -> Iterator[Any]:
        """Yield, per episode, a ``copy(part, leaf, rows, out, out_rows)`` that reads into ``out[out_rows]``.

        Args:
            lengths: Steps of each episode (from :meth:`lengths`).
            items: (part, leaf) -> item shape, to check each dataset's shape.
        """
        h5s = self._h5py.h5s
        for episode, steps in zip(self.ids.tolist(), lengths.tolist(), strict=True):
            group = self._group(episode)
            datasets = {}
            for (part, leaf), item in items.items():
                rows = steps + 1 if part == "observations" else steps
                name = f"{part}/{leaf}" if leaf else part
                datasets[(part, leaf)] = (self._dataset(group, episode, name, (rows, *item)), (rows, *item), name)

            def copy(
                part: str,
                leaf: str,
                rows: slice,
                out: np.ndarray,
                out_rows: Any,
                _d: dict = datasets,
                _e: int = episode,
            ) -> None:
                dataset, shape, name = _d[(part, leaf)]
                target = out[out_rows]  # a contiguous block of the stage
                count = rows.stop - rows.start
                if count == shape[0]:
                    memory = file = h5s.ALL
                else:  # a run of rows: observations 0..T-1 or 1..T
                    file = dataset.get_space()
                    file.select_hyperslab((rows.start,) + (0,) * (len(shape) - 1), (count, *shape[1:]))
                    memory = h5s.create_simple(target.shape)
                try:
                    dataset.read(memory, file, target)
                except OSError as e:
                    raise DatasetCorruptError(
                        f"{self.path}: episode {_e} dataset {name!r} cannot be read ({e})", self.path
                    ) from e

            yield copy

    def close(self) -> None:
        """Close the file."""
        self.file.close()
