"""Write routing: which shard a write goes to.

A policy picks one of the shards that are live for each write; while a
shard is down its writes go elsewhere, so writers never stop.

Example:
    >>> live = np.array([True, False, True])
    >>> rr = RoundRobin(start=0)
    >>> [rr.choose(live, writer_id=0) for _ in range(3)]
    [0, 2, 0]
    >>> ByWriter().choose(live, writer_id=4), ByWriter().choose(live, writer_id=1)
    (2, 2)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from xreplay.errors import ShardUnavailableError

__all__ = ["ByWriter", "RoundRobin", "Routing", "make_routing"]


class Routing(Protocol):
    """Picks the shard of each write."""

    def choose(self, live: np.ndarray, writer_id: int) -> int:
        """Return the shard (an index of a True entry of ``live``) for the next write of ``writer_id``."""
        ...


def _next_live(live: np.ndarray, start: int) -> int:
    """Return the first live shard at or after ``start`` (cyclically)."""
    shards = live.shape[0]
    for offset in range(shards):  # one step per shard, not per item
        shard = (start + offset) % shards
        if live[shard]:
            return shard
    raise ShardUnavailableError(f"no shard of {shards} is live to take a write")


class RoundRobin:
    """Send each write to the next live shard in turn, starting from ``start`` (spread writers apart).

    Args:
        start: The first shard tried.
    """

    name = "round_robin"

    def __init__(self, start: int = 0):
        """Start at shard ``start``."""
        self.turn = int(start)

    def choose(self, live: np.ndarray, writer_id: int) -> int:
        """Return the next live shard."""
        shard = _next_live(live, self.turn)
        self.turn = shard + 1
        return shard


class ByWriter:
    """Send every write of one writer to shard ``writer_id % shards``, so its episodes and streams stay whole.

    While that shard is down its writes go to the next live shard.
    """

    name = "by_writer"

    def choose(self, live: np.ndarray, writer_id: int) -> int:
        """Return the writer's shard, or the next live one."""
        return _next_live(live, int(writer_id) % live.shape[0])


def make_routing(routing: str | Routing, writer_id: int) -> Routing:
    """Return the policy named ``"round_robin"`` or ``"by_writer"``, or ``routing`` itself."""
    if routing == "round_robin":
        return RoundRobin(start=writer_id)
    if routing == "by_writer":
        return ByWriter()
    if isinstance(routing, str) or not callable(getattr(routing, "choose", None)):
        raise ValueError(f"routing must be 'round_robin', 'by_writer' or an object with choose(); got {routing!r}")
    return routing
