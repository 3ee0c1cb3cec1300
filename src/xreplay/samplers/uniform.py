"""Uniform sampling of stored slots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.errors import ArgumentError, InsufficientDataError
from xreplay.samplers.base import Draw
from xreplay.storage.resources import as_count
from xreplay.writers import SlotPlan

__all__ = ["UniformSampler"]


class UniformSampler:
    """Draw slots uniformly from ``[0, size)``, with or without replacement.

    Draws come from the ``numpy.random.Generator`` passed in (the buffer owns
    it). Without replacement numpy's ``Generator.choice`` is used, whose cost
    grows with the batch, not with the number of stored items. The sampler
    holds no state and fits a buffer of any capacity.

    Args:
        replace: Draw with replacement unless a call says otherwise (``sample(..., replace=)``).

    Example:
        >>> s = UniformSampler()
        >>> sorted(UniformSampler(replace=False).sample(np.random.default_rng(0), 3, size=3).indices.tolist())
        [0, 1, 2]
    """

    prioritized = False
    watches_writes = False  # on_write does nothing: a buffer may skip the call

    def __init__(self, replace: bool = True):
        """Draw with replacement (``replace=True``) or without by default."""
        self.replace = bool(replace)

    def bind(self, capacity: int) -> None:
        """Accept a buffer of any capacity."""

    def on_write(self, plan: SlotPlan, items: Mapping[str, Any]) -> None:
        """Ignore writes: every stored slot is equally likely."""

    def sample(self, rng: np.random.Generator, n: int, size: int, replace: bool | None = None) -> Draw:
        """Return ``n`` slots drawn from ``[0, size)`` (int64); ``replace`` None uses the sampler's default.

        Raises:
            ArgumentError: ``n`` is not an int >= 0.
            InsufficientDataError: ``n`` exceeds ``size`` without replacement,
                or nothing is stored.
        """
        n = as_count(n, "sample size")
        replace = self.replace if replace is None else bool(replace)
        if (not replace and n > size) or (replace and n > 0 and size == 0):
            raise InsufficientDataError(
                f"sample size {n} exceeds the {size} stored items; lower it or check can_sample() first"
            )
        if replace:
            return Draw(rng.integers(0, size, n, dtype=np.int64))
        return Draw(rng.choice(size, n, replace=False).astype(np.int64, copy=False))

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Refuse: uniform sampling has no priorities.

        Raises:
            ArgumentError: Always (a ``TypeError``); build the buffer with ``sampler="prioritized"``.
        """
        raise ArgumentError(
            "update_priorities needs a prioritized buffer: this one samples uniformly; "
            "pass sampler='prioritized' (or a PrioritizedSampler) when building it"
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's state: nothing (every draw comes from the buffer's generator)."""
        return {}

    def reset(self) -> None:
        """Nothing to forget."""

    def stats(self) -> dict[str, Any]:
        """Return no counters (uniform sampling keeps none)."""
        return {}

    def __repr__(self) -> str:
        return f"UniformSampler(replace={self.replace})"

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Accept the empty state of :meth:`state_dict`.

        Raises:
            ArgumentError: ``state`` is not empty (it belongs to another kind of sampler).
        """
        if state:
            raise ArgumentError(f"a UniformSampler has no state, received {sorted(state)[:5]}: another sampler's")
