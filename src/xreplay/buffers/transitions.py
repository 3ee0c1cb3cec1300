"""TransitionBuffer: single transitions in a ring of columns, sampled uniformly or by priority."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.buffers.columns import ColumnStorage, flatten, unflatten
from xreplay.errors import InsufficientDataError
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.uniform import UniformSampler
from xreplay.writers import RingWriter

if TYPE_CHECKING:
    from xreplay.buffers.n_step import NStepReturns

__all__ = ["TransitionBuffer", "TransitionSample"]


class TransitionSample(Mapping[str, torch.Tensor]):
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
        self._fields = fields
        self.indices = indices
        self.weights = weights
        self.generations = generations

    def __getitem__(self, name: str) -> torch.Tensor:
        """Return field ``name``."""
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over field names."""
        return iter(self._fields)

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self._fields)

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

    Example:
        >>> buf = TransitionBuffer(100, sampler="prioritized", seed=0)
        >>> _ = buf.extend({"obs": np.zeros((4, 3), np.float32), "info": {"rew": np.ones(4, np.float32)}})
        >>> batch = buf.sample(2)
        >>> sorted(batch), batch["obs"].shape, batch.weights.tolist()
        (['info/rew', 'obs'], torch.Size([2, 3]), [1.0, 1.0])
        >>> buf.update_priorities(batch.indices, [0.5, 2.0], batch.generations)
        0
    """

    def __init__(
        self,
        capacity: int,
        sampler: str | UniformSampler | PrioritizedSampler = "uniform",
        device: str | torch.device = "cpu",
        seed: int | None = None,
        n_step: NStepReturns | None = None,
    ):
        """Allocate the writer and sampler; columns come with the first write."""
        self.storage = ColumnStorage(capacity, device)
        self.writer = RingWriter(capacity)
        self.sampler = _make_sampler(sampler, capacity)
        self.rng = np.random.default_rng(seed)
        self.n_step = n_step
        self._prioritized = isinstance(self.sampler, PrioritizedSampler)

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

    # -- writes ---------------------------------------------------------------

    def add(self, transition: Mapping[str, Any]) -> int:
        """Write one transition (values without a batch dimension) and return its slot.

        Raises:
            UnknownFieldError: A field is missing or extra compared to the first write.
            FieldShapeError: An item shape differs from the first write.
            FieldValueError: A dtype of another kind than the first write's.
        """
        values = self.storage.prepare(_flat(transition), batched=False)
        slot = self.writer.cursor
        self.storage.write(slot, values, Ellipsis)
        self.writer.commit(1)
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
        values = self.storage.prepare(_flat(batch), batched=True)
        n = int(next(iter(values.values())).shape[0]) if values else 0
        plan = self.writer.plan(n)
        for slot, item, count in plan.segments:
            self.storage.write(slice(slot, slot + count), values, slice(item, item + count))
        self.writer.commit(n)
        if isinstance(self.sampler, PrioritizedSampler):
            for slot, _item, count in plan.segments:
                self.sampler.insert_range(slot, slot + count)
        return plan.slots()

    # -- reads ----------------------------------------------------------------

    def sample(self, n: int) -> TransitionSample:
        """Sample ``n`` transitions with replacement.

        Raises:
            InsufficientDataError: Nothing is stored.
        """
        if len(self) == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions from an empty buffer; add some first")
        sampler = self.sampler
        weights: torch.Tensor | None = None
        generations: np.ndarray | None = None
        if isinstance(sampler, PrioritizedSampler):
            drawn = sampler.sample(self.rng, n)
            weights = torch.from_numpy(drawn.weights).to(self.device)
            indices, generations = drawn.indices, drawn.generations
        else:
            indices = sampler.sample(self.rng, n, len(self), replace=True)
        fields = self.storage.gather(indices)
        if self.n_step is not None:
            fields.update(self.n_step.compute(self, indices))
        return TransitionSample(fields, indices, weights, generations)

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of sampled transitions; return how many were skipped as stale.

        Raises:
            TypeError: The buffer samples uniformly.
            FieldValueError: A priority is NaN, infinite or negative.
            IndexOutOfRangeError: An index is outside the stored transitions.
        """
        if not isinstance(self.sampler, PrioritizedSampler):
            raise TypeError("update_priorities needs a prioritized buffer: pass sampler='prioritized'")
        if isinstance(priorities, torch.Tensor):
            priorities = priorities.detach().cpu().numpy()
        return self.sampler.update_priorities(indices, priorities, generations)


_LEAVES = (np.ndarray, torch.Tensor, float, int, np.generic)


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
            raise ValueError(f"sampler capacity {sampler.capacity} differs from buffer capacity {capacity}")
        return sampler
    if isinstance(sampler, UniformSampler):
        return sampler
    raise ValueError(f"sampler must be 'uniform', 'prioritized' or a sampler object, got {sampler!r}")
