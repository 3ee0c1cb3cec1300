"""Uniform sampling of stored slots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.errors import ArgumentError, InsufficientDataError
from xreplay.storage.resources import as_count

__all__ = ["UniformSampler"]


class UniformSampler:
    """Draw slots uniformly from ``[0, size)``, with or without replacement.

    Draws come from the ``numpy.random.Generator`` passed in (the buffer owns
    it). Without replacement numpy's ``Generator.choice`` is used, whose cost
    grows with the batch, not with the number of stored items.

    Example:
        >>> s = UniformSampler()
        >>> sorted(s.sample(np.random.default_rng(0), 3, size=3).tolist())
        [0, 1, 2]
    """

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's state: nothing (every draw comes from the buffer's generator)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Accept the empty state of :meth:`state_dict`.

        Raises:
            ArgumentError: ``state`` is not empty (it belongs to another kind of sampler).
        """
        if state:
            raise ArgumentError(f"a UniformSampler has no state, received {sorted(state)[:5]}: another sampler's")

    def sample(self, rng: np.random.Generator, n: int, size: int, replace: bool = False) -> np.ndarray:
        """Return ``n`` slots drawn from ``[0, size)`` as an int64 array.

        Raises:
            ArgumentError: ``n`` is not an int >= 0.
            InsufficientDataError: ``n`` exceeds ``size`` without replacement,
                or nothing is stored.
        """
        n = as_count(n, "sample size")
        if (not replace and n > size) or (replace and n > 0 and size == 0):
            raise InsufficientDataError(
                f"sample size {n} exceeds the {size} stored items; lower it or check can_sample() first"
            )
        if replace:
            return rng.integers(0, size, n, dtype=np.int64)
        return rng.choice(size, n, replace=False).astype(np.int64, copy=False)
