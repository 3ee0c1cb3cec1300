"""The samples every native buffer returns: one small family of read-only field mappings.

Every sample maps field names to tensors and carries ``indices`` (the slots
drawn), ``weights`` (importance weights, None when uniform),
``generations`` (for stale-safe priority updates, None without them) and
``probabilities`` (of drawing each item, None when uniform), and
moves with ``.to(device, non_blocking=)``. :class:`EpisodeSample` adds the
episode lengths and ``filled``; :class:`TransitionSample` adds the ``mask``
and ``learn_mask`` of windows drawn by a sequence sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.samplers.base import Draw
from xreplay.storage.nested import unflatten

__all__ = ["EpisodeSample", "FieldBatch", "TransitionSample"]


def _moved(value: Any, device: str | torch.device, non_blocking: bool) -> Any:
    """Return ``value`` on ``device`` when it is a tensor (numpy metadata stays on the host)."""
    return value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value


class FieldBatch(Mapping[str, torch.Tensor]):
    """A read-only mapping of field names to tensors, with the slots drawn and their sampling metadata.

    Example:
        >>> batch = FieldBatch({"obs": torch.zeros(2, 3)}, indices=np.array([4, 7]))
        >>> list(batch), batch["obs"].shape, batch.weights
        (['obs'], torch.Size([2, 3]), None)
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: Any = None,
        weights: torch.Tensor | None = None,
        generations: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
    ):
        """Hold ``fields`` (not copied) and the sampling metadata."""
        self._fields = fields
        self.indices = indices
        self.weights = weights
        self.generations = generations
        self.probabilities = probabilities

    @property
    def fields(self) -> Mapping[str, torch.Tensor]:
        """Return the fields as a read-only mapping (the sample itself)."""
        return self

    def __getitem__(self, name: str) -> torch.Tensor:
        """Return field ``name``."""
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over field names."""
        return iter(self._fields)

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self._fields)

    def _moved_fields(self, device: str | torch.device, non_blocking: bool) -> dict[str, torch.Tensor]:
        """Return every field moved to ``device``."""
        return {k: v.to(device, non_blocking=non_blocking) for k, v in self._fields.items()}


class EpisodeSample(FieldBatch):
    """A batch of episodes: field name -> tensor ``[n, steps, *item]`` in the declared dtype.

    Besides the scheme's fields it holds ``filled`` (bool ``[n, steps, 1]``,
    true on the steps each episode has), and the attributes ``indices`` (the
    slots sampled, a tensor on the buffer's device), ``lengths`` (steps per
    episode), ``max_seq_length``, and ``weights``/``generations`` when the
    buffer samples by priority.
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: torch.Tensor,
        lengths: torch.Tensor,
        max_seq_length: int,
        weights: torch.Tensor | None = None,
        generations: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
    ):
        """Wrap gathered fields and their episode metadata."""
        super().__init__(fields, indices, weights, generations, probabilities)
        self.lengths = lengths
        self.max_seq_length = max_seq_length

    @property
    def batch_size(self) -> int:
        """Return the number of episodes."""
        return int(self.indices.shape[0])

    def to(self, device: str | torch.device, non_blocking: bool = False) -> EpisodeSample:
        """Return a copy of this sample on ``device``."""
        return EpisodeSample(
            self._moved_fields(device, non_blocking),
            self.indices.to(device),
            self.lengths.to(device),
            self.max_seq_length,
            _moved(self.weights, device, non_blocking),
            self.generations,
            self.probabilities,
        )


class TransitionSample(FieldBatch):
    """A batch of transitions: flat field name (``"outer/inner"``) -> tensor ``[n, *item]``.

    With a sequence sampler every field is ``[n, steps, *item]``: ``n`` windows of consecutive steps.

    Attributes:
        indices: Slots sampled (int64 numpy array, ``[n]`` or ``[n, steps]``).
        weights: Importance weights (float32 tensor on the buffer's device), or None when uniform.
        generations: Slot generations for :meth:`TransitionBuffer.update_priorities`, or None.
        mask: For windows, bool ``[n, steps]``: the step belongs to the window's episode (else None).
        learn_mask: For windows, ``mask`` without the burn-in steps (else None).
    """

    def __init__(
        self,
        fields: dict[str, torch.Tensor],
        indices: np.ndarray,
        weights: torch.Tensor | None = None,
        generations: np.ndarray | None = None,
        mask: torch.Tensor | None = None,
        learn_mask: torch.Tensor | None = None,
        probabilities: np.ndarray | None = None,
    ):
        """Wrap gathered fields and their sampling metadata."""
        super().__init__(fields, indices, weights, generations, probabilities)
        self.mask = mask
        self.learn_mask = learn_mask

    @classmethod
    def from_draw(cls, fields: dict[str, torch.Tensor], draw: Draw, device: torch.device) -> TransitionSample:
        """Return the sample of ``draw``'s gathered ``fields``, its metadata as tensors on ``device``."""
        weights, mask, learn_mask = draw.weights, draw.mask, draw.learn_mask
        return cls(
            fields,
            draw.indices,
            None if weights is None else _tensor(weights, device),
            draw.generations,
            None if mask is None else _tensor(mask, device),
            None if learn_mask is None else _tensor(learn_mask, device),
            draw.probabilities,
        )

    def nested(self) -> dict[str, Any]:
        """Return the fields as nested dicts, splitting keys at ``"/"``."""
        return unflatten(self._fields)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> TransitionSample:
        """Return a copy of this sample on ``device``."""
        return TransitionSample(
            self._moved_fields(device, non_blocking),
            self.indices,
            _moved(self.weights, device, non_blocking),
            self.generations,
            _moved(self.mask, device, non_blocking),
            _moved(self.learn_mask, device, non_blocking),
            self.probabilities,
        )


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Return ``array`` as a tensor on ``device`` (sharing its memory on the CPU)."""
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device)
