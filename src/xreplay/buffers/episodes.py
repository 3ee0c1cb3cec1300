"""EpisodeBuffer: whole episodes in a ring, sampled uniformly or by priority."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episode_batches import EpisodeBatches
from xreplay.buffers.episode_inserts import FastInserts
from xreplay.buffers.episode_writer import EpisodeWriter
from xreplay.buffers.locking import MutationLock, locked
from xreplay.buffers.priority_updates import resolve_update
from xreplay.buffers.samples import EpisodeSample
from xreplay.buffers.validation import as_slots, check_keys
from xreplay.errors import ArgumentError, SchemeError
from xreplay.random_state import generator_from_state, generator_state
from xreplay.samplers.base import Sampler
from xreplay.samplers.choice import make_sampler
from xreplay.scheme import Scheme
from xreplay.storage.resources import as_count, check_allocation
from xreplay.storage.tensor import TensorStorage
from xreplay.writers import RingWriter

__all__ = ["EpisodeBuffer", "EpisodeSample"]


def _check_storage(storage: TensorStorage, scheme: Scheme, capacity: int, max_seq_length: int) -> None:
    """Raise SchemeError unless ``storage`` holds ``scheme`` with ``capacity`` x ``max_seq_length``."""
    same = dict(storage.scheme) == dict(scheme) and storage.scheme.groups == scheme.groups
    if not same or storage.capacity != capacity or storage.max_seq_length != max_seq_length:
        raise SchemeError(
            f"storage holds {storage.capacity} x {storage.max_seq_length} steps of {list(storage.scheme)}, "
            f"the buffer wants {capacity} x {max_seq_length} of {list(scheme)}; build the storage from the same scheme"
        )


class EpisodeBuffer:
    """A fixed-capacity ring of whole episodes, sampled uniformly or by priority.

    Composes a :class:`~xreplay.storage.TensorStorage`, a
    :class:`~xreplay.writers.RingWriter` and a sampler
    (:class:`~xreplay.samplers.UniformSampler` by default,
    :class:`~xreplay.samplers.PrioritizedSampler` with ``sampler="prioritized"``);
    every random draw comes from the buffer's own ``numpy.random.Generator``
    (seeded by ``seed``). Every method that changes the buffer holds its
    ``lock``, so threads may write, sample and update priorities at once.

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

    Raises:
        ArgumentError: ``capacity`` or ``max_seq_length`` is not an int >= 1, ``device`` is not usable, or
            ``sampler`` is not a sampler.
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
    ):
        """Allocate storage and components."""
        capacity = as_count(capacity, "capacity", minimum=1)
        max_seq_length = as_count(max_seq_length, "max_seq_length", minimum=1)
        self.scheme = scheme
        if storage is None:
            storage = TensorStorage(scheme, capacity, max_seq_length, device, pin_memory)
        _check_storage(storage, scheme, capacity, max_seq_length)
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

    @property
    def capacity(self) -> int:
        """Return the number of episode slots."""
        return self.storage.capacity

    # -- the buffer surface ---------------------------------------------------

    @locked
    def clear(self) -> None:
        """Forget every episode (the storage keeps its memory; priorities and counters start over)."""
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

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state from :meth:`state_dict` (``storage`` optional: omitted, the rows stay as they are).

        Everything is checked before anything changes.

        Raises:
            ArgumentError: A part of ``state`` is missing or does not fit this buffer (capacity, lengths
                outside ``[0, max_seq_length]``, an unknown generator).
        """
        missing = [key for key in ("writer", "rng", "sampler", "lengths") if key not in state]
        if missing:
            raise ArgumentError(f"episode buffer state lacks {missing}; expected the keys of state_dict()")
        lengths = np.asarray(state["lengths"])
        capacity, limit = self.capacity, self.max_seq_length
        if lengths.shape != (capacity,) or lengths.dtype.kind not in "iu":
            raise ArgumentError(
                f"episode buffer state 'lengths': expected {capacity} integers, "
                f"received {lengths.dtype} {lengths.shape}"
            )
        if capacity and (int(lengths.min()) < 0 or int(lengths.max()) > limit):
            slot = int(np.flatnonzero((lengths < 0) | (lengths > limit))[0])
            raise ArgumentError(
                f"episode buffer state 'lengths': slot {slot} holds {int(lengths[slot])}, expected [0, {limit}]"
            )
        rng = generator_from_state(state["rng"])
        writer = RingWriter(capacity)
        writer.load_state_dict(state["writer"])
        if "storage" in state:
            self.storage.check_state_dict(state["storage"])
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

    @locked
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
        slots = self._inserts.try_add(self, episodes, lengths)  # the common case; None: nothing written yet
        if slots is not None:
            return slots
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
        self.storage.relayout(widen)
        return self._add_validated(values, length, t, full=lengths is None)

    def _add_validated(self, values: dict[str, Any], lengths: torch.Tensor, t: int, full: bool = False) -> np.ndarray:
        """Write validated values, one copy per field and ring segment; return the slots taken.

        ``full`` says every episode has all ``t`` steps (derived indices are then the source's).
        """
        columns: Mapping[str, Any] = self.storage.columns
        per_step = self._batches.per_step
        n, limit = int(lengths.shape[0]), self.max_seq_length
        plan = self.writer.plan(n)
        derived = self._batches.derived_indices(values, lengths, t, full)
        absent = {name: self._batches.derived[name].absent for name in derived}
        sources: dict[str, Any] = {**values, **derived}
        host = self.storage.host_columns
        if host is not None and all(v.device.type == "cpu" for v in sources.values()):
            columns = host  # same memory, cheaper per call; values were checked to fit
            sources = {k: (v.detach() if v.requires_grad else v).numpy() for k, v in sources.items()}
        for slot, item, count in plan.segments:
            whole = item == 0 and count == n  # the batch lands in one run: no slicing of the sources
            for name, value in sources.items():
                column = columns[name][slot : slot + count]
                source = value if whole else value[item : item + count]
                if t < limit and per_step[name]:
                    column[:, :t] = source
                    column[:, t:] = absent.get(name, 0)  # no stale steps past the new episode
                else:
                    column[...] = source
            self._host_lengths[slot : slot + count] = lengths.numpy()[item : item + count]
            if self.device.type != "cpu":
                self._lengths[slot : slot + count].copy_(lengths[item : item + count])
        self.writer.commit(n)
        self.sampler.on_write(plan, values)
        return plan.slots()

    def episode_writer(self) -> EpisodeWriter:
        """Return a step-by-step writer that adds one episode to this buffer when it ends."""
        return EpisodeWriter(self)

    # -- reads ----------------------------------------------------------------

    @locked
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
        draw = self.sampler.sample(self.rng, n, len(self), replace)
        self._samples += 1
        self._sampled += n
        if draw.generations is not None:
            self._last_sample = (draw.indices, draw.generations)
        sample = self._gather(draw.indices, truncate)
        if draw.weights is not None:
            sample.weights = torch.from_numpy(draw.weights).to(self.device)
        sample.generations, sample.probabilities = draw.generations, draw.probabilities
        return sample

    @locked
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
        indices, priorities, generations = resolve_update(indices, priorities, generations, self._last_sample)
        return self.sampler.update_priorities(indices, priorities, generations)

    def _check_sample_memory(self, n: int) -> None:
        """Raise CapacityError before sampling ``n`` episodes that would not fit (rows plus decoded fields)."""
        row = self.storage.layout.row_bytes
        check_allocation(
            2 * n * row,
            self.device,
            lambda: f"a sample of {n} episodes x {row} bytes (gathered and decoded)",
            "sample fewer episodes",
        )

    def get(self, slots: Any, truncate: bool = False) -> EpisodeSample:
        """Return the episodes at ``slots`` (ints in ``[0, len(self))``), in that order.

        Raises:
            ArgumentError: A slot is not an integer.
            IndexOutOfRangeError: A slot is outside the stored episodes.
        """
        host = as_slots(slots, len(self), "episode index", "stored episodes")
        self._check_sample_memory(int(host.size))
        return self._gather(host, truncate)

    def _gather(self, host: np.ndarray, truncate: bool) -> EpisodeSample:
        """Gather the rows of valid slots ``host`` (one row gather) and decode them."""
        index = torch.from_numpy(host)
        lengths_host = self._host_lengths[host]
        if self.device.type == "cpu":
            lengths = torch.from_numpy(lengths_host)
        else:
            index = index.to(self.device, non_blocking=True)
            lengths = self._lengths.index_select(0, index)
        steps = int(lengths_host.max()) if truncate and host.size else None
        fields = self.storage.decode(self.storage.gather(index), steps=steps)
        span = self._steps if steps is None else self._steps[:steps]
        fields["filled"] = (lengths[:, None] > span).unsqueeze(-1)
        return EpisodeSample(fields, index, lengths, self.max_seq_length if steps is None else steps)
