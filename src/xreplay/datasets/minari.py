"""Minari datasets in and out of buffers.

:func:`from_minari` builds a :class:`TransitionBuffer` (one row per step, with ``next_obs``) or an
:class:`EpisodeBuffer` (one slot per episode) from a local Minari dataset; :func:`to_minari`
writes a buffer as a Minari dataset that ``minari.load_dataset`` reads back identically.
Terminations and truncations stay apart. Nothing is downloaded: a dataset id is looked up in
Minari's local folder (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``).

Buffer fields are named by :class:`MinariFields`. A ``Dict`` observation space becomes one field
per key (``obs/observation``, ``obs/achieved_goal``, ``obs/desired_goal`` for goal-conditioned
gymnasium environments). In an :class:`EpisodeBuffer` an episode of ``T`` steps takes ``T + 1``
steps, as :meth:`EpisodeWriter.end` writes them: the observations at ``0 .. T`` (step ``T``
holds the observation after the last action, the other fields are zero there), so its
``lengths`` entry is ``T + 1``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.datasets._common import require, torch_dtype
from xreplay.datasets._minari_hdf5 import MAIN_FILE, EpisodeFileReader
from xreplay.datasets._minari_sources import EpisodeSink, IteratedEpisodes, TransitionSink
from xreplay.datasets.spaces import Leaves, check_leaves, field_name, space_leaves
from xreplay.errors import DatasetCorruptError, DatasetError, DatasetMismatchError
from xreplay.scheme import Field, Scheme

__all__ = ["MinariFields", "from_minari"]

_STAGE_BYTES = 64 << 20  # rows staged before each write into a new buffer


@dataclasses.dataclass(frozen=True)
class MinariFields:
    """The buffer fields that hold each part of a Minari step.

    ``terminated`` or ``truncated`` set to None: the buffer has no such field (written to Minari as
    all false). Nested observation or action fields (``obs/x``) hold the entries of a Dict space.

    Example:
        >>> MinariFields(action="act", reward="rew", terminated="done", truncated=None).reward
        'rew'
    """

    observation: str = "obs"
    action: str = "action"
    reward: str = "reward"
    terminated: str | None = "terminated"
    truncated: str | None = "truncated"
    next_observation: str = "next_obs"


DEFAULT_FIELDS = MinariFields()


# -- reading ---------------------------------------------------------------------------------------


def from_minari(
    source: Any,
    kind: str = "transitions",
    *,
    buffer: TransitionBuffer | EpisodeBuffer | None = None,
    fields: MinariFields = DEFAULT_FIELDS,
    capacity: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    observation_space: Any = None,
    action_space: Any = None,
) -> TransitionBuffer | EpisodeBuffer:
    """Return a buffer holding the episodes of a local Minari dataset, in dataset order.

    Args:
        source: A dataset id (looked up locally, never downloaded), a dataset folder (the one
            holding ``data/``, or ``data/`` itself), or a ``minari.MinariDataset``.
        kind: ``"transitions"`` (a :class:`TransitionBuffer`, ``next_obs`` included) or ``"episodes"``.
        buffer: A buffer to add to instead of a new one; checked against the dataset first and
            written in one call, so a failure leaves it unchanged.
        fields: Buffer field names.
        capacity: Capacity of a new buffer (default: the dataset's steps or episodes).
        seed: Seed of a new buffer's random generator.
        device: Device of a new buffer.
        observation_space: When given, the dataset's observation space must have its fields, shapes and dtypes.
        action_space: The same for actions.

    Raises:
        DatasetError: No such dataset.
        DatasetMismatchError: The spaces differ from the given ones or from ``buffer``'s fields.
        DatasetFieldMissingError: An episode lacks a part (observations, actions, rewards, ...).
        DatasetCorruptError: A part has the wrong number of rows or cannot be read.
    """
    if kind not in ("transitions", "episodes"):
        raise ValueError(f"kind must be 'transitions' or 'episodes', received {kind!r}")
    dataset = _open(source)
    where = str(dataset.storage.data_path)
    obs_leaves = space_leaves(dataset.observation_space, "observation")
    act_leaves = space_leaves(dataset.action_space, "action")
    if observation_space is not None:
        check_leaves(space_leaves(observation_space, "observation"), obs_leaves, "observation", "the given space")
    if action_space is not None:
        check_leaves(space_leaves(action_space, "action"), act_leaves, "action", "the given space")
    source_episodes = _episode_source(dataset, obs_leaves, act_leaves)
    try:
        lengths = source_episodes.lengths()
        spec = _field_spec(fields, obs_leaves, act_leaves, source_episodes, kind, lengths)
        sink = _make_sink(kind, buffer, spec, lengths, capacity, seed, device, where)
        items = {(p, leaf): shape for (p, leaf, _f, _n), shape in spec.items.items()}
        for steps, copy in zip(lengths, source_episodes.episodes(lengths, items), strict=True):
            sink.episode(int(steps), copy)
        return sink.finish()
    finally:
        source_episodes.close()


def _open(source: Any) -> Any:
    """Return the MinariDataset of ``source`` (an instance, a folder or a local dataset id)."""
    minari = require("minari")
    if isinstance(source, minari.MinariDataset):
        return source
    folder = Path(source)
    for data in (folder, folder / "data"):
        if (data / "metadata.json").is_file():
            try:
                return minari.MinariDataset(data)
            except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
                raise DatasetCorruptError(f"{data}: Minari cannot open the dataset ({e})", data) from e
    if folder.exists():
        raise DatasetError(f"{folder} holds no Minari dataset (no metadata.json in it or in data/)", folder)
    try:
        return minari.load_dataset(str(source), download=False)
    except (FileNotFoundError, ValueError) as e:
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise DatasetError(
            f"no local Minari dataset {source!r} under {root} (set MINARI_DATASETS_PATH, or pass its folder): {e}"
        ) from e


@dataclasses.dataclass
class _Spec:
    """Where each part of a Minari step goes: (part, leaf, field, row offset) -> item shape, and field dtypes."""

    items: dict[tuple[str, str, str, int], tuple[int, ...]]
    dtypes: dict[str, np.dtype]
    shapes: dict[str, tuple[int, ...]]


def _field_spec(fields: MinariFields, obs: Leaves, act: Leaves, source: Any, kind: str, lengths: np.ndarray) -> _Spec:
    """Return the buffer fields filled from each dataset part."""
    items: dict[tuple[str, str, str, int], tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    for leaf, (shape, dtype) in obs.items():
        items[("observations", leaf, field_name(fields.observation, leaf), 0)] = shape
        dtypes[field_name(fields.observation, leaf)] = dtype
        if kind == "transitions":  # next_obs: the same rows, one later
            items[("observations", leaf, field_name(fields.next_observation, leaf), 1)] = shape
            dtypes[field_name(fields.next_observation, leaf)] = dtype
    for leaf, (shape, dtype) in act.items():
        items[("actions", leaf, field_name(fields.action, leaf), 0)] = shape
        dtypes[field_name(fields.action, leaf)] = dtype
    for part, name in (
        ("rewards", fields.reward),
        ("terminations", fields.terminated),
        ("truncations", fields.truncated),
    ):
        if name is not None:
            items[(part, "", name, 0)] = ()
            dtypes[name] = source.dtype(part) if len(lengths) else np.dtype(np.float64 if part == "rewards" else bool)
    shapes = {f: shape for (_p, _l, f, _o), shape in items.items()}
    return _Spec(items, dtypes, shapes)


def _episode_source(dataset: Any, obs: Leaves, act: Leaves) -> Any:
    """Return a reader of the dataset's episodes: h5py directly for HDF5 data, Minari's iteration otherwise."""
    storage = dataset.storage
    images = storage.jpeg_encoding and any(len(s) in (2, 3) and d == np.uint8 for s, d in {**obs, **act}.values())
    if storage.FORMAT != "hdf5" or images:  # JPEG-encoded images need Minari's decoder
        return IteratedEpisodes(dataset)
    return EpisodeFileReader(Path(storage.data_path) / MAIN_FILE, np.asarray(dataset.episode_indices))


def _make_sink(
    kind: str, buffer: Any, spec: _Spec, lengths: np.ndarray, capacity: int | None, seed: Any, device: str, where: str
) -> Any:
    """Return the writer of episodes into ``buffer`` (checked) or into a new buffer."""
    steps = int(lengths.sum())
    if kind == "transitions":
        if buffer is None:
            new = TransitionBuffer(capacity or max(steps, 1), seed=seed, device=device)
            return TransitionSink(new, spec, max(int(lengths.max(initial=0)), _stage_rows(spec)))
        if not isinstance(buffer, TransitionBuffer):
            raise DatasetMismatchError(f"kind='transitions' fills a TransitionBuffer, received {type(buffer).__name__}")
        _check_transition_buffer(buffer, spec, where)
        return TransitionSink(buffer, spec, max(steps, 1))
    longest = int(lengths.max(initial=0)) + 1
    if buffer is None:
        scheme = Scheme({name: Field(shape, torch_dtype(spec.dtypes[name])) for name, shape in spec.shapes.items()})
        episodes = EpisodeBuffer(scheme, capacity or max(len(lengths), 1), longest, device=device, seed=seed)
        return EpisodeSink(episodes, spec, batch=max(1, _stage_rows(spec) // longest))
    if not isinstance(buffer, EpisodeBuffer):
        raise DatasetMismatchError(f"kind='episodes' fills an EpisodeBuffer, received {type(buffer).__name__}")
    _check_episode_buffer(buffer, spec, longest, where)
    return EpisodeSink(buffer, spec, batch=max(1, len(lengths)))


def _stage_rows(spec: _Spec) -> int:
    """Return the rows of about 64 MiB of staged fields."""
    row = sum(int(np.prod(shape, dtype=np.int64)) * spec.dtypes[f].itemsize for f, shape in spec.shapes.items())
    return max(1, _STAGE_BYTES // max(1, row))


def _check_transition_buffer(buffer: TransitionBuffer, spec: _Spec, where: str) -> None:
    """Raise DatasetMismatchError unless a transition buffer that has fields has these ones."""
    specs = buffer.storage.specs
    if not specs:
        return
    have: Leaves = {name: (s.shape, np.dtype(str(s.dtype).removeprefix("torch."))) for name, s in specs.items()}
    for name in buffer.next_obs_fields:
        have[name] = have[f"{buffer.next_obs_from}{name[len(buffer.next_obs) :]}"]
    wanted = {name: (shape, spec.dtypes[name]) for name, shape in spec.shapes.items()}
    check_leaves(have, wanted, f"dataset {where}", "the buffer's", same_kind=True)


def _check_episode_buffer(buffer: EpisodeBuffer, spec: _Spec, longest: int, where: str) -> None:
    """Raise DatasetMismatchError unless an episode buffer holds these fields and episodes this long."""
    scheme = buffer.scheme
    have: Leaves = {
        name: (scheme.item_shape(name), np.dtype(str(scheme[name].dtype).removeprefix("torch.")))
        for name in scheme.stored()
    }
    wanted = {name: (shape, spec.dtypes[name]) for name, shape in spec.shapes.items()}
    check_leaves(have, wanted, f"dataset {where}", "the buffer's", same_kind=True)
    if longest > buffer.max_seq_length:
        raise DatasetMismatchError(
            f"dataset {where}: episodes take up to {longest} steps (their observations included), "
            f"expected at most max_seq_length={buffer.max_seq_length} (the buffer's)"
        )
