"""WriteStage: small writes of one client gathered into one message per ``write_batch`` transitions.

Each write to a shard costs one remote call, whatever its size; a writer
that adds a few transitions at a time spends its time in calls. With
``ClientOptions(write_batch=n)`` a client keeps its transitions here until
``n`` are staged (or :meth:`~xreplay.distributed.ReplayClient.flush` is
called), then sends them as one write: the items become visible to samplers
then, not before. A write whose fields, item shapes or dtypes differ from
the staged ones (or whose writer differs) sends the staged ones first, so a
bad write still fails on its own, in the shard, with the shard's error.

Example:
    >>> stage = WriteStage()
    >>> stage.add({"obs": np.zeros((2, 3))}, writer_id=0), stage.add({"obs": np.ones((3, 3))}, writer_id=0)
    (True, True)
    >>> stage.rows, stage.take()[0]["obs"].shape
    (5, (5, 3))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["WriteStage"]


def _layout(data: Mapping[str, Any], prefix: str = "") -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """Return each leaf's path, item shape and dtype (nested mappings flattened)."""
    out: list[tuple[str, tuple[int, ...], str]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.extend(_layout(value, f"{prefix}{key}/"))
        else:
            out.append((f"{prefix}{key}", tuple(value.shape[1:]), value.dtype.str))
    return tuple(out)


def _concatenate(parts: list[Any]) -> Any:
    """Concatenate same-layout batches leaf by leaf."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {key: _concatenate([part[key] for part in parts]) for key in first}
    return np.concatenate(parts)


class WriteStage:
    """Transitions waiting to be sent as one write."""

    def __init__(self) -> None:
        """Start empty."""
        self.parts: list[dict[str, Any]] = []
        self.rows = 0
        self.writer_id: int | None = None
        self._layout: tuple[Any, ...] | None = None

    def add(self, data: dict[str, Any], writer_id: int) -> bool:
        """Stage ``data`` and return True, or return False (nothing staged) if it does not join the staged ones."""
        layout = _layout(data)
        if self.parts and (layout != self._layout or writer_id != self.writer_id):
            return False
        self.parts.append(data)
        self.rows += int(next(_leaves(data)).shape[0]) if layout else 0
        self.writer_id, self._layout = writer_id, layout
        return True

    def take(self) -> tuple[dict[str, Any], int, int | None]:
        """Return the staged transitions as one batch, their count and their writer; empty the stage."""
        batch = self.parts[0] if len(self.parts) == 1 else _concatenate(self.parts)
        out = (batch, self.rows, self.writer_id)
        self.parts, self.rows, self.writer_id, self._layout = [], 0, None, None
        return out


def _leaves(data: Mapping[str, Any]) -> Iterator[np.ndarray]:
    """Yield the arrays of a nested batch."""
    for value in data.values():
        if isinstance(value, Mapping):
            yield from _leaves(value)
        else:
            yield value
