"""TransitionBuffer: single transitions in a ring of columns, sampled uniformly or by priority."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from xreplay.buffers.columns import SEPARATOR, ColumnSpec, ColumnStorage, _numpy_dtype, check_value, flatten, unflatten
from xreplay.buffers.fields import FieldBatch
from xreplay.buffers.validation import as_slots
from xreplay.errors import (
    ArgumentError,
    FieldShapeError,
    InsufficientDataError,
    SchemeError,
    UnknownFieldError,
)
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.uniform import UniformSampler
from xreplay.storage.resources import as_count, check_allocation
from xreplay.writers import RingWriter

if TYPE_CHECKING:
    from xreplay.buffers.n_step import NStepReturns
    from xreplay.persistence.checkpoint import SaveReport

__all__ = ["TransitionBuffer", "TransitionSample"]


class TransitionSample(FieldBatch):
    """A batch of transitions: flat field name (``"outer/inner"``) -> tensor ``[n, *item]``.

    Attributes:
        indices: Slots sampled (int64 numpy array).
        weights: Importance weights (float32 tensor on the buffer's device), or None when uniform.
        generations: Slot generations for :meth:`TransitionBuffer.update_priorities`, or None.
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: np.ndarray,
        weights: torch.Tensor | None = None,
        generations: np.ndarray | None = None,
    ):
        """Wrap gathered fields and their sampling metadata."""
        super().__init__(fields)
        self.indices = indices
        self.weights = weights
        self.generations = generations

    def nested(self) -> dict[str, Any]:
        """Return the fields as nested dicts, splitting keys at ``"/"``."""
        return unflatten(self._fields)


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
            are identical to storing it. Transitions must be written in time
            order, one stream per buffer, for the saving to apply.
        next_obs: Name of the next-observation field (with ``next_obs_from``).

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
        sampler: str | UniformSampler | PrioritizedSampler = "uniform",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        n_step: NStepReturns | None = None,
        next_obs_from: str | None = None,
        next_obs: str = "next_obs",
    ):
        """Allocate the writer and sampler; columns come with the first write."""
        capacity = as_count(capacity, "capacity", minimum=1)
        self.storage = ColumnStorage(capacity, device)
        self.writer = RingWriter(capacity)
        self.sampler = _make_sampler(sampler, capacity)
        self.rng = np.random.default_rng(seed)
        self.n_step = n_step
        self._prioritized = isinstance(self.sampler, PrioritizedSampler)
        self.next_obs_from = next_obs_from
        self.next_obs = next_obs
        self._next: _NextObsStore | None = None  # created with the first write when next_obs_from is set
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None  # (indices, generations) of the last sample

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

    # -- checkpoints (xreplay.persistence) ------------------------------------

    checkpoint_kind: ClassVar[str] = "transition_buffer"

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` for a checkpoint (see :mod:`xreplay.persistence.kinds`)."""
        from xreplay.persistence.transition_buffer import transition_buffer_state

        return transition_buffer_state(self)

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> TransitionBuffer:
        """Return a buffer rebuilt from :meth:`checkpoint_state`'s output (``device``, ``n_step`` options)."""
        from xreplay.persistence.transition_buffer import restore_transition_buffer

        return restore_transition_buffer(cls, meta, arrays, **options)

    def save(self, path: str | os.PathLike[str], incremental: bool = True, fsync: bool = True) -> SaveReport:
        """Save this buffer as a checkpoint directory; see :func:`xreplay.persistence.save`."""
        from xreplay.persistence import save

        return save(self, path, incremental=incremental, fsync=fsync)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        mmap: bool | str = False,
        verify: bool | None = None,
        device: str | torch.device | None = None,
    ) -> TransitionBuffer:
        """Load a buffer saved with :meth:`save`; see :func:`xreplay.persistence.load`.

        The columns are copied into newly allocated storage, so ``mmap`` only avoids reading the
        other arrays up front.

        Raises:
            CheckpointMismatchError: ``path`` holds another kind of checkpoint.
        """
        from xreplay.persistence import load

        buffer = load(path, mmap=mmap, verify=verify, kind=cls.checkpoint_kind, device=device)
        assert isinstance(buffer, TransitionBuffer)
        return buffer

    # -- writes ---------------------------------------------------------------

    def add(self, transition: Mapping[str, Any]) -> int:
        """Write one transition (values without a batch dimension) and return its slot.

        Raises:
            UnknownFieldError: A field is missing or extra compared to the first write.
            FieldShapeError: An item shape differs from the first write.
            FieldValueError: A dtype of another kind than the first write's.
        """
        values, nxt = self._validate(transition, batched=False)
        slot = self.writer.cursor
        self.storage.write(slot, values, Ellipsis)
        self.writer.commit(1)
        if nxt is not None:
            obs = {o: _host(values[o])[None] for _n, o in self._next.pairs}  # type: ignore[union-attr]
            self._next.write(slot, 1, obs, nxt)  # type: ignore[union-attr]
        if self._prioritized:
            self.sampler.insert_range(slot, slot + 1)  # type: ignore[union-attr]
        return slot

    def extend(self, batch: Mapping[str, Any]) -> np.ndarray:
        """Write a batch of transitions (leading batch dimension) and return the slots of those kept.

        A batch larger than the capacity keeps only its last ``capacity`` items.

        Raises:
            UnknownFieldError: A field is missing or extra compared to the first write.
            FieldShapeError: An item shape or a batch size differs.
            FieldValueError: A dtype of another kind than the first write's.
        """
        values, nxt = self._validate(batch, batched=True)
        n = int(next(iter(values.values())).shape[0]) if values else 0
        plan = self.writer.plan(n)
        for slot, item, count in plan.segments:
            self.storage.write(slice(slot, slot + count), values, slice(item, item + count))
        self.writer.commit(n)
        if nxt is not None and n:
            kept = plan.source_start
            obs = {o: _host(values[o])[kept:] for _n, o in self._next.pairs}  # type: ignore[union-attr]
            nxt = {name: v[kept:] for name, v in nxt.items()}
            self._next.write(plan.segments[0][0], n - kept, obs, nxt)  # type: ignore[union-attr]
        if isinstance(self.sampler, PrioritizedSampler):
            for slot, _item, count in plan.segments:
                self.sampler.insert_range(slot, slot + count)
        return plan.slots()

    def _validate(
        self, data: Mapping[str, Any], batched: bool
    ) -> tuple[dict[str, np.ndarray | torch.Tensor], dict[str, np.ndarray] | None]:
        """Check a whole write, then (on the first write only) allocate the columns and next-observation store.

        Nothing changes unless every check passes.
        """
        flat, nxt, store = self._split_next(_flat(data))
        values, specs = self.storage.validate(flat, batched)
        if nxt is not None:
            assert store is not None
            n = int(next(iter(values.values())).shape[0]) if batched and values else 1
            nxt = self._check_next(nxt, store, specs or self.storage.specs, batched, n)
        if specs is not None:
            self.storage.allocate(specs)
        self._next = store
        return values, nxt

    # -- reads ----------------------------------------------------------------

    def sample(self, n: int) -> TransitionSample:
        """Sample ``n`` transitions with replacement.

        Raises:
            ArgumentError: ``n`` is not an int >= 0.
            InsufficientDataError: Nothing is stored.
            CapacityError: The sample would not fit in the memory this process may use.
        """
        n = as_count(n, "sample size")
        if len(self) == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions from an empty buffer; add some first")
        # Indices, generations, weights and masses (about 40 bytes), the gathered rows and their per-field copies.
        check_allocation(
            n * (2 * self.storage.row_bytes() + 40),
            self.device,
            f"a sample of {n} transitions x {self.storage.row_bytes()} bytes",
            "sample fewer transitions",
        )
        sampler = self.sampler
        weights: torch.Tensor | None = None
        generations: np.ndarray | None = None
        if isinstance(sampler, PrioritizedSampler):
            drawn = sampler.sample(self.rng, n)
            weights = torch.from_numpy(drawn.weights).to(self.device)
            indices, generations = drawn.indices, drawn.generations
            self._last_sample = (indices, generations)
        else:
            indices = sampler.sample(self.rng, n, len(self), replace=True)
        fields = self._gather(indices)
        if self.n_step is not None:
            fields.update(self.n_step.compute(self, indices))
        return TransitionSample(fields, indices, weights, generations)

    # -- next observations stored once -----------------------------------------

    @property
    def derived_fields(self) -> tuple[str, ...]:
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
        if names is not None:
            known = set(self.storage.specs) | set(self.derived_fields)
            unknown = [name for name in names if name not in known]
            if unknown:
                raise ArgumentError(f"unknown fields {unknown}; this buffer stores {sorted(known)}")
        return self._gather(host, names)

    def _gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Return the fields of ``indices`` (int64, checked to lie in ``[0, capacity)``)."""
        derived = self.derived_fields
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

    def _split_next(
        self, flat: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], dict[str, Any] | None, _NextObsStore | None]:
        """Return ``flat`` without the next-observation fields, those fields and their store (None, None without).

        On the first write the store is a new one, which the caller adopts once the whole write is checked.
        """
        if self.next_obs_from is None:
            return flat, None, None
        prefix = self.next_obs + SEPARATOR
        nxt = {k: v for k, v in flat.items() if k == self.next_obs or k.startswith(prefix)}
        store = self._next
        if store is None:
            if not nxt:
                raise UnknownFieldError(
                    f"next_obs_from={self.next_obs_from!r} needs a field {self.next_obs!r}; the write has {list(flat)}"
                )
            pairs = [(k, self.next_obs_from + k[len(self.next_obs) :]) for k in nxt]
            missing = [o for _k, o in pairs if o not in flat]
            if missing:
                raise UnknownFieldError(
                    f"fields {missing} are missing: next-observation fields {list(nxt)} are stored as them"
                )
            store = _NextObsStore(self.capacity, pairs)
        return {k: v for k, v in flat.items() if k not in nxt}, nxt, store

    def _check_next(
        self,
        nxt: dict[str, Any],
        store: _NextObsStore,
        specs: Mapping[str, ColumnSpec],
        batched: bool,
        batch: int = 1,
    ) -> dict[str, np.ndarray]:
        """Return the next observations as host arrays ``[batch, *item]`` of their obs field's dtype.

        Raises:
            UnknownFieldError: A next-observation field is missing or extra.
            FieldShapeError: A shape differs from its observation field's.
            FieldValueError: A dtype of another kind than the observation field's, or integers outside its range.
        """
        if nxt.keys() != store.expected:
            raise UnknownFieldError(
                f"next-observation fields {sorted(nxt)} differ from those of the first write {sorted(store.expected)}"
            )
        out = {}
        for name, obs in store.pairs:
            spec = specs[obs]
            value = nxt[name]
            if type(value) is not np.ndarray:
                value = _host(ColumnStorage._as_array(name, value))
            item = value.shape[1:] if batched else value.shape
            if item != spec.shape:
                raise FieldShapeError(
                    f"field {name!r}: expected item shape {spec.shape} (that of {obs!r}), received {tuple(item)}"
                )
            if batched and value.shape[0] != batch:
                raise FieldShapeError(f"field {name!r}: batch of {value.shape[0]} items, other fields have {batch}")
            host_dtype = store.dtypes.get(obs)
            if host_dtype is None:
                host_dtype = _numpy_dtype(spec.dtype)
                if host_dtype is None:
                    raise SchemeError(f"field {obs!r}: dtype {spec.dtype} has no numpy equivalent")
            if value.dtype != host_dtype:
                check_value(name, value, spec)
                value = value.astype(host_dtype)
            out[name] = value if batched else value[None]
        for _name, obs in store.pairs:
            store.dtypes.setdefault(obs, _numpy_dtype(specs[obs].dtype))  # type: ignore[arg-type]
        return out

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled transitions, skipping (and returning the count of) those overwritten since.

        Args:
            indices: A :class:`TransitionSample` (its indices and generations are used), or the slots sampled.
            priorities: New priorities (finite, >= 0), one per index.
            generations: The sample's ``generations``. When omitted with plain indices, those of the most
                recent :meth:`sample` are used if the indices are exactly its indices; otherwise pass them.
                ``"current"`` applies every update to whatever the slots hold now (no stale protection).

        Raises:
            ArgumentError: The buffer samples uniformly (also a TypeError), or plain indices other than the
                most recent sample's are given without ``generations``.
            PriorityError: A priority is not a finite number >= 0, or would overflow the sum of priorities.
            IndexOutOfRangeError: An index is outside the stored transitions.
        """
        if not isinstance(self.sampler, PrioritizedSampler):
            raise ArgumentError("update_priorities needs a prioritized buffer: pass sampler='prioritized'")
        if isinstance(indices, TransitionSample):
            if generations is not None:
                raise ArgumentError("pass generations only with plain indices, not with a TransitionSample")
            indices, generations = indices.indices, indices.generations
        elif isinstance(generations, str):
            if generations != "current":
                raise ArgumentError(f"generations must be an array, None or 'current'; received {generations!r}")
            generations = None
        elif generations is None:
            indices = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
            last = self._last_sample
            if last is None or not np.array_equal(indices.reshape(-1), last[0]):
                raise ArgumentError(
                    f"update_priorities got {indices.size} plain indices that are not those of the most recent "
                    f"sample, and no generations: pass the sample itself, its generations "
                    f"(sample.generations), or generations='current' to update whatever the slots hold now"
                )
            generations = last[1]
        if isinstance(priorities, torch.Tensor):
            priorities = priorities.detach().cpu().numpy()
        return self.sampler.update_priorities(indices, priorities, generations)


class _NextObsStore:
    """The next observations of a buffer that stores them once, as the observations of the following slots.

    A transition's next observation is read from the observation of the
    item written right after it (the next slot of the ring), unless the two
    differ: then it is kept in a small side store keyed by slot. The newest
    item's next observation, whose successor is not written yet, is held
    apart until that successor arrives and is compared with it. An episode's
    last step usually lands in the side store (the next item starts another
    episode). The decision compares the values themselves, so reads give
    exactly what was written, whatever the episode boundaries or the order
    of the writes; when the ring overwrites a slot, its side entry is freed.
    """

    def __init__(self, capacity: int, pairs: list[tuple[str, str]]):
        """Track ``capacity`` slots for ``(next field, obs field)`` pairs."""
        self.capacity = capacity
        self.pairs = pairs
        self.slot_row = np.full(capacity, -1, dtype=np.int32)  # side row of each slot, -1: read the next slot
        self.values: dict[str, np.ndarray] = {}  # next field -> [rows, *item]
        self.free = np.zeros(0, dtype=np.int32)  # free side rows (a stack)
        self.rows = 0  # side rows allocated
        self.newest = -1  # slot of the newest item, whose next observation is ``pending``
        self.pending: dict[str, np.ndarray] = {}
        self.expected = {name for name, _obs in pairs}
        self.dtypes: dict[str, np.dtype] = {}  # obs field -> numpy dtype, filled on first use

    def __len__(self) -> int:
        """Return the number of slots whose next observation is kept apart (side store and newest)."""
        return int(self.rows - self.free.shape[0]) + (self.newest >= 0)

    def nbytes(self) -> int:
        """Return the bytes held by the side store and its slot index."""
        return int(self.slot_row.nbytes + self.free.nbytes + sum(v.nbytes for v in self.values.values()))

    def release(self, slots: np.ndarray) -> None:
        """Free the side rows of ``slots`` (about to be overwritten)."""
        rows = self.slot_row[slots]
        rows = rows[rows >= 0]
        if rows.size:
            self.free = np.concatenate([self.free, rows])
            self.slot_row[slots] = -1

    def keep(self, slots: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Store ``values[next field]`` (one row per slot) as the next observations of ``slots``."""
        n = slots.shape[0]
        if n == 0:
            return
        if self.free.shape[0] < n:
            self._grow(n - self.free.shape[0], values)
        rows, self.free = self.free[-n:], self.free[:-n]
        self.slot_row[slots] = rows
        for name, _obs in self.pairs:
            self.values[name][rows] = values[name]

    def _grow(self, extra: int, values: Mapping[str, np.ndarray]) -> None:
        """Add at least ``extra`` side rows (doubling), shaped like ``values``."""
        new = max(extra, self.rows, 16)
        for name, _obs in self.pairs:
            item = values[name].shape[1:]
            grown = np.zeros((self.rows + new, *item), dtype=values[name].dtype)
            if name in self.values:
                grown[: self.rows] = self.values[name]
            self.values[name] = grown
        self.free = np.concatenate([self.free, np.arange(self.rows + new - 1, self.rows - 1, -1, dtype=np.int32)])
        self.rows += new

    def write(self, start: int, n: int, obs: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray]) -> None:
        """Record a write of ``n`` consecutive slots from ``start`` (ring order) of ``obs`` and their next ones.

        Args:
            start: Slot of the first item written.
            n: Items written (at most the capacity).
            obs: Obs field -> ``[n, *item]`` values written.
            nxt: Next field -> ``[n, *item]`` next observations.
        """
        capacity = self.capacity
        if n == 1:
            row = self.slot_row[start]
            if row >= 0:
                self.release(np.array([start]))
        else:
            self.release((start + np.arange(n)) % capacity)
        newest = self.newest
        if newest >= 0 and (newest - start) % capacity >= n:  # the previous newest survives: compare it
            if not all((self.pending[name] == obs[o][0]).all() for name, o in self.pairs):
                self.keep(np.array([newest]), {name: self.pending[name][None] for name, _o in self.pairs})
        if n > 1 and not all((nxt[name][:-1] == obs[o][1:]).all() for name, o in self.pairs):
            differs = np.zeros(n - 1, dtype=bool)
            for name, o in self.pairs:
                differs |= (nxt[name][:-1] != obs[o][1:]).reshape(n - 1, -1).any(axis=1)
            if differs.any():
                kept = np.flatnonzero(differs)
                self.keep((start + kept) % capacity, {name: nxt[name][kept] for name, _o in self.pairs})
        self.newest = (start + n - 1) % capacity
        self.pending = {name: np.array(nxt[name][-1]) for name, _o in self.pairs}  # a copy, 0-d for scalars

    def read(self, storage: ColumnStorage, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """Return the next observations of ``slots``: next slots' observations, side entries where kept."""
        following = (slots + 1) % self.capacity
        gathered = storage.gather(following, [o for _n, o in self.pairs])
        rows = self.slot_row[slots]
        side = np.flatnonzero(rows >= 0)
        newest = np.flatnonzero(slots == self.newest)
        out = {}
        for name, o in self.pairs:
            value = gathered[o]
            if side.size:
                kept = torch.from_numpy(self.values[name][rows[side]]).to(value.device)
                value[torch.from_numpy(side).to(value.device)] = kept
            if newest.size:
                value[torch.from_numpy(newest).to(value.device)] = torch.from_numpy(self.pending[name]).to(value.device)
            out[name] = value
        return out


_LEAVES = (np.ndarray, torch.Tensor, float, int, np.generic)


def _host(value: Any) -> np.ndarray:
    """Return ``value`` (array or tensor) as a numpy array on the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _flat(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``data`` flattened when it holds nested mappings."""
    for value in data.values():
        if not isinstance(value, _LEAVES) and isinstance(value, Mapping):
            return flatten(data)
    return data


def _make_sampler(sampler: Any, capacity: int) -> UniformSampler | PrioritizedSampler:
    """Return the sampler named by ``sampler`` or check a given one."""
    if sampler == "uniform":
        return UniformSampler()
    if sampler == "prioritized":
        return PrioritizedSampler(capacity)
    if isinstance(sampler, PrioritizedSampler):
        if sampler.capacity != capacity:
            raise ArgumentError(f"sampler capacity {sampler.capacity} differs from buffer capacity {capacity}")
        return sampler
    if isinstance(sampler, UniformSampler):
        return sampler
    raise ArgumentError(f"sampler must be 'uniform', 'prioritized' or a sampler object, got {sampler!r}")
