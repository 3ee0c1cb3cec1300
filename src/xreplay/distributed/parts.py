"""What the client's parts (sample requests, writes, priority updates, persistence) use of their client.

They take the :class:`~xreplay.distributed.client.ReplayClient` they serve; this protocol names what they
read of it, so that they depend on it without importing it (the client imports them).
"""

from __future__ import annotations

import collections
from typing import Any, Protocol

import numpy as np

__all__ = ["ClientParts"]


class ClientParts(Protocol):
    """The members of a replay client that its parts use."""

    backend: Any
    options: Any
    info: Any
    states: list[Any]
    live: np.ndarray
    num_shards: int
    rng: np.random.Generator
    batches_drawn: int
    writer_id: int
    routing: Any
    updates: Any
    counters: collections.Counter[str]

    def refresh(self) -> list[Any]:
        """Return every shard's state, refreshed."""

    def flush(self) -> None:
        """Wait for pending writes and updates."""

    def _observe(self, state: Any) -> None:
        """Record a shard's state."""

    def _mark_down(self, shard: int, cause: object) -> None:
        """Record that a shard is down."""

    def _service(self) -> None:
        """Probe down shards."""
