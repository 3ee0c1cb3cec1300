"""Read views that give ``PriorityExperienceReplay`` DI-engine's ``buffer_idx``, ``sum_tree`` and ``min_tree``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from xreplay.compat.ding.priorities import DingPriorities

__all__ = ["EnteredIndices", "MinTreeView", "SumTreeView"]


class EnteredIndices(Mapping):
    """``buffer_idx``: slot -> index string of every live record entered in the trees, read from the store.

    Kept as one flag per slot instead of a dict of strings (DI-engine's
    ``{pivot: index}``); it reads and compares like that dict.
    """

    def __init__(self, per: Any) -> None:
        self._per = per

    def _live(self) -> np.ndarray:
        """Return the entered slots that hold a record, ascending."""
        store = self._per.buffer._store
        return np.flatnonzero(self._per._entered & (store.where >= 0))

    def __getitem__(self, slot: int) -> str:
        store = self._per.buffer._store
        if isinstance(slot, (int, np.integer)) and 0 <= slot < store.capacity and self._per._entered[slot]:
            record = store.items[slot]
            if record is not None:
                return record.index
        raise KeyError(slot)

    def __iter__(self) -> Iterator[int]:
        return iter(self._live().tolist())

    def __len__(self) -> int:
        return int(self._live().size)

    def __repr__(self) -> str:
        return repr(dict(self))


class SumTreeView:
    """``sum_tree``: DI-engine's sum tree, read from the one priority tree (leaves, ``reduce``, ``root``)."""

    def __init__(self, priorities: DingPriorities) -> None:
        self._priorities = priorities

    def leaves(self) -> np.ndarray:
        """Return every slot's leaf, ``priority ** alpha`` (0 for an empty slot)."""
        return self._priorities.leaves()

    def __getitem__(self, slot: Any) -> Any:
        return self._priorities.leaves()[slot]

    def reduce(self, start: int = 0, end: int | None = None) -> float:
        """Return the sum of leaves ``[start, end)``, added in DI-engine's order."""
        return self._priorities.reduce(start, end)

    def root(self) -> float:
        """Return the sum of every leaf, added in DI-engine's order."""
        return self._priorities.total()


class MinTreeView:
    """``min_tree``: the smallest positive leaf (zero leaves are never drawn, so they are left out)."""

    def __init__(self, priorities: DingPriorities) -> None:
        self._priorities = priorities

    def leaves(self) -> np.ndarray:
        """Return every slot's leaf where positive, ``inf`` elsewhere."""
        leaves = self._priorities.leaves()
        return np.where(leaves > 0.0, leaves, np.inf)

    def __getitem__(self, slot: Any) -> Any:
        return self.leaves()[slot]

    def reduce(self, start: int = 0, end: int | None = None) -> float:
        """Return the smallest positive leaf of ``[start, end)``."""
        if start == 0 and end is None:
            return self._priorities.minimum()
        return float(self.leaves()[start:end].min(initial=np.inf))

    def root(self) -> float:
        """Return the smallest positive leaf."""
        return self._priorities.minimum()
