"""TransitionBuffer: single transitions in a ring of columns, sampled uniformly or by priority."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.buffers.locking import MutationLock, locked
from xreplay.buffers.next_obs import NextObsStore as _NextObsStore
from xreplay.buffers.next_obs_checks import check_next_values
from xreplay.buffers.priority_updates import check_last_sample, resolve_update
from xreplay.buffers.samples import TransitionSample
from xreplay.buffers.transition_inputs import OneItem, flat_fields, host_array, split_next
from xreplay.buffers.validation import as_slots
from xreplay.errors import ArgumentError, InsufficientDataError, UnknownFieldError
from xreplay.random_state import generator_from_state, generator_state
from xreplay.samplers.base import Sampler
from xreplay.samplers.choice import make_sampler
from xreplay.storage.columns import ColumnStorage
from xreplay.storage.resources import CHECK_ABOVE, as_count, check_allocation
from xreplay.writers import RingWriter, SlotPlan

if TYPE_CHECKING:
    from xreplay.buffers.n_step import NStepReturns

__all__ = ["TransitionBuffer", "TransitionSample"]


class TransitionBuffer:
    """A fixed-capacity ring of transitions (rows) with uniform or prioritized sampling.

    The fields are inferred from the first write: a dict of arrays or
    tensors, nested dicts allowed (stored flat as ``"outer/inner"``). Later
    writes must have the same keys, item shapes and kinds of dtype; a write
    that does not is refused, naming the field, and changes nothing.

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
        self.writer.clear()
        self.sampler.reset()
        if self._next is not None:
            kept = self._next
            self._next = _NextObsStore(self.capacity, kept.pairs, streams=kept.streams)
            self._next.dtypes = dict(kept.dtypes)
        self._last_sample = None
        self._samples = self._sampled = 0

    def stats(self) -> dict[str, Any]:
        """Return fill, counters and the sampler's figures (stale updates, priority min/max/sum when prioritized).

        Keys: ``size``, ``capacity``, ``fill`` (``size / capacity``), ``inserts`` (items written since the
        last :meth:`clear`), ``samples`` (sample calls) and ``sampled`` (items drawn), then the sampler's.
        """
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
        last = self._last_sample
        return {
            "writer": self.writer.state_dict(),
            "rng": generator_state(self.rng),
            "sampler": self.sampler.state_dict(),
            "last_sample": None if last is None else {"indices": last[0], "generations": last[1]},
            "next": None if self._next is None else self._next.state_dict(),
            "storage": self.storage.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state from :meth:`state_dict` of a buffer of the same configuration.

        Everything is checked before anything changes.

        Raises:
            ArgumentError: A part is missing or does not fit (capacity, shapes, slots out of range).
        """
        missing = [k for k in ("writer", "rng", "sampler", "storage") if k not in state]
        if missing:
            raise ArgumentError(f"transition buffer state lacks {missing}; expected the keys of state_dict()")
        rng = generator_from_state(state["rng"])
        RingWriter(self.capacity).load_state_dict(state["writer"])  # checks it
        last = check_last_sample(state.get("last_sample"), self.capacity)
        store = None
        if state.get("next") is not None:
            if self.next_obs_from is None:
                raise ArgumentError("transition buffer state has next observations; this buffer has no next_obs_from")
            pairs = [(str(a), str(b)) for a, b in state["next"]["pairs"]]
            store = _NextObsStore(self.capacity, pairs, streams=self.stream is not None)
            store.load_state_dict(state["next"])
        self.storage.check_state_dict(state["storage"])
        self.sampler.load_state_dict(state["sampler"])  # checks everything before it changes anything
        # Everything is checked: adopt it.
        self.storage.load_state_dict(state["storage"])
        self.writer.load_state_dict(state["writer"])
        self.rng = rng
        self._last_sample = last
        if store is not None:
            store.dtypes = {o: d for _n, o in store.pairs if (d := self.storage.host_dtype(o)) is not None}
        self._next = store

    # -- writes ---------------------------------------------------------------

    @locked
    def add(self, transition: Mapping[str, Any]) -> int:
        """Write one transition (values without a batch dimension) and return its slot.

        Raises:
            UnknownFieldError: A field is missing or extra compared to the first write.
            FieldShapeError: An item shape differs from the first write.
            FieldTypeError: Text, objects, or complex values.
            FieldValueError: A dtype of another kind than the first write's, or values its column cannot hold
                (integers out of range, finite floats that would become infinite).
            CapacityError: The first write's columns would not fit in the memory this process may use.

        Nothing changes unless the whole write is valid.
        """
        values, nxt, ids = self._validate(transition, batched=False)
        slot = self.writer.cursor
        self.storage.write(slot, values, Ellipsis)
        self.writer.commit(1)
        if nxt is not None:
            obs = {o: host_array(values[o])[None] for _n, o in self._next.pairs}  # type: ignore[union-attr]
            self._next.write(slot, 1, obs, nxt, ids)  # type: ignore[union-attr]
            self._next.warn_if_apart(len(self), self.next_obs_from)  # type: ignore[union-attr]
        self.sampler.on_write(SlotPlan(0, ((slot, 0, 1),)), OneItem(values))
        return slot

    @locked
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

        Nothing changes unless the whole write is valid.
        """
        values, nxt, ids = self._validate(batch, batched=True)
        n = int(next(iter(values.values())).shape[0]) if values else 0
        plan = self.writer.plan(n)
        for slot, item, count in plan.segments:
            self.storage.write(slice(slot, slot + count), values, slice(item, item + count))
        self.writer.commit(n)
        if nxt is not None and n:
            kept = plan.source_start
            obs = {o: host_array(values[o])[kept:] for _n, o in self._next.pairs}  # type: ignore[union-attr]
            nxt = {name: v[kept:] for name, v in nxt.items()}
            store = self._next
            assert store is not None
            store.write(plan.segments[0][0], n - kept, obs, nxt, None if ids is None else ids[kept:])
            self._next.warn_if_apart(len(self), self.next_obs_from)  # type: ignore[union-attr]
        self.sampler.on_write(plan, values)
        return plan.slots()

    def _validate(
        self, data: Mapping[str, Any], batched: bool
    ) -> tuple[dict[str, np.ndarray | torch.Tensor], dict[str, np.ndarray] | None, np.ndarray | None]:
        """Check a whole write, then (on the first write only) allocate the columns and next-observation store.

        Returns the values, the next observations (None without ``next_obs_from``) and the stream ids
        (None without ``stream``). Nothing changes unless every check passes.
        """
        flat, nxt, store = split_next(
            flat_fields(data), self.next_obs, self.next_obs_from, self._next, self.capacity, self.stream is not None
        )
        ids = None
        values, specs = self.storage.validate(flat, batched)
        if nxt is not None:
            assert store is not None
            n = int(next(iter(values.values())).shape[0]) if batched and values else 1
            nxt = check_next_values(store, nxt, specs or self.storage.specs, batched, n)
            if self.stream is not None:
                if self.stream not in values:
                    raise UnknownFieldError(f"stream={self.stream!r} needs a field {self.stream!r} in every write")
                ids = store.check_streams(self.stream, values[self.stream], n)
        if specs is not None:
            self.storage.allocate(specs)
        self._next = store
        return values, nxt, ids

    # -- reads ----------------------------------------------------------------

    @locked
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
        if len(self) == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions from an empty buffer; add some first")
        # Indices, generations, weights and masses (about 40 bytes), the gathered rows and their per-field copies.
        row, steps = self.storage.row_bytes(), int(getattr(self.sampler, "window", 1))
        if n * steps * (2 * row + 40) > CHECK_ABOVE:
            items = f"{n} sequences x {steps} steps" if steps > 1 else f"{n} transitions"
            what = f"a sample of {items} x {row} bytes"
            check_allocation(n * steps * (2 * row + 40), self.device, what, "sample fewer transitions")
        draw = self.sampler.sample(self.rng, n, len(self), replace)
        self._samples += 1
        self._sampled += n
        indices, generations = draw.indices, draw.generations
        if generations is not None:
            self._last_sample = (indices, generations)
        if indices.ndim == 1:
            fields = self._gather(indices)
            if self.n_step is not None:
                fields.update(self.n_step.compute(self, indices))
        else:  # windows of consecutive steps: one gather of every step, then [n, steps, *item]
            flat = self._gather(indices.reshape(-1))
            fields = {k: v.reshape(*indices.shape, *v.shape[1:]) for k, v in flat.items()}
        return TransitionSample.from_draw(fields, draw, self.device)

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
        host = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
        if host.dtype != np.int64 or host.size == 0 or not host.view(np.uint64).max() < self.capacity:
            shape = host.shape
            host = as_slots(host, self.capacity, "transition index", "slots").reshape(shape)
        row = self.storage.row_bytes()
        if host.size * 2 * row > CHECK_ABOVE:
            what = f"a gather of {host.size} transitions x {row} bytes"
            check_allocation(host.size * 2 * row, self.device, what, "gather fewer transitions")
        if names is not None:
            known = set(self.storage.specs) | set(self.next_obs_fields)
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ArgumentError(f"unknown fields {unknown}; this buffer stores {sorted(known)}")
        return self._gather(host, names)

    def _gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Return the fields of ``indices`` (int64, checked to lie in ``[0, capacity)``)."""
        derived = self.next_obs_fields
        if names is None:
            fields = self.storage.gather(indices)
            if derived:
                fields.update(self._next.read(self.storage, indices))  # type: ignore[union-attr]
            return fields
        stored = [name for name in names if name not in derived]
        fields = self.storage.gather(indices, stored) if stored else {}
        if any(name in derived for name in names):
            fields.update(self._next.read(self.storage, indices))  # type: ignore[union-attr]
        return {name: fields[name] for name in names}

    @locked
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
        indices, priorities, generations = resolve_update(indices, priorities, generations, self._last_sample)
        return self.sampler.update_priorities(indices, priorities, generations)
