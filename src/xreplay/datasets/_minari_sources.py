"""Episodes read through Minari's own API, and the sinks that write read episodes into buffers.

A reader yields, per episode, ``copy(part, leaf, rows, out, out_rows)``, which puts rows
``rows`` of one part of the episode into ``out[out_rows]``; a sink stages episodes in arrays
of about 64 MiB and writes each full stage into its buffer with one call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from xreplay.errors import DatasetCorruptError, DatasetFieldMissingError
from xreplay.storage.nested import flatten

__all__ = ["EpisodeSink", "IteratedEpisodes", "TransitionSink"]


class IteratedEpisodes:
    """Episodes of any Minari dataset (Arrow storage, JPEG-encoded images) through ``iterate_episodes``.

    Args:
        dataset: A ``minari.MinariDataset``.
    """

    def __init__(self, dataset: Any):
        """Keep the dataset."""
        self.dataset = dataset
        self.where = str(dataset.storage.data_path)

    def lengths(self) -> np.ndarray:
        """Return the steps of every episode, from the episodes' metadata."""
        metadata = self.dataset.storage.get_episode_metadata(self.dataset.episode_indices)
        return np.array([int(m["total_steps"]) for m in metadata], dtype=np.int64)

    def dtype(self, part: str) -> np.dtype:
        """Return the dtype of a one-array part in the first episode."""
        first = next(iter(self.dataset.iterate_episodes(self.dataset.episode_indices[:1])))
        return np.asarray(getattr(first, part)).dtype

    def episodes(self, lengths: np.ndarray, items: Mapping[tuple[str, str], tuple[int, ...]]) -> Iterator[Any]:
        """Yield a copy function per episode (see the module docstring), after checking every part's shape."""
        episodes = self.dataset.iterate_episodes()
        for episode_id, steps in zip(self.dataset.episode_indices, lengths, strict=True):
            try:
                episode = next(episodes)
            except KeyError as e:
                raise DatasetFieldMissingError(f"{self.where}: episode {episode_id} lacks {e}", self.where) from e
            arrays: dict[tuple[str, str], np.ndarray] = {}
            for part in {p for p, _leaf in items}:
                value = getattr(episode, part)
                leaves = flatten(value) if isinstance(value, Mapping) else {"": value}
                arrays.update({(part, leaf): np.asarray(v) for leaf, v in leaves.items()})
            for (part, leaf), item in items.items():
                rows = int(steps) + 1 if part == "observations" else int(steps)
                name = f"{part}/{leaf}" if leaf else part
                if (part, leaf) not in arrays:
                    raise DatasetFieldMissingError(
                        f"{self.where}: episode {episode_id} has no {name!r} (expected shape {(rows, *item)})",
                        self.where,
                    )
                if arrays[(part, leaf)].shape != (rows, *item):
                    raise DatasetCorruptError(
                        f"{self.where}: episode {episode_id} {name!r}: expected shape {(rows, *item)}, "
                        f"received {arrays[(part, leaf)].shape}",
                        self.where,
                    )

            def copy(part: str, leaf: str, rows: slice, out: np.ndarray, out_rows: Any, _a: dict = arrays) -> None:
                out[out_rows] = _a[(part, leaf)][rows]

            yield copy

    def close(self) -> None:
        """Nothing to release."""


class TransitionSink:
    """Stages steps (``next_obs`` from the observation rows one later) and extends a TransitionBuffer.

    Args:
        target: The buffer.
        spec: Which part goes to which field (see ``xreplay.datasets.minari``).
        rows: Steps per stage (at least the longest episode).
    """

    def __init__(self, target: Any, spec: Any, rows: int):
        """Allocate the stage."""
        self.target, self.items, self.rows = target, list(spec.items), rows
        self.stage = {f: np.empty((rows, *shape), dtype=spec.dtypes[f]) for f, shape in spec.shapes.items()}
        self.count = 0

    def episode(self, steps: int, copy: Any) -> None:
        """Stage one episode of ``steps`` steps."""
        if self.count + steps > self.rows:
            self._flush()
        if steps:
            at = np.s_[self.count : self.count + steps]
            for part, leaf, name, offset in self.items:
                copy(part, leaf, slice(offset, offset + steps), self.stage[name], at)
        self.count += steps

    def _flush(self) -> None:
        """Write the staged steps."""
        if self.count:
            self.target.extend({name: value[: self.count] for name, value in self.stage.items()})
        self.count = 0

    def finish(self) -> Any:
        """Write what is staged and return the buffer."""
        self._flush()
        return self.target


class EpisodeSink:
    """Stages episodes padded to the buffer's steps and adds them to an EpisodeBuffer.

    An episode of ``T`` steps is added with length ``T + 1``: its ``T + 1`` observations, and the
    other parts at steps ``0 .. T - 1``.

    Args:
        target: The buffer.
        spec: Which part goes to which field.
        batch: Episodes per stage.
    """

    def __init__(self, target: Any, spec: Any, batch: int):
        """Allocate the stage."""
        self.target, self.batch = target, batch
        self.items = [(p, leaf, name) for p, leaf, name, _offset in spec.items]
        steps = target.max_seq_length
        self.stage = {f: np.zeros((batch, steps, *shape), dtype=spec.dtypes[f]) for f, shape in spec.shapes.items()}
        self.lengths = np.zeros(batch, dtype=np.int64)
        self.count = 0

    def episode(self, steps: int, copy: Any) -> None:
        """Stage one episode of ``steps`` steps."""
        if self.count == self.batch:
            self._flush()
        for part, leaf, name in self.items:
            rows = steps + 1 if part == "observations" else steps
            if rows:
                copy(part, leaf, slice(0, rows), self.stage[name], np.s_[self.count, 0:rows])
        self.lengths[self.count] = steps + 1
        self.count += 1

    def _flush(self) -> None:
        """Add the staged episodes and clear the stage."""
        if self.count:
            self.target.add({k: v[: self.count] for k, v in self.stage.items()}, lengths=self.lengths[: self.count])
            for value in self.stage.values():
                value[: self.count] = 0
        self.count = 0

    def finish(self) -> Any:
        """Add what is staged and return the buffer."""
        self._flush()
        return self.target
