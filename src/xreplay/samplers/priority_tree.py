"""PriorityTree: a sum tree and a min tree in one interleaved array.

Prioritized sampling needs the total and the prefix-sum search of a sum tree
and the smallest priority (for the largest importance weight) of a min tree,
and it updates both with the same indices. Keeping node ``n``'s sum at
``data[2n]`` and its minimum at ``data[2n + 1]`` puts both children of a
parent, with both their sums and minima, in one 32-byte row: a batch update
gathers one row per touched parent and level, half the cache misses of two
separate trees. The same top-level shortcut as :mod:`xreplay.samplers.sum_tree`
applies: levels above ``top_width`` nodes are not stored, the root is reduced
from the top level, and a search starts with one ``searchsorted`` over the
running sum of the top level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.samplers.sum_tree import DEFAULT_TOP_WIDTH, _capacity

__all__ = ["PriorityTree"]


class PriorityTree:
    """Sum and min over float64 leaves with batch update and batch prefix-sum search.

    Unset and zero leaves count 0 in the sum and are ignored by the minimum,
    which is the smallest positive leaf.

    Args:
        size: Number of leaves.
        top_width: Widest level reduced in one call instead of walked node
            by node (rounded down to a power of two).

    Example:
        >>> t = PriorityTree(4)
        >>> t.update(np.array([0, 1, 3]), np.array([1.0, 2.0, 3.0]))
        >>> t.total(), t.min(), t.find(np.array([0.5, 1.0, 2.9, 3.0])).tolist()
        (6.0, 1.0, [0, 1, 1, 3])
    """

    def __init__(self, size: int, top_width: int = DEFAULT_TOP_WIDTH):
        """Hold ``size`` unset leaves."""
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        self.size = int(size)
        self.capacity = _capacity(self.size)
        self.top = min(self.capacity, 1 << max(0, int(top_width).bit_length() - 1))
        self.depth = self.capacity.bit_length() - 1
        self.data = np.empty(4 * self.capacity, dtype=np.float64)
        self._rows = self.data.reshape(-1, 4)  # row p: sum and min of node 2p, then of node 2p + 1
        self.reset()

    def reset(self) -> None:
        """Unset every leaf."""
        self.data[0::2] = 0.0
        self.data[1::2] = np.inf

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (the last value wins for repeated indices)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        data, rows, top = self.data, self._rows, self.top
        at = (indices + self.capacity) << 1  # position of each leaf's sum
        data[at] = values
        data[at + 1] = np.where(values > 0.0, values, np.inf)
        parents = at >> 2
        while parents[0] >= top:  # every query is on the same level
            # Repeated parents recompute the same value, so no de-duplication is needed.
            children = rows.take(parents, axis=0)
            at = parents << 1
            data[at] = children[:, 0] + children[:, 2]
            data[at + 1] = np.minimum(children[:, 1], children[:, 3])
            parents >>= 1

    def fill(self, start: int, stop: int, value: float) -> None:
        """Set the contiguous leaves ``[start, stop)`` to ``value`` with slice operations."""
        if stop <= start:
            return
        data, top = self.data, self.top
        lo, hi = start + self.capacity, stop + self.capacity  # node range [lo, hi)
        data[2 * lo : 2 * hi : 2] = value
        data[2 * lo + 1 : 2 * hi : 2] = value if value > 0.0 else np.inf
        lo, hi = lo >> 1, ((hi - 1) >> 1) + 1  # parents of the range
        while lo >= top:
            children = self._rows[lo:hi]
            data[2 * lo : 2 * hi : 2] = children[:, 0] + children[:, 2]
            data[2 * lo + 1 : 2 * hi : 2] = np.minimum(children[:, 1], children[:, 3])
            lo, hi = lo >> 1, ((hi - 1) >> 1) + 1

    def __getitem__(self, indices: Any) -> np.ndarray:
        """Return the leaf values at ``indices`` (0 where unset)."""
        return self.data[(np.asarray(indices) + self.capacity) << 1]

    def leaves(self) -> np.ndarray:
        """Return the ``size`` leaf values (0 where unset) as a strided view."""
        return self.data[2 * self.capacity : 2 * (self.capacity + self.size) : 2]

    def total(self) -> float:
        """Return the sum of all leaves."""
        return float(self.data[2 * self.top : 4 * self.top : 2].sum())

    def min(self) -> float:
        """Return the smallest positive leaf (``inf`` when there is none)."""
        return float(self.data[2 * self.top + 1 : 4 * self.top : 2].min())

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Return, for each ``mass``, the leaf whose cumulative range holds it.

        Leaf ``i`` holds the masses in ``[sum(leaves[:i]), sum(leaves[:i + 1]))``,
        so a zero leaf is never returned while any leaf is positive. Masses
        below 0 count as 0 and masses at or past the total as the largest
        mass below it.

        Raises:
            ValueError: Every leaf is zero.
        """
        ends = np.cumsum(self.data[2 * self.top : 4 * self.top : 2])  # running sum of the top level
        total = float(ends[-1])
        if not total > 0.0:
            raise ValueError("cannot sample: every priority is zero")
        mass = np.clip(np.asarray(mass, dtype=np.float64).reshape(-1), 0.0, np.nextafter(total, 0.0))
        position = np.searchsorted(ends, mass, side="right")  # first top node ending past the mass
        mass -= np.where(position > 0, ends[position - 1], 0.0)  # mass left inside that node
        node = position + self.top
        data = self.data
        for _ in range(self.depth - (self.top.bit_length() - 1)):
            node <<= 1  # left child
            left = data.take(node << 1)
            right = mass >= left
            mass -= left * right
            node += right  # the right child where the mass lies past the left one
        leaf = node - self.capacity
        empty = data.take(node << 1) <= 0.0
        if empty.any():  # only after float rounding pushed a mass past a subtree's end
            positive = np.flatnonzero(self.leaves() > 0.0)
            before = np.searchsorted(positive, leaf[empty], side="right") - 1
            leaf[empty] = positive[np.maximum(before, 0)]
        return leaf

    def load_leaves(self, values: np.ndarray) -> None:
        """Replace all ``size`` leaves with ``values`` (``nan`` for unset) and rebuild the tree."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape[0] != self.size:
            raise ValueError(f"expected {self.size} leaf values, received {values.shape[0]}")
        self.reset()
        unset = np.isnan(values)
        start = 2 * self.capacity
        self.data[start : start + 2 * self.size : 2] = np.where(unset, 0.0, values)
        self.data[start + 1 : start + 2 * self.size : 2] = np.where(unset | (values <= 0.0), np.inf, values)
        lo, hi = self.capacity >> 1, self.capacity
        while lo >= self.top:
            children = self._rows[lo:hi]
            self.data[2 * lo : 2 * hi : 2] = children[:, 0] + children[:, 2]
            self.data[2 * lo + 1 : 2 * hi : 2] = np.minimum(children[:, 1], children[:, 3])
            lo, hi = lo >> 1, hi >> 1
