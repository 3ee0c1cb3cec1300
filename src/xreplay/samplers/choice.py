"""The sampler a buffer composes, chosen by name or given."""

from __future__ import annotations

from typing import Any

from xreplay.errors import ArgumentError
from xreplay.samplers.base import MEMBERS
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.uniform import UniformSampler

__all__ = ["make_sampler"]


def make_sampler(sampler: Any, capacity: int) -> Any:
    """Return the sampler a buffer of ``capacity`` slots composes: named (``"uniform"``, ``"prioritized"``) or given.

    A given sampler is bound to ``capacity`` (see :meth:`~xreplay.samplers.base.Sampler.bind`).

    Raises:
        ArgumentError: ``sampler`` is neither a known name nor an object with the Sampler protocol.
        ValueError: A given sampler was built for another capacity (names both).

    Example:
        >>> make_sampler("prioritized", 8).capacity
        8
    """
    if isinstance(sampler, str):
        if sampler == "uniform":
            return UniformSampler()
        if sampler == "prioritized":
            return PrioritizedSampler(capacity)
    elif all(callable(getattr(sampler, name, None)) for name in MEMBERS):
        sampler.bind(capacity)
        return sampler
    raise ArgumentError(
        f"sampler must be 'uniform', 'prioritized' or a sampler object (with {', '.join(MEMBERS)}), got {sampler!r}"
    )
