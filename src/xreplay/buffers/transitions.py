"""TransitionBuffer: single transitions in a ring of columns, sampled uniformly or by priority."""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.buffers.locking import MutationLock, locked
from xreplay.buffers.next_obs import NextObsStore as _NextObsStore
from xreplay.buffers.priority_updates import resolve_update
from xreplay.buffers.samples import TransitionSample
from xreplay.buffers.slot_guard import SlotGuard
from xreplay.buffers.transition_inputs import OneItem, check_sample_memory, flat_fields, host_array, validate_write
from xreplay.buffers.transition_reads import check_gather, gather_fields
from xreplay.buffers.transition_state import check_transition_state, transition_state
from xreplay.errors import ArgumentError, InsufficientDataError
from xreplay.samplers.base import Draw, Sampler
from xreplay.samplers.choice import make_sampler
from xreplay.storage.columns import ColumnStorage
from xreplay.storage.resources import as_count
from xreplay.writers import RingWriter, SlotPlan

if TYPE_CHECKING:
    from xreplay.buffers.n_step import NStepReturns

__all__ = ["TransitionBuffer", "TransitionSample"]

_slots = operator.attrgetter("indices")  # the slots of a draw


class TransitionBuffer:
    """A fixed-capacity ring of transitions (rows) with uniform or prioritized sampling.

    The fields are inferred from the first write: a dict of arrays or
    tensors, nested dicts allowed (stored flat as ``"outer/inner"``). Later
    writes must have the same keys, item shapes and kinds of dtype; a write
    that does not is refused, naming the field, and changes nothing.

    Thread-safe: any mix of writes, samples and priority updates from many threads is safe. The lock covers
    slot reservation, cursor and priority updates only; copies of a batch into its slots and the gathers of
    samples run outside it, and a sample never contains an item a write is still copying (with ``n_step``
    or ``next_obs_from`` a sample holds the lock throughout, as their windows follow the cursor).

    Args:
        capacity: Transitions kept; the oldest are overwritten first.
        sampler: ``"uniform"`` (with replacement), ``"prioritized"`` (alpha
            0.6, beta 0.4) or a sampler object (:class:`UniformSampler`,
            :class:`PrioritizedSampler` of the same capacity).
        device: Where the columns live (``"cpu"`` or ``"cuda"``).
        seed: Seed of the buffer's random generator (every draw comes from it).
        n_step: Optional :class:`~xreplay.buffers.n_step.NStepReturns` added to samples.
        next_obs_from: Store the next observation once: writes still carry
            the field named ``next_obs`` (and nested ``next_obs/...``), but it
            is stored as the ``next_obs_from`` field (``"obs"``) of the
            following slot, or in a small side store for the newest
            transition and wherever the two differ (episode ends). Samples
            are identical to storing it. Without ``stream``, transitions must be
            written in time order, one environment per buffer, for the saving to
            apply (a warning says when most next observations end up apart).
        next_obs: Name of the next-observation field (with ``next_obs_from``).
        stream: With ``next_obs_from``: name of an integer field (stored as any
            other) saying which environment each transition comes from, e.g.
            ``"env_id"`` of a vector environment whose steps arrive interleaved;
            a next observation is then read from the next transition of the same
            stream (one int32 per slot links them).

    Example:
        >>> buf = TransitionBuffer(100, sampler="prioritized", seed=0)
        >>> _ = buf.extend({"obs": np.zeros((4, 3), np.float32), "info": {"rew": np.ones(4, np.float32)}})
        >>> batch = buf.sample(2)
        >>> sorted(batch), batch["obs"].shape, batch.weights.tolist()
        (['info/rew', 'obs'], torch.Size([2, 3]), [1.0, 1.0])
        >>> buf.update_priorities(batch, [0.5, 2.0])  # or (batch.indices, [...], batch.generations)
        0
        >>> steps = TransitionBuffer(8, next_obs_from="obs")  # next_obs stored once
        >>> _ = steps.extend({"obs": np.arange(4.0), "next_obs": np.arange(1.0, 5.0)})
        >>> "next_obs" in steps.storage.columns, steps.gather(np.arange(4))["next_obs"].tolist()
        (False, [1.0, 2.0, 3.0, 4.0])
    """

    def __init__(
        self,
        capacity: int,
        sampler: str | Sampler = "uniform",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        n_step: NStepReturns | None = None,
        next_obs_from: str | None = None,
        next_obs: str = "next_obs",
        stream: str | None = None,
    ):
        """Allocate the writer and sampler; columns come with the first write."""
        if stream is not None and next_obs_from is None:
            raise ArgumentError(f"stream={stream!r} orders next observations; it needs next_obs_from (e.g. 'obs')")
        capacity = as_count(capacity, "capacity", minimum=1)
        self.storage = ColumnStorage(capacity, device)
        self.writer = RingWriter(capacity)
        self.sampler = make_sampler(sampler, capacity)
        self.rng = np.random.default_rng(seed)
        self.lock = MutationLock()  # held by every change; a save holds it while it copies
        self.n_step = n_step
        self.next_obs_from = next_obs_from
        self.next_obs = next_obs
        self.stream = stream
        self._next: _NextObsStore | None = None  # created with the first write when next_obs_from is set
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None  # (indices, generations) of the last sample
        self._samples = self._sampled = 0  # sample calls and items drawn
        self._guard = SlotGuard(capacity)  # what readers outside the lock check against writes
        self._tell_sampler = getattr(self.sampler, "watches_writes", True)
        self._window = int(getattr(self.sampler, "window", 1))  # steps per drawn item

    @property
    def capacity(self) -> int:
        """Return the number of slots."""
        return self.storage.capacity

    @property
    def device(self) -> torch.device:
        """Return the device of the columns."""
        return self.storage.device

    def __len__(self) -> int:
        """Return the number of stored transitions."""
        return self.writer.size

    def can_sample(self, n: int) -> bool:
        """Return whether anything is stored to sample ``n`` transitions from (with replacement)."""
        return len(self) > 0 or n == 0

    # -- the buffer surface ---------------------------------------------------

    @locked
    def clear(self) -> None:
        """Forget every transition (the columns keep their fields and memory; priorities and counters start over)."""
        self._guard.touch_all(cleared=True)  # before anything changes: reads under way draw again
        self.writer.clear()
        self.sampler.reset()
        if self._next is not None:
            kept = self._next
            self._next = _NextObsStore(self.capacity, kept.pairs, streams=kept.streams)
            self._next.dtypes = dict(kept.dtypes)
        self._last_sample = None
        self._samples = self._sampled = 0

    def stats(self) -> dict[str, Any]:
        """Return size, capacity, fill, inserts, samples and items sampled, then the sampler's figures."""
        return {
            "size": len(self),
            "capacity": self.capacity,
            "fill": len(self) / self.capacity,
            "inserts": self.writer.writes,
            "samples": self._samples,
            "sampled": self._sampled,
            **self.sampler.stats(),
        }

    def __repr__(self) -> str:
        kind = type(self.sampler).__name__
        return f"{type(self).__name__}({len(self)}/{self.capacity} transitions, sampler={kind}, device={self.device})"

    # -- state (what a checkpoint saves) ---------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the buffer's state: writer, generator, sampler, last sample, next-observation store, columns.

        Arrays are views, not copies; the rest is plain data. The configuration (capacity, sampler
        parameters, device, ``n_step``, ``next_obs_from``, ``stream``) is read from the attributes.
        """
        return transition_state(self.writer, self.rng, self.sampler, self._last_sample, self._next, self.storage)

    @locked
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state from :meth:`state_dict` of a buffer of the same configuration.

        Everything is checked before anything changes.

        Raises:
            ArgumentError: A part is missing or does not fit (capacity, shapes, slots out of range).
        """
        rng, last, store = check_transition_state(state, self.storage, self.next_obs_from, self.stream)
        self._guard.touch_all()  # before anything changes: reads under way draw again
        self.sampler.load_state_dict(state["sampler"])  # checks everything before it changes anything
        self.storage.load_state_dict(state["storage"])
        self.writer.load_state_dict(state["writer"])
        self.rng = rng
        self._last_sample = last
        if store is not None:
            store.dtypes = {o: d for _n, o in store.pairs if (d := self.storage.host_dtype(o)) is not None}
        self._next = store

    # -- writes ---------------------------------------------------------------

    def add(self, transition: Mapping[str, Any]) -> int:
        """Write one transition (values without a batch dimension) and return its slot.

        Raises:
            UnknownFieldError, FieldShapeError, FieldTypeError, FieldValueError, CapacityError: As :meth:`extend`.

        Nothing changes unless the whole write is valid.
        """
        with self.lock.critical():
            values, nxt, ids = self._validate(transition, batched=False)
            slot = self._guard.reserve_one(self.lock, self.writer)
            self.storage.write(slot, values)
            self.writer.commit(1)
            if nxt is not None:
                obs = {o: host_array(values[o])[None] for _n, o in self._next.pairs}  # type: ignore[union-attr]
                self._next.write(slot, 1, obs, nxt, ids)  # type: ignore[union-attr]
                self._next.warn_if_apart(len(self), self.next_obs_from)  # type: ignore[union-attr]
            if self._tell_sampler:
                self.sampler.on_write(SlotPlan(0, ((slot, 0, 1),)), OneItem(values))
            return slot

    def extend(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Write a batch of transitions (leading batch dimension) and return the slots of those kept.

        A batch larger than the capacity keeps only its last ``capacity`` items.

        Raises:
            UnknownFieldError: A field is missing or extra compared to the first write.
            FieldShapeError: An item shape or a batch size differs.
            FieldTypeError: Text, objects, or complex values.
            FieldValueError: A dtype of another kind than the first write's, or values its column cannot hold
                (integers out of range, finite floats that would become infinite).
            CapacityError: The first write's columns would not fit in the memory this process may use.

        Nothing changes unless the whole write is valid. Once the columns exist (and without ``next_obs_from``),
        a copy of 16 KB or more runs outside the lock; no thread ever sees these slots half-written.
        """
        if self._next is not None or self.next_obs_from is not None or not self.storage.specs:
            return self._extend_locked(batch)
        values = self.storage.validate(flat_fields(batch), True)[0]  # checks only: the columns exist
        n = int(next(iter(values.values())).shape[0]) if values else 0
        plan = self._guard.write(
            self.lock,
            self.writer,
            n,
            n * self.storage.row_bytes(),
            lambda p: self.storage.write_plan(p, values),
            (lambda p: self.sampler.on_write(p, values)) if self._tell_sampler else None,
        )
        assert plan is not None  # no still= condition: the write always happens
        return plan.slots()

    @locked
    def _extend_locked(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Write a batch holding the lock throughout (the first write, or next observations linked in order)."""
        values, nxt, ids = self._validate(batch, batched=True)
        n = int(next(iter(values.values())).shape[0]) if values else 0
        plan = self._guard.plan(self.lock, self.writer, n, copying=False)
        self.storage.write_plan(plan, values)
        self.writer.commit(n)
        if nxt is not None and n:
            kept = plan.source_start
            obs = {o: host_array(values[o])[kept:] for _n, o in self._next.pairs}  # type: ignore[union-attr]
            nxt = {name: v[kept:] for name, v in nxt.items()}
            store = self._next
            assert store is not None
            store.write(plan.segments[0][0], n - kept, obs, nxt, None if ids is None else ids[kept:])
            store.warn_if_apart(len(self), self.next_obs_from)
        self.sampler.on_write(plan, values)
        return plan.slots()

    def _validate(self, data: Mapping[str, Any], batched: bool) -> tuple[dict[str, Any], Any, np.ndarray | None]:
        """Check a whole write, then (on the first write only) allocate the columns and next-observation store."""
        values, nxt, ids, self._next = validate_write(
            self.storage, data, batched, (self.next_obs, self.next_obs_from, self._next), self.stream
        )
        return values, nxt, ids

    # -- reads ----------------------------------------------------------------

    def sample(self, n: int, replace: bool | None = None) -> TransitionSample:
        """Sample ``n`` transitions (or, with a sequence sampler, ``n`` windows of consecutive steps).

        Args:
            n: Items (or windows) to draw.
            replace: ``None`` (default): the sampler's choice (a :class:`UniformSampler` draws with
                replacement unless built with ``replace=False``; prioritized and sequence samplers always
                do); ``False`` draws ``n`` distinct transitions uniformly; ``True`` with replacement.

        Raises:
            ArgumentError: ``n`` is not an int >= 0, or ``replace=False`` with a sampler that cannot.
            InsufficientDataError: Nothing is stored, or fewer than ``n`` without replacement.
            CapacityError: The sample would not fit in the memory this process may use.
        """
        n = as_count(n, "sample size")
        check_sample_memory(self.storage, n, self._window)
        if self.n_step is None and self._next is None:  # draw under the lock, gather outside it
            once = (getattr(self.sampler, "replace", True) if replace is None else replace) is False
            again = None if once else self._redraw  # without replacement, a partial redraw could repeat items
            read = self._guard.read
            draw, fields = read(self.lock, lambda: self._draw(n, replace), _slots, self._read, self._keep, again)
            return TransitionSample.from_draw(fields, draw, self.device)
        with self.lock:  # n-step windows and next observations read the cursor and links: hold the lock
            draw = self._draw(n, replace)
            fields = self._read(draw)
            if self.n_step is not None and draw.indices.ndim == 1:
                fields.update(self.n_step.compute(self, draw.indices))
            self._keep(draw, 1)
        return TransitionSample.from_draw(fields, draw, self.device)

    def _draw(self, n: int, replace: bool | None) -> Draw:
        """Draw ``n`` items from the sampler (call under the lock)."""
        size = self.writer.size
        if size == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions from an empty buffer; add some first")
        return self.sampler.sample(self.rng, n, size, replace)

    def _redraw(self, draw: Draw, rows: np.ndarray) -> Draw:
        """Draw the items (windows) of ``rows`` again, with replacement (call under the lock)."""
        return draw.with_rows(rows, self.sampler.sample(self.rng, int(rows.sum()), len(self), True))

    def _read(self, draw: Draw) -> dict[str, torch.Tensor]:
        """Gather the drawn transitions (windows come back as ``[n, steps, *item]``)."""
        indices = draw.indices
        if indices.ndim == 1:
            return gather_fields(self.storage, self._next, indices)
        flat = gather_fields(self.storage, self._next, indices.reshape(-1))  # one gather of every step
        return {k: v.reshape(*indices.shape, *v.shape[1:]) for k, v in flat.items()}

    def _keep(self, draw: Draw, sign: int) -> None:
        """Count a sample (``sign`` -1 uncounts a read not kept) and remember its slots for priority updates.

        Call under the lock.
        """
        self._samples, self._sampled = self._samples + sign, self._sampled + sign * int(draw.indices.shape[0])
        if sign > 0 and draw.generations is not None:
            self._last_sample = (draw.indices, draw.generations)

    # -- next observations stored once -----------------------------------------

    @property
    def next_obs_fields(self) -> tuple[str, ...]:
        """Return the fields read from the following slot's observation (empty unless ``next_obs_from``)."""
        return tuple(name for name, _obs in self._next.pairs) if self._next is not None else ()

    def gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Return the stored fields (or ``names``) of ``indices``, next observations included.

        Raises:
            ArgumentError: An index is not an integer, or ``names`` holds an unknown field.
            IndexOutOfRangeError: An index is outside ``[0, capacity)``.
        """
        host = check_gather(indices, names, self.storage, self.next_obs_fields)
        read = self._guard.read  # a read outside the lock, as sample's: never a torn item
        return read(self.lock, lambda: host, lambda h: h, lambda h: self._gather(h, names))[1]

    def _gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Return the fields of ``indices`` (int64, checked to lie in ``[0, capacity)``)."""
        return gather_fields(self.storage, self._next, indices, names)

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled transitions, skipping (and returning the count of) those overwritten since.

        Args:
            indices: A :class:`TransitionSample` (its indices and generations are used), or the slots sampled.
            priorities: New priorities (finite, >= 0), one per index (per learning step for sequences).
            generations: The sample's ``generations``. When omitted with plain indices, those of the most
                recent :meth:`sample` are used if the indices are exactly its indices; otherwise pass them.
                ``"current"`` applies every update to whatever the slots hold now (no stale protection).

        Raises:
            ArgumentError: The buffer samples uniformly (also a TypeError), or plain indices other than the
                most recent sample's are given without ``generations``.
            PriorityError: A priority is not a finite number >= 0, or would overflow the sum of priorities.
            IndexOutOfRangeError: An index is outside the stored transitions.
        """
        if not self.sampler.prioritized:
            return self.sampler.update_priorities(indices, priorities, generations)  # raises, naming the fix
        with self.lock.critical():
            indices, priorities, generations = resolve_update(indices, priorities, generations, self._last_sample)
            return self.sampler.update_priorities(indices, priorities, generations)
