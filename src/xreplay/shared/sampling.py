"""What a shared buffer's learner samples with and returns: the sampler choice and the :class:`Draw` of whole slots."""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.samplers.prioritized import PrioritizedSampler

__all__ = ["Draw", "make_sampler"]


def make_sampler(sampler: Any, capacity: int) -> PrioritizedSampler | None:
    """Return the prioritized sampler named by ``sampler`` (None for uniform), checking a given one."""
    if sampler == "uniform":
        return None
    if sampler == "prioritized":
        return PrioritizedSampler(capacity)
    if isinstance(sampler, PrioritizedSampler):
        if sampler.capacity != capacity:
            raise ValueError(f"sampler capacity {sampler.capacity} differs from buffer capacity {capacity}")
        if sampler.size:
            raise ValueError("the sampler has inserted slots already; give the shared buffer a fresh one")
        return sampler
    raise ValueError(f"sampler must be 'uniform', 'prioritized' or a PrioritizedSampler, got {sampler!r}")


class Draw:
    """Slots drawn and copied out whole: ``indices``, ``weights``/``generations`` (prioritized), ``rows``."""

    def __init__(
        self, indices: np.ndarray, weights: np.ndarray | None, generations: np.ndarray | None, rows: list[np.ndarray]
    ):
        """Hold one sample's slots and their gathered data arrays."""
        self.indices = indices
        self.weights = weights
        self.generations = generations
        self.rows = rows
