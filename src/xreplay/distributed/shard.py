"""ShardCore: one replay shard, a local xreplay buffer served through plain data.

This is the one place that calls the buffers' methods on behalf of a
distributed replay: :func:`_describe`, :func:`_state` and the methods of
:class:`ShardCore` below, and :class:`~xreplay.distributed.rows.RowReader`,
which reads a transition shard's draws straight into its replies. A Ray actor runs a ``ShardCore`` as it is (see
:mod:`xreplay.distributed.ray_backend`); the in-process backend of the tests
calls it directly. Every reply carries the shard's :class:`ShardState`.

Faults: with :class:`~xreplay.distributed.protocol.ShardCheckpoints` the shard
saves its buffer (xreplay's checkpoint format, incrementally) and keeps a
small counter file up to date after every write. When the process dies and
the shard is started again with the same arguments (Ray's ``max_restarts``),
it finds the counter file of its own run, loads its last checkpoint and
counts as lost the items written after that checkpoint: the counter file's
count minus the checkpoint writer's count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.distributed.packing import pack
from xreplay.distributed.protocol import (
    ShardCheckpoints,
    ShardDraw,
    ShardInfo,
    ShardState,
    decode_updates,
    encode_indices,
    index_head,
)
from xreplay.distributed.rows import RowReader
from xreplay.errors import CheckpointError, CheckpointMismatchError, ShardFactoryError
from xreplay.persistence import load, save
from xreplay.samplers.prioritized import PrioritizedSampler

__all__ = ["ShardCore", "check_checkpoint_directory", "shard_checkpoint_path"]

_MAGIC = 0x78725348415244  # "xrSHARD": marks a counter file
_NO_INDICES = np.zeros(0, dtype=np.int64)


def shard_checkpoint_path(directory: str | Path, shard: int) -> Path:
    """Return the checkpoint directory of ``shard`` under ``directory``."""
    return Path(directory) / f"shard-{int(shard):03d}"


def check_checkpoint_directory(checkpoints: ShardCheckpoints, num_shards: int) -> None:
    """Create the directory; refuse one holding shard checkpoints unless ``resume`` is set.

    Raises:
        CheckpointError: The directory holds shard checkpoints and ``resume`` is False.
    """
    directory = Path(checkpoints.directory)
    directory.mkdir(parents=True, exist_ok=True)
    if checkpoints.resume:
        return
    found = [p.name for p in sorted(directory.glob("shard-*")) if (p / "metadata.json").exists()]
    if found:
        raise CheckpointError(
            f"checkpoint directory {directory} already holds shard checkpoints ({', '.join(found[:3])}...); "
            f"pass ShardCheckpoints(..., resume=True) to start from them, or use another directory",
            directory,
        )


class _CounterFile:
    """Six int64 counters in a memory-mapped file: survives the death of the process that writes it."""

    def __init__(self, path: Path):
        """Map ``path``, creating it zeroed if needed."""
        if not path.exists() or path.stat().st_size != 48:
            np.zeros(6, dtype=np.int64).tofile(path)
        self.values = np.memmap(path, dtype=np.int64, mode="r+", shape=(6,))

    def previous(self, run_id: int) -> tuple[int, int, int, int] | None:
        """Return ``(written, epoch, lost, size)`` left by this run, or None (no file, or another run's)."""
        v = self.values
        if int(v[0]) != _MAGIC or int(v[1]) != run_id:
            return None
        return int(v[2]), int(v[3]), int(v[4]), int(v[5])

    def store(self, run_id: int, written: int, epoch: int, lost: int, size: int) -> None:
        """Record the counters (a plain store into the page cache: no system call)."""
        self.values[:] = (_MAGIC, run_id, written, epoch, lost, size)


def _build(factory: Callable[[], Any], shard: int) -> TransitionBuffer | EpisodeBuffer:
    """Call ``factory`` and check that it returned a native buffer."""
    buffer = factory()
    if not isinstance(buffer, (TransitionBuffer, EpisodeBuffer)):
        raise ShardFactoryError(
            f"shard {shard}: the factory {factory!r} returned {type(buffer).__name__}; it must return a "
            f"TransitionBuffer or an EpisodeBuffer (uniform or prioritized)"
        )
    return buffer


def _restore(path: Path, fresh: TransitionBuffer | EpisodeBuffer) -> TransitionBuffer | EpisodeBuffer:
    """Load the checkpoint at ``path`` as a buffer of ``fresh``'s kind, device and options."""
    if isinstance(fresh, TransitionBuffer):
        options: dict[str, Any] = {} if fresh.n_step is None else {"n_step": fresh.n_step}  # keep the factory's
        buffer = load(path, kind=TransitionBuffer, device=fresh.device, **options)
    else:
        buffer = load(path, kind=EpisodeBuffer, device=fresh.device, scheme=fresh.scheme)
    if not isinstance(buffer, type(fresh)):
        raise CheckpointMismatchError(f"{path} holds no {type(fresh).__name__}", path)
    return buffer


def _describe(buffer: TransitionBuffer | EpisodeBuffer) -> ShardInfo:
    """Return what a client needs to know about ``buffer`` once."""
    if isinstance(buffer, TransitionBuffer):
        sampler = buffer.sampler
        prioritized = isinstance(sampler, PrioritizedSampler)
        beta = sampler.beta if isinstance(sampler, PrioritizedSampler) else None
        return ShardInfo("transitions", prioritized, buffer.capacity, beta)
    per_step = tuple(name for name, field in buffer.scheme.items() if field.per_step)
    return ShardInfo("episodes", False, buffer.capacity, None, buffer.max_seq_length, per_step)


def _host(value: torch.Tensor) -> np.ndarray:
    """Return a tensor's values as a numpy array (a view on CPU)."""
    return value.detach().cpu().numpy()


class ShardCore:
    """One replay shard: a local buffer built by ``factory``, read and written with numpy arrays.

    Args:
        factory: A picklable callable returning a fresh :class:`TransitionBuffer`
            or :class:`EpisodeBuffer` (called again on every restart).
        shard: The shard's number.
        checkpoints: Where and how often to save, or None (a restart then starts empty).
        run_id: The replay's run number: a restart recognises its own counter file by it.
        on_delete: Called with the number of items the buffer stops holding (ring overwrites,
            items lost by a restart): the cluster's rate limiter counts them as deleted.
        restore_from: A checkpoint directory to start from (a saved replay's shard).

    Example:
        >>> shard = ShardCore(lambda: TransitionBuffer(8, sampler="prioritized", seed=0), shard=0)
        >>> shard.write({"obs": np.arange(4.0)}).size
        4
        >>> draw = shard.sample(np.array([2, 1]))
        >>> draw.slots.shape, draw.leaves.tolist(), draw.state.mass
        ((3,), [1.0, 1.0, 1.0], 4.0)
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        shard: int,
        checkpoints: ShardCheckpoints | None = None,
        run_id: int = 0,
        on_delete: Callable[[int], Any] | None = None,
        restore_from: str | None = None,
    ):
        """Build (or restore) the buffer."""
        self.shard = int(shard)
        self._init_error: Exception | None = None
        try:
            self._start(factory, checkpoints, run_id, on_delete, restore_from)
        except Exception as exc:  # kept and raised by every call: a process's start cannot return an error
            self._init_error = exc

    def _start(
        self,
        factory: Callable[[], Any],
        checkpoints: ShardCheckpoints | None,
        run_id: int,
        on_delete: Callable[[int], Any] | None,
        restore_from: str | None,
    ) -> None:
        """Build the buffer, or restore it after a restart of this run."""
        self.run_id = int(run_id)
        self._checkpoints = checkpoints
        self._on_delete = on_delete
        self.epoch = self.lost = self.checkpoints_made = self._serial = 0
        buffer = _build(factory, self.shard)
        self._counter: _CounterFile | None = None
        path = self._path = None if checkpoints is None else shard_checkpoint_path(checkpoints.directory, self.shard)
        previous = None
        if path is not None:
            self._counter = _CounterFile(path.with_name(path.name + ".state"))
            previous = self._counter.previous(self.run_id)
        saved = path is not None and (path / "metadata.json").exists()
        if previous is not None:  # a restart of this run: back to the last checkpoint
            written, epoch, lost, size = previous
            if saved:
                buffer = _restore(path, buffer)  # type: ignore[arg-type]
            self.epoch, self.lost = epoch + 1, lost + max(0, written - buffer.writer.writes)
            self._deleted(size - len(buffer))
        elif restore_from is not None:
            buffer = _restore(Path(restore_from), buffer)
        elif saved and checkpoints is not None and checkpoints.resume:
            buffer = _restore(path, buffer)  # type: ignore[arg-type]
        self.buffer = buffer
        self.info = _describe(buffer)
        self._rows = RowReader.of(buffer)
        self._checkpointed = buffer.writer.writes
        self._saved_at = time.monotonic()
        self._record()
        if restore_from is not None and checkpoints is not None and previous is None:
            self.checkpoint()  # a restart must find this start, not an empty directory

    # -- the shard protocol ----------------------------------------------------

    def _started(self) -> None:
        """Raise the error that stopped the shard from starting, if any."""
        if self._init_error is not None:
            raise self._init_error

    def describe(self) -> tuple[ShardInfo, ShardState]:
        """Return the buffer's description and the current state.

        Raises:
            ShardFactoryError: The factory did not build a native buffer (or any error of the start).
        """
        self._started()
        return self.info, self.state()

    def state(self) -> ShardState:
        """Return the shard's counters."""
        self._started()
        buffer = self.buffer
        sampler = buffer.sampler
        if isinstance(sampler, PrioritizedSampler):
            mass, min_leaf, stale = sampler.total(), sampler.tree.min(), sampler.stale_updates
        else:
            mass, min_leaf, stale = float(len(buffer)), float("inf"), 0
        self._serial += 1
        return ShardState(
            self.shard, self.epoch, len(buffer), mass, min_leaf, buffer.writer.writes,
            self.lost, self.checkpoints_made, self._checkpointed, stale, self._serial,
        )  # fmt: skip

    def write(self, data: dict[str, Any], lengths: Any = None, permit: Any = None) -> ShardState:
        """Write a batch (transitions: leading batch dimension; episodes: ``[n, t, ...]`` with ``lengths``).

        ``permit`` is the rate limiter's answer (unused: a Ray backend passes it so that the write waits for it).

        Raises:
            The buffer's own errors for a bad write (the buffer is then unchanged).
        """
        self._started()
        buffer = self.buffer
        size, writes = len(buffer), buffer.writer.writes
        if isinstance(buffer, TransitionBuffer):
            buffer.extend(data)
        else:
            buffer.add(data, lengths)
        self._deleted(size + (buffer.writer.writes - writes) - len(buffer))  # held before + inserted - held now
        self._record()
        self._maybe_checkpoint()
        return self.state()

    def sample(self, counts: Any, updates: Any = None, replace: bool = True, permit: Any = None) -> ShardDraw:
        """Draw ``counts[j]`` items for each batch ``j`` of a request (episodes: without replacement per batch).

        A transition shard draws with replacement, so a client sends it the total (an int) rather
        than the per-batch counts. ``updates`` are priority updates applied first (encoded by
        :func:`~xreplay.distributed.protocol.encode_updates`; see :meth:`update_priorities`);
        ``permit`` is the rate limiter's answer (see :meth:`write`). The reply holds every array in
        one packed buffer (see :class:`~xreplay.distributed.protocol.ShardDraw`).

        Raises:
            InsufficientDataError: The shard holds too few items.
        """
        self._started()
        if updates is not None:
            self._update(*decode_updates(updates))
        if type(counts) is int:  # a transition request's total: no array to make (each call here starts cold)
            total = counts
        else:
            counts = np.asarray(counts, dtype=np.int64).reshape(-1)
            total = int(counts.sum())
        buffer = self.buffer
        if total == 0:
            return self._draw({}, {"indices": _NO_INDICES})
        if isinstance(buffer, TransitionBuffer):  # with replacement: one draw of every batch's items
            reader = self._rows
            if reader is not None and reader.serves():  # straight into the reply (see RowReader)
                data, field_layout, meta_layout = reader.draw(total, index_head(self.shard, self.epoch))
                return ShardDraw(self.state(), data, field_layout, meta_layout)
            batch = buffer.sample(total)
            meta: dict[str, Any] = {"indices": encode_indices(self.shard, self.epoch, batch.indices)}
            if self.info.prioritized:
                meta["generations"] = batch.generations
                meta["leaves"] = buffer.sampler.priorities(batch.indices)  # type: ignore[union-attr]
            return self._draw({name: _host(value) for name, value in batch.items()}, meta)
        size = len(buffer)
        per_batch = [total] if type(counts) is int else counts.tolist()
        parts = [buffer.sampler.sample(buffer.rng, c, size, replace).indices for c in per_batch if c]  # per batch
        slots = np.concatenate(parts) if len(parts) > 1 else parts[0]
        episodes = buffer.get(slots)
        fields = {name: _host(value) for name, value in episodes.items() if name != "filled"}
        indices = encode_indices(self.shard, self.epoch, slots)
        return self._draw(fields, {"indices": indices, "lengths": _host(episodes.lengths)})

    def _draw(self, fields: dict[str, np.ndarray], meta: dict[str, np.ndarray]) -> ShardDraw:
        """Return a reply holding ``fields`` and ``meta`` in one packed buffer."""
        data, (field_layout, meta_layout) = pack(fields, meta)
        return ShardDraw(self.state(), data, field_layout, meta_layout)

    def update_priorities(self, updates: Any) -> tuple[int, ShardState]:
        """Apply a batch of priority updates; return the number skipped as stale and the state.

        Args:
            updates: Slots in this shard, their new priorities (checked by the client) and the
                generations seen when sampled (or none: update whatever the slots hold), encoded by
                :func:`~xreplay.distributed.protocol.encode_updates`.
        """
        self._started()
        return self._update(*decode_updates(updates)), self.state()

    def _update(self, slots: np.ndarray, priorities: np.ndarray, generations: np.ndarray | None) -> int:
        """Apply priority updates (writable arrays: the tree's compiled kernels take them); return those stale."""
        buffer = self.buffer
        if not isinstance(buffer, TransitionBuffer):
            raise TypeError("update_priorities needs a prioritized transition shard")
        return buffer.update_priorities(slots, priorities, "current" if generations is None else generations)

    def checkpoint(self) -> ShardState:
        """Save the buffer to the shard's checkpoint directory now.

        Raises:
            CheckpointError: The shard has no checkpoint directory, or the save failed.
        """
        self._started()
        if self._path is None:
            raise CheckpointError(
                f"shard {self.shard} has no checkpoint directory: pass checkpoints=ShardCheckpoints(...)"
            )
        save(self.buffer, self._path)
        self.checkpoints_made += 1
        self._checkpointed = self.buffer.writer.writes
        self._saved_at = time.monotonic()
        return self.state()

    def save(self, path: str) -> ShardState:
        """Save the buffer as a checkpoint at ``path`` (a replay's :meth:`save`)."""
        self._started()
        save(self.buffer, path)
        return self.state()

    def ping(self) -> int:
        """Return the shard's number (a liveness probe)."""
        return self.shard

    # -- bookkeeping -----------------------------------------------------------

    def _record(self) -> None:
        """Update the counter file after a write."""
        if self._counter is not None:
            buffer = self.buffer
            self._counter.store(self.run_id, buffer.writer.writes, self.epoch, self.lost, len(buffer))

    def _deleted(self, n: int) -> None:
        """Tell the rate limiter that ``n`` items left the buffer."""
        if n > 0 and self._on_delete is not None:
            self._on_delete(int(n))

    def _maybe_checkpoint(self) -> None:
        """Save when the policy's interval has passed."""
        policy = self._checkpoints
        if policy is None:
            return
        items = policy.every_items is not None and self.buffer.writer.writes - self._checkpointed >= policy.every_items
        if items or (policy.every_s is not None and time.monotonic() - self._saved_at >= policy.every_s):
            self.checkpoint()
