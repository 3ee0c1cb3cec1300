"""to_minari: a buffer written as a Minari dataset (HDF5 data format) that ``minari.load_dataset`` reads back.

A :class:`TransitionBuffer` is cut into episodes in age order: an episode ends at a terminated
or truncated step, where a step's ``next_obs`` is not the next step's observation (a reset the
flags do not show), and at the newest step. An :class:`EpisodeBuffer` gives its episodes as they
are stored (see :mod:`xreplay.datasets.minari` for the ``T + 1`` steps convention).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.datasets._common import age_slices, numpy_dtype, remove_quietly, require, writers_stopped
from xreplay.datasets._minari_episodes import gathered_episodes
from xreplay.datasets._minari_hdf5 import MAIN_FILE, EpisodeFileWriter
from xreplay.datasets.minari import DEFAULT_FIELDS, MinariFields
from xreplay.datasets.spaces import Leaves, check_leaves, field_name, infer_space, leaf_names, space_leaves
from xreplay.errors import DatasetError, DatasetFieldMissingError, DatasetMismatchError, FieldValueError

__all__ = ["to_minari"]

Episode = tuple[int, dict[str, dict[str, np.ndarray]]]  # (steps, part -> leaf -> rows)


def to_minari(
    buffer: TransitionBuffer | EpisodeBuffer,
    path: str | os.PathLike[str] | None = None,
    *,
    dataset_id: str | None = None,
    fields: MinariFields = DEFAULT_FIELDS,
    observation_space: Any = None,
    action_space: Any = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the episodes of ``buffer`` as a Minari dataset folder (``path/data/``); return ``path``.

    Args:
        buffer: A :class:`TransitionBuffer` or :class:`EpisodeBuffer`.
        path: The dataset folder to create; by default Minari's local folder of ``dataset_id``
            (under ``MINARI_DATASETS_PATH``), where ``minari.load_dataset(dataset_id)`` finds it.
        dataset_id: Minari's id (``name-v0``, ``namespace/name-v0``); by default the folder's name.
        fields: Buffer field names.
        observation_space: The observation space to record (checked against the fields); by default
            unbounded Boxes (a Dict of them for nested fields). Values are cast to its dtypes.
        action_space: The same for actions (pass ``Discrete(n)`` for discrete actions).
        metadata: More of Minari's metadata (``author``, ``algorithm_name``, ``description``, ...).
        overwrite: Replace an existing folder.

    Raises:
        ValueError: Neither ``path`` nor a valid ``dataset_id``.
        DatasetFieldMissingError: The buffer lacks a field that ``fields`` names.
        DatasetMismatchError: A given space does not fit the buffer's fields.
        DatasetError: ``path`` exists (without ``overwrite``) or the write failed (nothing is left there).

    Example:
        >>> import tempfile, minari
        >>> from xreplay.datasets import from_minari
        >>> buf = TransitionBuffer(10)
        >>> ends = np.array([False, True, False, False])  # an episode ends after step 1; the newest is unfinished
        >>> _ = buf.extend({"obs": np.arange(4.0).reshape(4, 1), "next_obs": np.arange(1.0, 5.0).reshape(4, 1),
        ...                 "action": np.zeros(4, np.int64), "reward": np.ones(4), "terminated": ends,
        ...                 "truncated": np.zeros(4, bool)})
        >>> path = to_minari(buf, tempfile.mkdtemp() + "/replay-v0")
        >>> [e.observations.ravel().tolist() for e in minari.MinariDataset(path / "data").iterate_episodes()]
        [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]]
        >>> from_minari(path).gather(np.arange(4))["next_obs"].ravel().tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    minari = require("minari")
    serialize_space = require("minari.serialization").serialize_space
    path, dataset_id = _target(path, dataset_id)
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; pass overwrite=True to replace it", path)
    with writers_stopped(buffer):  # every item as it is when the export starts (a write would tear it)
        source: _TransitionEpisodes | _StoredEpisodes
        if isinstance(buffer, TransitionBuffer):
            source = _TransitionEpisodes(buffer, fields)
        elif isinstance(buffer, EpisodeBuffer):
            source = _StoredEpisodes(buffer, fields)
        else:
            raise TypeError(
                f"to_minari writes a TransitionBuffer or an EpisodeBuffer, received {type(buffer).__name__}"
            )
        obs_space = _space(observation_space, source.obs, "observation")
        act_space = _space(action_space, source.act, "action")
        casts = {"observations": space_leaves(obs_space, "observation"), "actions": space_leaves(act_space, "action")}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        remove_quietly(tmp)
        try:
            (tmp / "data").mkdir(parents=True)
            writer = EpisodeFileWriter(tmp / "data" / MAIN_FILE)
            try:
                for steps, parts in source.episodes():
                    writer.write(steps, _cast(parts, casts))
            finally:
                writer.close()
            meta = {
                "total_episodes": writer.episodes,
                "total_steps": writer.steps,
                "data_format": "hdf5",
                "jpeg_encoding": False,  # arrays are stored as they are, images included
                "observation_space": serialize_space(obs_space),
                "action_space": serialize_space(act_space),
                "dataset_id": dataset_id,
                "minari_version": minari.__version__,
                "dataset_size": round((tmp / "data" / MAIN_FILE).stat().st_size / 1e6, 1),
                **{k: sorted(v) if isinstance(v, set) else v for k, v in (metadata or {}).items()},
            }
            (tmp / "data" / "metadata.json").write_text(json.dumps(meta))
            if path.exists():
                remove_quietly(path)
            os.rename(tmp, path)
        except OSError as e:
            remove_quietly(tmp)
            raise DatasetError(
                f"writing the Minari dataset {path} failed ({e}); nothing was written there", path
            ) from e
        except BaseException:
            remove_quietly(tmp)
            raise
    return path


def _target(path: Any, dataset_id: str | None) -> tuple[Path, str]:
    """Return the dataset folder and a dataset id that Minari parses."""
    parse_dataset_id = require("minari.dataset.minari_dataset").parse_dataset_id
    if path is None and dataset_id is None:
        raise ValueError("to_minari needs a path or a dataset_id (such as 'my-replay-v0')")
    dataset_id = dataset_id if dataset_id is not None else Path(path).name
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"dataset_id {dataset_id!r} is not a Minari id: expected '(namespace/)name-v<version>', e.g. 'replay-v0'"
        ) from e
    if path is None:
        path = require("minari.storage.datasets_root_dir").get_dataset_path(dataset_id)
    return Path(path), dataset_id


def _space(given: Any, leaves: Leaves, what: str) -> Any:
    """Return ``given`` after checking it fits ``leaves`` (same kinds of dtype), or a space inferred from them."""
    if given is None:
        return infer_space(leaves)
    check_leaves(space_leaves(given, what), leaves, what, "the given space", same_kind=True)
    return given


def _cast(parts: dict[str, dict[str, np.ndarray]], casts: dict[str, Leaves]) -> dict[str, dict[str, np.ndarray]]:
    """Return ``parts`` with observations and actions in their spaces' dtypes, refusing values those cannot hold."""
    for part, leaves in casts.items():
        for leaf, (_shape, dtype) in leaves.items():
            value = parts[part][leaf]
            if value.dtype == dtype:
                continue
            if dtype.kind in "iu" and value.size and not np.can_cast(value.dtype, dtype):
                low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
                if value.min() < low or value.max() > high:
                    raise FieldValueError(
                        f"{part} field {leaf or '(root)'!r}: values span [{value.min()}, {value.max()}], "
                        f"expected values that {dtype} holds ([{low}, {high}], the space's dtype)"
                    )
            parts[part][leaf] = value.astype(dtype)
    return parts


def _per_step(value: np.ndarray, name: str, steps: int) -> np.ndarray:
    """Return ``value`` (``[steps, *item]`` with one element per item) as ``[steps]``, the shape Minari stores.

    Raises:
        DatasetMismatchError: An item holds more than one element.
    """
    if value.ndim == 1:
        return value
    if int(np.prod(value.shape[1:], dtype=np.int64)) != 1:
        raise DatasetMismatchError(
            f"field {name!r}: expected one value per step for Minari, received items of shape {value.shape[1:]}"
        )
    return value.reshape(steps)


def _require_field(name: str, have: Any, role: str) -> None:
    """Raise DatasetFieldMissingError unless the buffer has field ``name``."""
    if name not in have:
        raise DatasetFieldMissingError(
            f"{role} field {name!r} is not in the buffer, whose fields are {sorted(have)}; "
            "name it with MinariFields(...)"
        )


class _TransitionEpisodes:
    """The episodes of a transition buffer, in age order."""

    def __init__(self, buffer: TransitionBuffer, fields: MinariFields):
        """Find the fields and the episode ends."""
        self.buffer, self.fields = buffer, fields
        storage = buffer.storage
        names = [*storage.specs, *buffer.next_obs_fields]
        for name, role in ((fields.observation, "observation"), (fields.next_observation, "next observation")):
            if not leaf_names(name, names):
                _require_field(name, names, role)
        for name, role in ((fields.action, "action"), (fields.reward, "reward")):
            if not leaf_names(name, names):
                _require_field(name, names, role)
        for flag in (fields.terminated, fields.truncated):
            if flag is not None:
                _require_field(flag, names, "episode end")
        shapes = {n: s.shape for n, s in storage.specs.items()}
        dtypes = {n: numpy_dtype(s.dtype) for n, s in storage.specs.items()}
        self.obs: Leaves = {
            leaf: (shapes[field_name(fields.observation, leaf)], dtypes[field_name(fields.observation, leaf)])
            for leaf in leaf_names(fields.observation, names)
        }
        self.act: Leaves = {
            leaf: (shapes[field_name(fields.action, leaf)], dtypes[field_name(fields.action, leaf)])
            for leaf in leaf_names(fields.action, names)
        }
        next_leaves = sorted(leaf_names(fields.next_observation, names))
        if next_leaves != sorted(self.obs):
            raise DatasetFieldMissingError(
                f"next observation fields: expected the leaves of {fields.observation!r} {sorted(self.obs)}, "
                f"received {next_leaves}"
            )

    def _column(self, name: str) -> np.ndarray:
        """Return field ``name`` in age order (a view when the ring has not wrapped)."""
        buffer = self.buffer
        writer = buffer.writer
        parts = age_slices(writer, 0, writer.size)
        if name in buffer.next_obs_fields:
            slots = np.concatenate([np.arange(s.start, s.stop) for s in parts])
            return buffer.gather(slots, [name])[name].cpu().numpy()
        column = buffer.storage.columns[name]
        view = column.numpy() if column.device.type == "cpu" else column.cpu().numpy()
        return view[parts[0]] if len(parts) == 1 else np.concatenate([view[s] for s in parts])

    def episodes(self) -> Iterator[Episode]:
        """Yield each episode's steps and parts (the observations in a stage reused for the next episode)."""
        fields, size = self.fields, self.buffer.writer.size
        if size == 0:
            return
        obs = {leaf: self._column(field_name(fields.observation, leaf)) for leaf in self.obs}
        nxt = {leaf: self._column(field_name(fields.next_observation, leaf)) for leaf in self.obs}
        act = {leaf: self._column(field_name(fields.action, leaf)) for leaf in self.act}
        reward = _per_step(self._column(fields.reward), fields.reward, size)
        flags = {}
        for part, name in (("terminations", fields.terminated), ("truncations", fields.truncated)):
            flag = _per_step(self._column(name), name, size) != 0 if name is not None else np.zeros(size, bool)
            flags[part] = flag
        ends = flags["terminations"] | flags["truncations"]
        ends[-1] = True
        stops = np.flatnonzero(ends) + 1  # episodes by their flags; resets inside them are found below
        starts = np.concatenate([[0], stops[:-1]])
        columns = {
            **{("actions", leaf): value for leaf, value in act.items()},
            ("rewards", ""): reward,
            **{(part, ""): value for part, value in flags.items()},
        }
        for steps, observations, rows in gathered_episodes(obs, nxt, columns, starts.tolist(), stops.tolist()):
            parts: dict[str, dict[str, np.ndarray]] = {"observations": observations}
            for (part, leaf), value in rows.items():
                parts.setdefault(part, {})[leaf] = value
            yield steps, parts


class _StoredEpisodes:
    """The episodes of an episode buffer, in age order (``T + 1`` steps hold ``T`` transitions)."""

    _BATCH = 256  # episodes read per get()

    def __init__(self, buffer: EpisodeBuffer, fields: MinariFields):
        """Find the fields."""
        self.buffer, self.fields = buffer, fields
        scheme = buffer.scheme
        names = [n for n in scheme if scheme[n].per_step]
        for name, role in ((fields.observation, "observation"), (fields.action, "action"), (fields.reward, "reward")):
            if not leaf_names(name, names):
                _require_field(name, names, role)
        for flag in (fields.terminated, fields.truncated):
            if flag is not None:
                _require_field(flag, names, "episode end")

        def leaves(base: str) -> Leaves:
            return {
                leaf: (scheme.item_shape(field_name(base, leaf)), numpy_dtype(scheme[field_name(base, leaf)].dtype))
                for leaf in leaf_names(base, names)
            }

        self.obs, self.act = leaves(fields.observation), leaves(fields.action)

    def episodes(self) -> Iterator[Episode]:
        """Yield each stored episode of at least one step (its observation) as steps and parts."""
        buffer, fields = self.buffer, self.fields
        writer = buffer.writer
        order = np.concatenate([np.arange(s.start, s.stop) for s in age_slices(writer, 0, writer.size)])
        for first in range(0, order.size, self._BATCH):
            batch = buffer.get(order[first : first + self._BATCH])
            host = {name: value.cpu().numpy() for name, value in batch.items()}
            for k, length in enumerate(batch.lengths.tolist()):
                if length < 1:
                    continue  # no observation at all: nothing Minari can hold
                steps = length - 1
                parts: dict[str, dict[str, np.ndarray]] = {
                    "observations": {leaf: host[field_name(fields.observation, leaf)][k, :length] for leaf in self.obs},
                    "actions": {leaf: host[field_name(fields.action, leaf)][k, :steps] for leaf in self.act},
                    "rewards": {"": _per_step(host[fields.reward][k, :steps], fields.reward, steps)},
                }
                for part, name in (("terminations", fields.terminated), ("truncations", fields.truncated)):
                    flag = (
                        _per_step(host[name][k, :steps], name, steps) != 0
                        if name is not None
                        else np.zeros(steps, bool)
                    )
                    parts[part] = {"": flag}
                yield steps, parts
