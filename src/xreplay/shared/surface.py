"""What the two shared-memory buffers share: the learner-side surface that delegates to their LearnerSlots."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.shared.learner import LearnerSlots

__all__ = ["LearnerSurface"]


class LearnerSurface:
    """Capacity, sampler, generator, stats, closing and refusing to pickle, for a buffer over ``_learner``.

    Subclasses set ``_learner`` (a :class:`~xreplay.shared.learner.LearnerSlots`) and ``_writer`` (their own
    writer handle, or None), and name what their writer handles go to in ``handles_go_to``.
    """

    _learner: LearnerSlots
    _writer: Any
    handles_go_to = "worker processes"

    @property
    def capacity(self) -> int:
        """Return the number of slots."""
        return self._learner.capacity

    @property
    def sampler(self) -> PrioritizedSampler | None:
        """Return the learner's prioritized sampler (None when uniform)."""
        return self._learner.sampler

    @property
    def rng(self) -> np.random.Generator:
        """Return the learner's random generator."""
        return self._learner.rng

    @property
    def path(self) -> str:
        """Return the segment file."""
        return str(self._learner.segment.path)

    def _update_priorities(self, indices: Any, priorities: Any, generations: Any) -> int:
        """Pass a priority update (tensors as numpy arrays) to the learner."""
        if isinstance(priorities, torch.Tensor):
            priorities = priorities.detach().cpu().numpy()
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        return self._learner.update_priorities(indices, priorities, generations)

    def stats(self) -> dict[str, Any]:
        """Return the buffer's counters (items, reservations, in flight, writers, segment and payload bytes)."""
        return self._learner.stats()

    @property
    def closed(self) -> bool:
        """Return whether the buffer is closed."""
        return self._learner.closed

    def close(self) -> None:
        """Close the buffer: writers fail with BufferClosedError from now on, and the segment is removed."""
        if self._writer is not None:
            self._writer.close()
        self._learner.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(f"a {type(self).__name__} stays in its learner; pass buffer.writer() to {self.handles_go_to}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)}/{self.capacity}"  # type: ignore[arg-type]
        kind = "uniform" if self.sampler is None else "prioritized"
        return f"{type(self).__name__}({state}, sampler={kind}, segment={self.path})"
