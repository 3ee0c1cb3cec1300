"""SharedEpisodeBuffer: whole episodes in shared memory, written by worker processes, sampled by the learner.

Each slot holds one episode of up to ``max_seq_length`` steps in the row
layout of :class:`~xreplay.buffers.EpisodeBuffer` (per-agent groups, per-step
and per-episode fields, one-hot fields derived at read time), plus its length.
Runner processes add batches of finished episodes through a picklable
:class:`SharedEpisodeWriter`; the learner samples them uniformly (without
replacement, like PyMARL) or by priority (with replacement, like pymarl2's
prioritized buffer). The slot protocol is the transition buffer's: no torn
episode is ever sampled, a killed runner stalls no one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeBuffer, EpisodeSample
from xreplay.rate_limiters import RateLimiter
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.scheme import Scheme
from xreplay.shared.episode_fields import EpisodeFields
from xreplay.shared.layout import SlotLayout
from xreplay.shared.learner import Draw, LearnerSlots, make_sampler
from xreplay.shared.slots import Run
from xreplay.shared.snapshots import copy_rng, fresh_sampler, ring_order, snapshot_priorities
from xreplay.shared.surface import LearnerSurface
from xreplay.shared.writer import SlotWriter, check_item_priorities

__all__ = ["KIND", "SharedEpisodeBuffer", "SharedEpisodeSample", "SharedEpisodeWriter"]

KIND = "shared_episode_buffer"
"""The checkpoint kind of a shared episode buffer (see :mod:`xreplay.shared.episode_checkpoint`)."""


class SharedEpisodeSample(EpisodeSample):
    """An :class:`~xreplay.buffers.EpisodeSample` with the sampling metadata of a shared buffer.

    Attributes:
        weights: Importance weights (float32 tensor), or None when uniform.
        generations: Slot generations for :meth:`SharedEpisodeBuffer.update_priorities`, or None.
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: np.ndarray,
        lengths: np.ndarray,
        max_seq_length: int,
        weights: np.ndarray | None,
        generations: np.ndarray | None,
    ):
        """Wrap decoded fields and their metadata."""
        super().__init__(fields, torch.from_numpy(indices), torch.from_numpy(lengths), max_seq_length)
        self.weights = None if weights is None else torch.from_numpy(weights)
        self.generations = generations


class SharedEpisodeWriter:
    """A picklable handle that adds whole episodes to a :class:`SharedEpisodeBuffer` from any process."""

    def __init__(self, slots: SlotWriter, fields: EpisodeFields):
        """Wrap a slot attachment (use :meth:`SharedEpisodeBuffer.writer`)."""
        self._slots = slots
        self.fields = fields

    @property
    def closed(self) -> bool:
        """Return whether this handle or its buffer is closed."""
        return self._slots.closed

    def add(
        self, episodes: Mapping[str, Any], lengths: Any = None, priorities: Any = None, timeout: float | None = None
    ) -> np.ndarray:
        """Write a batch of whole episodes and return the slots they took.

        Args:
            episodes: Every stored field: per-step ``[n, t, *item]`` with ``t <= max_seq_length``,
                per-episode ``[n, *item]``.
            lengths: Steps each episode has (``<= t``); ``t`` for all by default.
            priorities: Initial priorities (finite, >= 0), one per episode; the largest so far when None.
            timeout: Seconds to wait for the rate limiter (the handle's default when None).

        Raises:
            UnknownFieldError: A key is unknown or derived, or a field is missing.
            FieldShapeError: A value or ``lengths`` has the wrong shape.
            FieldValueError: A value cannot be held by its field.
            PriorityError: A priority is NaN, infinite or negative.
            BufferClosedError: The handle or the buffer is closed.
        """
        slots = self._add(episodes, lengths, priorities, timeout, True)
        assert slots is not None
        return slots

    def try_add(self, episodes: Mapping[str, Any], lengths: Any = None, priorities: Any = None) -> np.ndarray | None:
        """Write the episodes if the rate limiter admits them now; return their slots, or None."""
        return self._add(episodes, lengths, priorities, None, False)

    def _add(
        self, episodes: Mapping[str, Any], lengths: Any, priorities: Any, timeout: float | None, block: bool
    ) -> np.ndarray | None:
        """Check everything, then reserve, copy, publish."""
        checked = self.fields.check(episodes, lengths)
        given = check_item_priorities(priorities, checked[2])
        fields = self.fields

        def copy(views: dict[str, np.ndarray], runs: list[Run]) -> None:
            fields.copy(views, runs, checked)

        runs = self._slots.write(checked[2], copy, given, timeout, block)
        if runs is None:
            return None
        parts = [np.arange(slot, slot + count, dtype=np.int64) for slot, _item, count, _lap in runs]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def close(self) -> None:
        """Detach; later writes through this handle raise BufferClosedError."""
        self._slots.close()


class SharedEpisodeBuffer(LearnerSurface):
    """A ring of whole episodes in shared memory: many runner processes, one learner.

    Thread-safe as :class:`~xreplay.shared.SharedTransitionBuffer`: writer handles may be shared by
    threads, and the learner's samples, priority updates and saves take the learner's lock.

    Args:
        scheme: The fields of an episode (e.g. ``Scheme.from_pymarl(...)`` with per-agent groups).
        capacity: Episodes kept; the oldest are overwritten first.
        max_seq_length: Steps per episode.
        sampler: ``"uniform"`` or ``"prioritized"`` (or a fresh :class:`~xreplay.samplers.PrioritizedSampler`).
        seed: Seed of the learner's random generator.
        rate_limiter: A limiter made with ``shared=True``, consulted per episode.
        name: Segment file name after ``xreplay-``.
        timeout: Default seconds writes and samples wait for the rate limiter.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> scheme = Scheme({"obs": Field((3,), group="agents"), "reward": Field((1,))}, groups={"agents": 2})
        >>> buf = SharedEpisodeBuffer(scheme, capacity=8, max_seq_length=5, seed=0)
        >>> _ = buf.writer().add({"obs": torch.ones(2, 4, 2, 3), "reward": torch.ones(2, 4, 1)}, lengths=[4, 2])
        >>> batch = buf.sample(2, truncate=True)
        >>> batch["obs"].shape, sorted(batch.lengths.tolist()), batch["filled"][:, :, 0].sum().item()
        (torch.Size([2, 4, 2, 3]), [2, 4], 6)
        >>> buf.close()
    """

    handles_go_to = "runner processes"

    def __init__(
        self,
        scheme: Scheme,
        capacity: int,
        max_seq_length: int,
        sampler: str | PrioritizedSampler = "uniform",
        seed: int | None = None,
        rate_limiter: RateLimiter | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ):
        """Create the segment and the learner's sampler."""
        self.fields = EpisodeFields(scheme, max_seq_length)
        layout = SlotLayout(capacity, self.fields.arrays())
        description = {"kind": "episodes", **self.fields.describe()}
        self._learner = LearnerSlots(
            layout, description, make_sampler(sampler, layout.capacity), seed, rate_limiter, name, timeout
        )
        self._writer: SharedEpisodeWriter | None = None

    @property
    def scheme(self) -> Scheme:
        """Return the scheme."""
        return self.fields.scheme

    @property
    def max_seq_length(self) -> int:
        """Return the steps per episode."""
        return self.fields.max_seq_length

    def writer(self, timeout: float | None = None) -> SharedEpisodeWriter:
        """Return a new picklable writer handle for a runner process."""
        handle = self._learner.handle()
        if timeout is not None:
            handle.timeout = timeout
        return SharedEpisodeWriter(handle, self.fields)

    def add(self, episodes: Mapping[str, Any], lengths: Any = None, priorities: Any = None) -> np.ndarray:
        """Write episodes from the learner's process; see :meth:`SharedEpisodeWriter.add`."""
        if self._writer is None:
            self._writer = self.writer()
        return self._writer.add(episodes, lengths, priorities)

    def __len__(self) -> int:
        """Return the number of published episodes."""
        return self._learner.refresh()

    def can_sample(self, n: int) -> bool:
        """Return whether ``n`` episodes can be sampled without replacement now."""
        return len(self) >= n

    def sample(
        self, n: int, replace: bool | None = None, truncate: bool = False, timeout: float | None = None
    ) -> SharedEpisodeSample:
        """Sample ``n`` whole episodes.

        Args:
            n: Number of episodes.
            replace: With replacement; by default without when uniform, with when prioritized.
            truncate: Cut the steps to the longest episode sampled.
            timeout: Seconds to wait for the rate limiter.

        Raises:
            InsufficientDataError: Fewer than ``n`` episodes without replacement, or none.
        """
        draw = self._learner.sample(n, self._replace(replace), timeout)
        assert draw is not None
        return self._batch(draw, truncate)

    def try_sample(self, n: int, replace: bool | None = None, truncate: bool = False) -> SharedEpisodeSample | None:
        """Sample if the rate limiter allows it now; None otherwise."""
        draw = self._learner.sample(n, self._replace(replace), None, block=False)
        return None if draw is None else self._batch(draw, truncate)

    def _replace(self, replace: bool | None) -> bool:
        """Return the replacement rule (prioritized sampling always draws with replacement)."""
        if self.sampler is not None:
            if replace is False:
                raise ValueError("prioritized sampling draws with replacement; pass replace=None or True")
            return True
        return bool(replace)

    def _batch(self, draw: Draw, truncate: bool) -> SharedEpisodeSample:
        """Decode a draw's rows."""
        rows, lengths = draw.rows
        fields, steps = self.fields.decode(rows, lengths, truncate)
        return SharedEpisodeSample(fields, draw.indices, lengths, steps, draw.weights, draw.generations)

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled episodes; return how many were skipped as overwritten since.

        Raises:
            TypeError: The buffer samples uniformly.
            PriorityError: A priority is NaN, infinite or negative; nothing is updated.
        """
        if isinstance(indices, SharedEpisodeSample):
            indices, generations = indices.indices, indices.generations
        return self._update_priorities(indices, priorities, generations)

    # -- checkpoints ------------------------------------------------------------

    def snapshot(self) -> EpisodeBuffer:
        """Return a local :class:`~xreplay.buffers.EpisodeBuffer` holding the published episodes, oldest first."""
        local, _kept = self._snapshot()
        return local

    def _snapshot(self) -> tuple[EpisodeBuffer, np.ndarray]:
        """Return the local copy and the slots it copied, in order."""
        local = EpisodeBuffer(self.scheme, self.capacity, self.max_seq_length)
        stored = self.scheme.stored()

        def consume(rows: list[np.ndarray]) -> None:
            fields, _steps = self.fields.decode(rows[0], rows[1], truncate=False)
            local.add({name: fields[name] for name in stored}, lengths=torch.from_numpy(rows[1]))

        with self._learner.lock:
            kept = self._learner.copy_valid(consume)
            copy_rng(self._learner.rng, local)
        return local, kept

    def save(self, path: str | os.PathLike[str], fsync: bool = True) -> Any:
        """Save the published episodes (and their priorities) as a ``shared_episode_buffer`` checkpoint.

        The checkpoint holds an ``episode_buffer`` state plus the priorities; :meth:`load` (or
        :func:`xreplay.persistence.load`) opens it in a new shared buffer.
        """
        from xreplay.persistence import save

        return save(self, path, incremental=False, fsync=fsync)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> SharedEpisodeBuffer:
        """Return a new shared buffer holding a checkpoint :meth:`save` wrote (``options`` as ``__init__``)."""
        from xreplay.persistence import load

        buffer = load(path, kind=KIND, **options)
        assert isinstance(buffer, SharedEpisodeBuffer)
        return buffer

    @classmethod
    def from_buffer(
        cls, buffer: EpisodeBuffer, priorities: PrioritizedSampler | None = None, **options: Any
    ) -> SharedEpisodeBuffer:
        """Return a new shared buffer holding ``buffer``'s episodes, oldest first (``options`` as ``__init__``).

        Args:
            buffer: A local episode buffer.
            priorities: A sampler holding priorities of ``buffer``'s slots (then the new buffer is prioritized
                with its settings, unless ``options`` give a sampler).
            **options: The keyword arguments of ``__init__`` (``seed``, ``rate_limiter``, ``name``...).
        """
        if priorities is not None and "sampler" not in options:
            options["sampler"] = fresh_sampler(priorities, buffer.capacity)
        shared = cls(buffer.scheme, buffer.capacity, buffer.max_seq_length, **options)
        order = ring_order(buffer.writer)
        stored = buffer.scheme.stored()
        writer = shared.writer()
        for start in range(0, order.size, 1024):
            part = buffer.get(order[start : start + 1024])
            writer.add({name: part[name] for name in stored}, lengths=part.lengths)
        writer.close()
        learner = shared._learner
        with learner.lock:
            learner.drain()
            copy_rng(buffer.rng, learner)
            if learner.sampler is not None and priorities is not None:
                snapshot_priorities(priorities, learner.sampler, order)
        return shared
