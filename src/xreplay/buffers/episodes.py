"""EpisodeBuffer: whole episodes in a ring, sampled uniformly or by priority."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episode_batches import EpisodeBatches
from xreplay.buffers.episode_inserts import FastInserts, Prepared, copy_converted
from xreplay.buffers.episode_state import check_episode_state, check_sample_memory, check_storage
from xreplay.buffers.episode_writer import EpisodeWriter
from xreplay.buffers.locking import MutationLock, locked
from xreplay.buffers.priority_updates import resolve_update
from xreplay.buffers.samples import EpisodeSample
from xreplay.buffers.slot_guard import SlotGuard
from xreplay.buffers.validation import as_slots, check_keys
from xreplay.random_state import generator_from_state, generator_state
from xreplay.samplers.base import Draw, Sampler
from xreplay.samplers.choice import make_sampler
from xreplay.scheme import Scheme
from xreplay.storage.resources import as_count
from xreplay.storage.tensor import TensorStorage
from xreplay.writers import RingWriter

__all__ = ["EpisodeBuffer", "EpisodeSample"]


class EpisodeBuffer:
    """A fixed-capacity ring of whole episodes, sampled uniformly or by priority.

    Composes a :class:`~xreplay.storage.TensorStorage`, a :class:`~xreplay.writers.RingWriter` and a sampler
    (:class:`~xreplay.samplers.UniformSampler` by default, :class:`~xreplay.samplers.PrioritizedSampler` with
    ``sampler="prioritized"``); every random draw comes from the buffer's own ``numpy.random.Generator``
    (seeded by ``seed``).

    Thread-safe: any mix of writes, samples and priority updates from many threads is safe. The lock
    covers slot reservation, cursor and priority updates; the copies of runner batches of 16 KB or more
    and the gathers of samples run outside it, and a sample never contains an episode a write is still
    copying. Writes that widen a compact column's dtype hold the lock until no copy runs.

    Args:
        scheme: The fields of an episode.
        capacity: Episodes kept; older ones are overwritten first.
        max_seq_length: Steps per episode.
        device: Where the storage lives (``"cpu"`` or ``"cuda"``).
        pin_memory: Page-locked CPU storage for fast transfer to a GPU.
        seed: Seed of the buffer's random generator.
        storage: A storage to use instead of a new :class:`~xreplay.storage.TensorStorage`
            (e.g. a :class:`~xreplay.storage.MemmapStorage` for buffers larger than memory); it
            must hold ``scheme``, ``capacity`` and ``max_seq_length``, and sets the device.
        sampler: ``"uniform"``, ``"prioritized"`` (prioritized episode replay: alpha 0.6, beta 0.4) or a
            sampler object (see :mod:`xreplay.samplers.base`).
        row_order: How a storage row holds an episode: ``"field"`` (the default: each field's steps
            together, fastest for whole episodes and sequences) or ``"step"`` (each step's fields
            together, fastest for transitions drawn from episodes, as
            :class:`~xreplay.her.HindsightSampler` draws them); see :mod:`xreplay.storage.layout`.
            None: ``"field"``, or the order of ``storage`` when one is given.

    Raises:
        ArgumentError: ``capacity`` or ``max_seq_length`` is not an int >= 1, ``device`` is not usable,
            ``sampler`` is not a sampler, or ``row_order`` is unknown or differs from ``storage``'s.
        ValueError: ``sampler`` was built for another capacity (names both).
        CapacityError: The storage would not fit in the memory this process may use.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> buf = EpisodeBuffer(Scheme({"reward": Field((1,))}), capacity=8, max_seq_length=5, seed=0)
        >>> _ = buf.add({"reward": torch.ones(2, 3, 1)})
        >>> batch = buf.sample(2, truncate=True)
        >>> batch["reward"].shape, batch["filled"].shape
        (torch.Size([2, 3, 1]), torch.Size([2, 3, 1]))
    """

    def __init__(
        self,
        scheme: Scheme,
        capacity: int,
        max_seq_length: int,
        device: str | torch.device = "cpu",
        pin_memory: bool = False,
        seed: int | None = None,
        storage: TensorStorage | None = None,
        sampler: str | Sampler = "uniform",
        row_order: str | None = None,
    ):
        """Allocate storage and components."""
        capacity = as_count(capacity, "capacity", minimum=1)
        max_seq_length = as_count(max_seq_length, "max_seq_length", minimum=1)
        self.scheme = scheme
        if storage is None:
            order = "field" if row_order is None else row_order  # an unknown one is refused by the layout
            storage = TensorStorage(scheme, capacity, max_seq_length, device, pin_memory, order)
        check_storage(storage, scheme, capacity, max_seq_length, row_order)
        self.storage = storage
        bind_owner = getattr(storage, "bind_owner", None)
        if bind_owner is not None:
            bind_owner(self)  # a MemmapStorage's flush then saves this buffer's checkpoint, not a bare storage
        self.writer = RingWriter(capacity)
        self.sampler = make_sampler(sampler, capacity)
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None  # (slots, generations) of the last sample
        self._samples = self._sampled = 0  # sample calls and episodes drawn
        self.rng = np.random.default_rng(seed)
        self.lock = MutationLock()  # held by every change; a save holds it while it copies
        self._host_lengths = np.zeros(capacity, dtype=np.int32)
        # On CPU the tensor shares the numpy array's memory, so one write updates both.
        self._lengths = torch.from_numpy(self._host_lengths).to(self.storage.device)
        self._steps = torch.arange(max_seq_length, device=self.storage.device)
        self._batches = EpisodeBatches(scheme, storage, max_seq_length)
        self._inserts = FastInserts(max_seq_length)
        self._guard = SlotGuard(capacity)  # what readers outside the lock check against writes

    @property
    def capacity(self) -> int:
        """Return the number of episode slots."""
        return self.storage.capacity

    # -- the buffer surface ---------------------------------------------------

    @locked
    def clear(self) -> None:
        """Forget every episode (the storage keeps its memory; priorities and counters start over)."""
        self._guard.touch_all(cleared=True)  # before anything changes: reads under way draw again
        self.writer.clear()
        self.sampler.reset()
        self._host_lengths[:] = 0
        if self.device.type != "cpu":
            self._lengths.zero_()
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
        return f"{type(self).__name__}({len(self)}/{self.capacity} episodes, sampler={kind}, device={self.device})"

    # -- state (what a checkpoint saves) ---------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the buffer's state: the writer, generator, sampler and episode lengths, plus the stored rows.

        Arrays are views, not copies (``lengths`` a numpy array, ``storage.rows`` a tensor); the rest is
        plain data. The buffer's configuration (scheme, capacity, layout, device) is read from its
        attributes. :func:`xreplay.save` streams this; :meth:`load_state_dict` takes it back.
        """
        return {
            "writer": self.writer.state_dict(),
            "rng": generator_state(self.rng),
            "sampler": self.sampler.state_dict(),
            "lengths": self._host_lengths,
            "storage": self.storage.state_dict(),
        }

    @locked
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state from :meth:`state_dict` (``storage`` optional: omitted, the rows stay as they are).

        Everything is checked before anything changes.

        Raises:
            ArgumentError: A part of ``state`` is missing or does not fit this buffer (capacity, lengths
                outside ``[0, max_seq_length]``, an unknown generator).
        """
        lengths = check_episode_state(state, self.capacity, self.max_seq_length)
        rng = generator_from_state(state["rng"])
        writer = RingWriter(self.capacity)
        writer.load_state_dict(state["writer"])
        if "storage" in state:
            self.storage.check_state_dict(state["storage"])
        self._guard.touch_all()  # before anything changes: reads under way draw again
        self.sampler.load_state_dict(state["sampler"])  # checks everything before it changes anything
        # Everything is checked: adopt it.
        if "storage" in state:
            self.storage.load_state_dict(state["storage"])
        self.writer.load_state_dict(writer.state_dict())
        self.rng = rng
        self._host_lengths[:] = lengths
        if self.device.type != "cpu":
            self._lengths.copy_(torch.from_numpy(self._host_lengths))

    @property
    def max_seq_length(self) -> int:
        """Return the steps per episode."""
        return self.storage.max_seq_length

    @property
    def device(self) -> torch.device:
        """Return the device of the storage."""
        return self.storage.device

    def __len__(self) -> int:
        """Return the number of stored episodes."""
        return self.writer.size

    def can_sample(self, n: int) -> bool:
        """Return whether ``n`` episodes can be sampled without replacement."""
        return len(self) >= n

    def episode_lengths(self) -> np.ndarray:
        """Return the steps of each stored episode (slots ``0 .. len(self) - 1``) as a read-only int32 view."""
        view = self._host_lengths[: len(self)]
        view.flags.writeable = False
        return view

    # -- writes ---------------------------------------------------------------

    def add(self, episodes: Mapping[str, Any], lengths: Any = None) -> np.ndarray:
        """Write a batch of whole episodes and return the slots they took (an int64 array).

        Args:
            episodes: Every stored field: per-step fields ``[n, t, *item]``
                with ``t <= max_seq_length``, per-episode fields ``[n, *item]``.
            lengths: Steps each episode really has (``<= t``); ``t`` for all
                by default. Steps past ``t`` are stored as zeros.

        Raises:
            UnknownFieldError: A key is unknown or derived, or a field is missing.
            FieldShapeError: A value or ``lengths`` has the wrong shape.
            FieldTypeError: A value is text, an object or complex for a real field.
            FieldValueError: A value cannot be held by its field (out of range, not finite for an integer
                field, infinite once cast to a float field, a one-hot class out of range).

        Every value is converted and checked before anything changes: a refused write leaves the buffer
        exactly as it was.
        """
        batch = self._inserts.prepare(self, episodes, lengths)  # the common case, checked outside the lock
        if batch is not None:
            slots = self._add_prepared(batch)
            if slots is not None:
                return slots
        with self.lock:  # the general path: it may change the storage's layout, so no copy may be running
            return self._add_general(episodes, lengths)

    def _add_prepared(self, batch: Prepared) -> np.ndarray | None:
        """Write a batch the fast path checked; None if the storage's layout changed since."""
        plan = self._guard.write(
            self.lock,
            self.writer,
            batch.n,
            batch.nbytes,
            lambda p: self._inserts.copy(self, batch, p),
            lambda p: self.sampler.on_write(p, batch.episodes),
            still=lambda: self.storage.layout is batch.layout,
        )
        return None if plan is None else plan.slots()

    def _add_general(self, episodes: Mapping[str, Any], lengths: Any) -> np.ndarray:
        """Convert, check and write a batch of any accepted form (hold the lock exclusively)."""
        check_keys(self.scheme, episodes.keys(), required=True)
        batches = self._batches
        n, t = batches.dims(episodes)
        values = batches.convert(episodes, n, t)
        length = batches.lengths(lengths, n, t)
        ranges: dict[str, tuple[int, int] | None] = {}
        covered = batches.check_derived_sources(values, ranges)
        widen = self.storage.plan_dtypes(
            {k: v for k, v in values.items() if k not in covered} if covered else values, ranges
        )
        if widen:
            self._guard.touch_all()  # new rows and layout: reads under way draw again
        self.storage.relayout(widen)
        return self._add_validated(values, length, t, full=lengths is None)

    def _add_validated(self, values: dict[str, Any], lengths: torch.Tensor, t: int, full: bool = False) -> np.ndarray:
        """Write validated values, one copy per field and ring segment; return the slots taken.

        ``full`` says every episode has all ``t`` steps (derived indices are then the source's).
        """
        n = int(lengths.shape[0])
        plan = self._guard.plan(self.lock, self.writer, n, copying=False)
        derived = self._batches.derived_indices(values, lengths, t, full)
        copy_converted(self, plan, values, derived, lengths, t)
        self.writer.commit(n)
        self.sampler.on_write(plan, values)
        return plan.slots()

    def episode_writer(self) -> EpisodeWriter:
        """Return a step-by-step writer that adds one episode to this buffer when it ends."""
        return EpisodeWriter(self)

    # -- reads ----------------------------------------------------------------

    def sample(self, n: int, replace: bool | None = None, truncate: bool = False) -> EpisodeSample:
        """Sample ``n`` stored episodes with the buffer's sampler (uniform by default).

        Args:
            n: Number of episodes.
            replace: ``None`` (default): the sampler's choice (a :class:`UniformSampler` draws with
                replacement unless built with ``replace=False``; a prioritized sampler always does);
                ``False`` draws ``n`` distinct episodes uniformly; ``True`` with replacement.
            truncate: Cut the steps to the longest episode in the sample.

        Raises:
            ArgumentError: ``n`` is not an int >= 0, or ``replace=False`` with a prioritized sampler.
            InsufficientDataError: ``n`` exceeds the stored episodes without replacement, or nothing is stored.
            CapacityError: The sample would not fit in the memory this process may use.
        """
        n = as_count(n, "sample size")
        self._check_sample_memory(n)
        once = (getattr(self.sampler, "replace", True) if replace is None else replace) is False
        draw, sample = self._guard.read(
            self.lock,
            lambda: self._draw(n, replace),
            lambda d: d.indices,
            lambda d: self._gather(d.indices, truncate),
            self._keep,
            None if once else self._redraw,  # without replacement, a partial redraw could repeat episodes
        )
        if draw.weights is not None:
            sample.weights = torch.from_numpy(draw.weights).to(self.device)
        sample.generations, sample.probabilities = draw.generations, draw.probabilities
        return sample

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled episodes, skipping (and returning the count of) those overwritten since.

        Args:
            indices: An :class:`EpisodeSample` (its indices and generations are used), or the slots sampled.
            priorities: New priorities (finite, >= 0), one per episode.
            generations: As for :meth:`TransitionBuffer.update_priorities <xreplay.TransitionBuffer.update_priorities>`.

        Raises:
            ArgumentError: The buffer samples uniformly (also a TypeError), or plain indices other than the
                most recent sample's are given without ``generations``.
            PriorityError: A priority is not a finite number >= 0, or would overflow the sum of priorities.
        """
        if not self.sampler.prioritized:
            return self.sampler.update_priorities(indices, priorities, generations)  # raises, naming the fix
        with self.lock.critical():
            indices, priorities, generations = resolve_update(indices, priorities, generations, self._last_sample)
            return self.sampler.update_priorities(indices, priorities, generations)

    def _draw(self, n: int, replace: bool | None) -> Draw:
        """Draw ``n`` episodes from the sampler (call under the lock)."""
        return self.sampler.sample(self.rng, n, len(self), replace)

    def _redraw(self, draw: Draw, rows: np.ndarray) -> Draw:
        """Draw the episodes of ``rows`` again, with replacement (call under the lock)."""
        return draw.with_rows(rows, self.sampler.sample(self.rng, int(rows.sum()), len(self), True))

    def _keep(self, draw: Draw, sign: int) -> None:
        """Count a sample (``sign`` -1 uncounts a read not kept) and remember its slots for priority updates.

        Call under the lock.
        """
        self._samples += sign
        self._sampled += sign * int(draw.indices.shape[0])
        if sign > 0 and draw.generations is not None:
            self._last_sample = (draw.indices, draw.generations)

    def _check_sample_memory(self, n: int) -> None:
        """Raise CapacityError before sampling ``n`` episodes that would not fit (rows plus decoded fields)."""
        check_sample_memory(self.storage, n)

    def get(self, slots: Any, truncate: bool = False) -> EpisodeSample:
        """Return the episodes at ``slots`` (ints in ``[0, len(self))``), in that order.

        Raises:
            ArgumentError: A slot is not an integer.
            IndexOutOfRangeError: A slot is outside the stored episodes.
        """
        host = as_slots(slots, len(self), "episode index", "stored episodes")
        self._check_sample_memory(int(host.size))
        read = self._guard.read  # a read outside the lock, as sample's: never a half-written episode
        return read(self.lock, lambda: host, lambda h: h, lambda h: self._gather(h, truncate))[1]

    def _gather(self, host: np.ndarray, truncate: bool) -> EpisodeSample:
        """Gather the fields of valid slots ``host``, each straight into its output in its declared dtype."""
        index = torch.from_numpy(host)
        lengths_host = self._host_lengths[host]
        if self.device.type == "cpu":
            lengths = torch.from_numpy(lengths_host)
        else:
            index = index.to(self.device, non_blocking=True)
            lengths = self._lengths.index_select(0, index)
        steps = int(lengths_host.max()) if truncate and host.size else None
        if self.device.type == "cpu":
            fields = self.storage.gather_fields(index, steps=steps)  # each field straight into its output
        else:  # one kernel for all rows (per-field gathers are unmeasured on GPUs)
            fields = self.storage.decode(self.storage.gather(index), steps=steps)
        span = self._steps if steps is None else self._steps[:steps]
        fields["filled"] = (lengths[:, None] > span).unsqueeze(-1)
        return EpisodeSample(fields, index, lengths, self.max_seq_length if steps is None else steps)
