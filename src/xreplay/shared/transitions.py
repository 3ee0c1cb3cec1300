"""SharedTransitionBuffer: transitions in shared memory, written by worker processes, sampled by the learner.

The learner creates the buffer (and its segment in ``/dev/shm``) and hands
each worker process a :class:`SharedTransitionWriter` from :meth:`SharedTransitionBuffer.writer`;
the handle pickles cheaply (the segment's path, the fields, the rate limiter),
so it goes to ``multiprocessing`` or ``torch.multiprocessing`` processes as a
``Process`` argument under spawn or fork. Writers add transitions; the learner
samples and updates priorities. A sample never holds a half-written
transition, a writer killed mid-write leaves nothing visible and stalls no one,
and closing the buffer (or the learner's exit) removes the segment; see
:mod:`xreplay.shared` for the protocol and its guarantees.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.buffers.transitions import TransitionBuffer, TransitionSample
from xreplay.rate_limiters import RateLimiter
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.shared.layout import SlotLayout
from xreplay.shared.learner import LearnerSlots, make_sampler
from xreplay.shared.slots import Run
from xreplay.shared.snapshots import copy_rng, fresh_sampler, ring_order, snapshot_priorities
from xreplay.shared.surface import LearnerSurface
from xreplay.shared.transition_fields import TransitionFields
from xreplay.shared.writer import SlotWriter, check_item_priorities

if TYPE_CHECKING:
    from xreplay.persistence.checkpoint import SaveReport

__all__ = ["SharedTransitionBuffer", "SharedTransitionWriter"]


def _slots(runs: list[Run]) -> np.ndarray:
    """Return the slot of every written item, in item order."""
    if len(runs) == 1:
        slot, _item, count, _lap = runs[0]
        return np.arange(slot, slot + count, dtype=np.int64)
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(s, s + c, dtype=np.int64) for s, _i, c, _l in runs])


class SharedTransitionWriter:
    """A picklable handle that adds transitions to a :class:`SharedTransitionBuffer` from any process.

    Writes are checked in the writer's process exactly as a local
    :class:`~xreplay.buffers.TransitionBuffer` checks them; a refused write
    reserves nothing. Threads of one process may share a handle.
    """

    def __init__(self, slots: SlotWriter, fields: TransitionFields):
        """Wrap a slot attachment (use :meth:`SharedTransitionBuffer.writer`)."""
        self._slots = slots
        self.fields = fields

    @property
    def closed(self) -> bool:
        """Return whether this handle or its buffer is closed."""
        return self._slots.closed

    def add(self, transition: Mapping[str, Any], priority: float | None = None, timeout: float | None = None) -> int:
        """Write one transition (values without a batch dimension) and return its slot.

        Args:
            transition: Field name -> value, nested dicts allowed.
            priority: Initial priority (finite, >= 0); the largest so far when None.
            timeout: Seconds to wait for the rate limiter (the handle's default when None).

        Raises:
            UnknownFieldError: A field is missing or extra.
            FieldShapeError: An item shape differs from the buffer's.
            FieldValueError: A dtype of another kind, or integers outside the field's range.
            PriorityError: ``priority`` is NaN, infinite or negative.
            BufferClosedError: The handle or the buffer is closed.
            RateLimiterTimeout: The limiter did not admit the insert in time.
        """
        slots = self._write(transition, None if priority is None else [priority], timeout, False, True)
        assert slots is not None
        return int(slots[0])

    def extend(self, batch: Mapping[str, Any], priorities: Any = None, timeout: float | None = None) -> np.ndarray:
        """Write a batch (leading batch dimension) and return the slots of the items kept.

        Of a batch larger than the capacity only the last ``capacity`` items are kept.

        Raises:
            The errors of :meth:`add` (``priorities`` needs one value per item).
        """
        slots = self._write(batch, priorities, timeout, True, True)
        assert slots is not None
        return slots

    def try_add(self, transition: Mapping[str, Any], priority: float | None = None) -> int | None:
        """Write one transition if the rate limiter admits it now; return its slot, or None."""
        slots = self._write(transition, None if priority is None else [priority], None, False, False)
        return None if slots is None else int(slots[0])

    def try_extend(self, batch: Mapping[str, Any], priorities: Any = None) -> np.ndarray | None:
        """Write a batch if the rate limiter admits it now; return the slots, or None."""
        return self._write(batch, priorities, None, True, False)

    def _write(
        self, data: Mapping[str, Any], priorities: Any, timeout: float | None, batched: bool, block: bool
    ) -> np.ndarray | None:
        """Check everything, then reserve, copy, publish."""
        values, n = self.fields.check(data, batched)
        given = check_item_priorities(priorities, n)
        fields = self.fields

        def copy(views: dict[str, np.ndarray], runs: list[Run]) -> None:
            fields.copy(views, runs, values, batched)

        runs = self._slots.write(n, copy, given, timeout, block)
        return None if runs is None else _slots(runs)

    def close(self) -> None:
        """Detach; later writes through this handle raise BufferClosedError (the buffer stays open)."""
        self._slots.close()


class SharedTransitionBuffer(LearnerSurface):
    """A ring of transitions in shared memory: many writer processes, one learner.

    Thread-safe: writer handles may be shared by threads of a process, and the learner's samples,
    priority updates and saves take the learner's lock (writers publish slots without it).

    Args:
        capacity: Transitions kept; the oldest are overwritten first.
        fields: The fields, as ``{name: (item shape, dtype)}`` (nested dicts allowed); or None with ``example``.
        example: One transition (no batch dimension) whose fields, shapes and dtypes the buffer takes.
        sampler: ``"uniform"`` (with replacement), ``"prioritized"`` (alpha 0.6, beta 0.4) or a fresh
            :class:`~xreplay.samplers.PrioritizedSampler` of the same capacity; it lives in the learner.
        seed: Seed of the learner's random generator.
        rate_limiter: A limiter made with ``shared=True`` (e.g. ``SampleToInsertRatio(..., shared=True,
            context=ctx)``): writers consult it before each insert, the learner before each sample. Closing
            the buffer closes it.
        name: Segment file name after ``xreplay-`` (a unique one by default).
        timeout: Default seconds writes and samples wait for the rate limiter (None: no limit).

    Raises:
        CapacityError: The segment would not fit in ``/dev/shm``; raised before anything is created.
        StaleSegmentError: ``name`` is held by a segment of a crashed run.

    Example:
        >>> buf = SharedTransitionBuffer(64, {"obs": ((3,), torch.float32), "rew": ((), torch.float32)},
        ...                              sampler="prioritized", seed=0)
        >>> writer = buf.writer()             # pass it to worker processes
        >>> _ = writer.extend({"obs": np.ones((4, 3), np.float32), "rew": np.zeros(4, np.float32)})
        >>> batch = buf.sample(2)
        >>> batch["obs"].shape, len(buf), buf.update_priorities(batch, [0.5, 2.0])
        (torch.Size([2, 3]), 4, 0)
        >>> buf.close()
    """

    def __init__(
        self,
        capacity: int,
        fields: Mapping[str, Any] | None = None,
        example: Mapping[str, Any] | None = None,
        sampler: str | PrioritizedSampler = "uniform",
        seed: int | None = None,
        rate_limiter: RateLimiter | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ):
        """Create the segment and the learner's sampler."""
        if (fields is None) == (example is None):
            raise ValueError("give the fields either as a spec (fields=...) or by one example transition (example=...)")
        if fields is not None:
            self.fields = TransitionFields.from_spec(fields)
        else:
            self.fields = TransitionFields.from_example(example)  # type: ignore[arg-type]
        layout = SlotLayout(capacity, self.fields.arrays())
        self._learner = LearnerSlots(
            layout,
            {"kind": "transitions", "fields": self.fields.describe()},
            make_sampler(sampler, layout.capacity),
            seed,
            rate_limiter,
            name,
            timeout,
        )
        self._writer: SharedTransitionWriter | None = None

    # -- the buffer protocol ----------------------------------------------------

    def writer(self, timeout: float | None = None) -> SharedTransitionWriter:
        """Return a new picklable writer handle for a worker process (``timeout``: its default wait)."""
        handle = self._learner.handle()
        if timeout is not None:
            handle.timeout = timeout
        return SharedTransitionWriter(handle, self.fields)

    def _own_writer(self) -> SharedTransitionWriter:
        """Return the learner process's own writer handle."""
        if self._writer is None:
            self._writer = self.writer()
        return self._writer

    def add(self, transition: Mapping[str, Any], priority: float | None = None) -> int:
        """Write one transition from the learner's process; see :meth:`SharedTransitionWriter.add`."""
        return self._own_writer().add(transition, priority)

    def extend(self, batch: Mapping[str, Any], priorities: Any = None) -> np.ndarray:
        """Write a batch from the learner's process; see :meth:`SharedTransitionWriter.extend`."""
        return self._own_writer().extend(batch, priorities)

    def __len__(self) -> int:
        """Return the number of published transitions (draining the writers' new ones first)."""
        return self._learner.refresh()

    def sample(self, n: int, timeout: float | None = None) -> TransitionSample:
        """Sample ``n`` whole transitions with replacement (after the rate limiter allows it).

        Raises:
            InsufficientDataError: Nothing is published.
            RateLimiterTimeout: The limiter did not allow the sample within ``timeout``.
            BufferClosedError: The buffer is closed.
        """
        draw = self._learner.sample(n, True, timeout)
        assert draw is not None
        return self._batch(draw)

    def try_sample(self, n: int) -> TransitionSample | None:
        """Sample ``n`` transitions if the rate limiter allows it now; None otherwise."""
        draw = self._learner.sample(n, True, None, block=False)
        return None if draw is None else self._batch(draw)

    def _batch(self, draw: Any) -> TransitionSample:
        """Return a sample's fields as a TransitionSample."""
        weights = None if draw.weights is None else torch.from_numpy(draw.weights)
        return TransitionSample(self.fields.decode(draw.rows), draw.indices, weights, draw.generations)

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled transitions; return how many were skipped as overwritten since.

        Args:
            indices: A :class:`~xreplay.buffers.TransitionSample` from :meth:`sample`, or its indices.
            priorities: New priorities (finite, >= 0), one per index.
            generations: With plain indices: the sample's generations (None: those of the most recent
                sample), or ``"current"``.

        Raises:
            TypeError: The buffer samples uniformly.
            PriorityError: A priority is NaN, infinite or negative; nothing is updated.
        """
        if isinstance(indices, TransitionSample):
            indices, generations = indices.indices, indices.generations
        return self._update_priorities(indices, priorities, generations)

    # -- checkpoints ------------------------------------------------------------

    def snapshot(self) -> TransitionBuffer:
        """Return a local :class:`~xreplay.buffers.TransitionBuffer` holding the published transitions, oldest first.

        Writers keep writing meanwhile; each copied transition is checked whole. Priorities (and the
        learner's generator) are carried over, so the copy samples as this buffer would.
        """
        learner = self._learner
        sampler = learner.sampler
        local_sampler: str | PrioritizedSampler = "uniform"
        if sampler is not None:
            local_sampler = fresh_sampler(sampler, self.capacity)
        local = TransitionBuffer(self.capacity, sampler=local_sampler)
        with learner.lock:
            kept = learner.copy_valid(lambda rows: local.extend(self.fields.decode(rows)))
            copy_rng(learner.rng, local)
            if sampler is not None:
                snapshot_priorities(sampler, local.sampler, kept)  # type: ignore[arg-type]
        return local

    def save(self, path: str | os.PathLike[str], fsync: bool = True) -> SaveReport:
        """Save the published transitions as a ``transition_buffer`` checkpoint (see :meth:`snapshot`)."""
        from xreplay.persistence import save

        return save(self.snapshot(), path, incremental=False, fsync=fsync)

    @classmethod
    def from_buffer(cls, buffer: TransitionBuffer, **options: Any) -> SharedTransitionBuffer:
        """Return a new shared buffer holding ``buffer``'s transitions and priorities (``options`` as ``__init__``).

        Raises:
            SchemeError: ``buffer`` holds no field yet.
        """
        fields = dict(buffer.storage.specs)
        for name in buffer.next_obs_fields:  # next observations stored once: a field of their own here
            fields[name] = fields[buffer.next_obs_from + name[len(buffer.next_obs) :]]  # type: ignore[operator]
        local_sampler = buffer.sampler
        if "sampler" not in options:
            options["sampler"] = (
                fresh_sampler(local_sampler, buffer.capacity)
                if isinstance(local_sampler, PrioritizedSampler)
                else "uniform"
            )
        shared = cls(buffer.capacity, fields, **options)
        order = ring_order(buffer.writer)
        writer = shared.writer()
        for start in range(0, order.size, 65536):
            writer.extend(buffer.gather(order[start : start + 65536]))
        writer.close()
        learner = shared._learner
        with learner.lock:
            learner.drain()
            copy_rng(buffer.rng, learner)
            if learner.sampler is not None and isinstance(local_sampler, PrioritizedSampler):
                snapshot_priorities(local_sampler, learner.sampler, order)
        return shared

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> SharedTransitionBuffer:
        """Return a new shared buffer holding a ``transition_buffer`` checkpoint (e.g. one :meth:`save` wrote)."""
        from xreplay.persistence import load

        return cls.from_buffer(load(path, kind=TransitionBuffer), **options)
