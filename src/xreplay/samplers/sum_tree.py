"""Vectorized sum and min segment trees over float64 priorities.

The trees are flat arrays of ``2 * capacity`` nodes (``capacity`` a power of
two): the root is node 1 and leaf ``i`` is node ``capacity + i``. Batch
updates set many leaves and then refresh their ancestors one level at a time;
batch prefix-sum search descends all queries together, one level at a time.
Both cost O(batch x log capacity) numpy work and no Python loop per item.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MinTree", "SumTree"]


def _capacity(size: int) -> int:
    """Return the smallest power of two >= ``size`` (at least 1)."""
    return 1 << max(0, int(size - 1).bit_length()) if size > 1 else 1


class _SegmentTree:
    """A complete binary tree whose parents combine their children with ``_combine``."""

    _neutral: float = 0.0

    def __init__(self, size: int):
        """Hold ``size`` leaves, all neutral."""
        self.size = int(size)
        self.capacity = _capacity(self.size)
        self.depth = self.capacity.bit_length() - 1
        self.nodes = np.full(2 * self.capacity, self._neutral, dtype=np.float64)

    @staticmethod
    def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (the last value wins for repeated indices)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return
        nodes = self.nodes
        nodes[indices + self.capacity] = np.asarray(values, dtype=np.float64).reshape(-1)
        parents = (indices + self.capacity) >> 1
        for _ in range(self.depth):
            # Repeated parents recompute the same value, so no de-duplication is needed.
            nodes[parents] = self._combine(nodes[2 * parents], nodes[2 * parents + 1])
            parents >>= 1

    def __getitem__(self, indices: np.ndarray | int) -> np.ndarray | float:
        """Return the leaf values at ``indices``."""
        return self.nodes[np.asarray(indices) + self.capacity]

    def reset(self) -> None:
        """Set every leaf back to neutral."""
        self.nodes.fill(self._neutral)

    def leaves(self) -> np.ndarray:
        """Return a view of the ``size`` leaves."""
        return self.nodes[self.capacity : self.capacity + self.size]

    def root(self) -> float:
        """Return the combination of all leaves."""
        return float(self.nodes[1])


class SumTree(_SegmentTree):
    """Sum tree with batch prefix-sum search.

    Example:
        >>> t = SumTree(4)
        >>> t.update(np.array([0, 1, 3]), np.array([1.0, 2.0, 3.0]))
        >>> t.root(), t.find(np.array([0.5, 1.0, 2.9, 3.0])).tolist()
        (6.0, [0, 1, 1, 3])
    """

    _neutral = 0.0

    @staticmethod
    def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return left + right

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Return, for each ``mass`` in ``[0, root)``, the leaf whose cumulative range holds it.

        Descends left while the left child's sum is strictly greater than the
        remaining mass. A mass at or past the total (float rounding) lands on
        the last leaf with a positive value, so an empty leaf is never returned
        while any leaf is positive.
        """
        mass = np.array(mass, dtype=np.float64).reshape(-1)
        nodes = self.nodes
        idx = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * idx
            left_sum = nodes[left]
            right = mass >= left_sum
            mass -= np.where(right, left_sum, 0.0)
            idx = left + right
        leaf = idx - self.capacity
        empty = nodes[idx] <= 0.0
        if empty.any():
            leaf[empty] = self._last_positive_at_or_before(leaf[empty])
        return leaf

    def _last_positive_at_or_before(self, leaves: np.ndarray) -> np.ndarray:
        """Return, for each leaf, the last leaf at or before it with a positive value (else the first positive)."""
        positive = np.flatnonzero(self.leaves() > 0.0)
        if positive.size == 0:
            raise ValueError("cannot sample: every priority is zero")
        pos = np.searchsorted(positive, leaves, side="right") - 1
        return positive[np.maximum(pos, 0)]


class MinTree(_SegmentTree):
    """Min tree: the root is the smallest leaf (``inf`` when all are neutral).

    Example:
        >>> t = MinTree(3)
        >>> t.update(np.array([0, 2]), np.array([5.0, 2.0]))
        >>> t.root()
        2.0
    """

    _neutral = float("inf")

    @staticmethod
    def _combine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.minimum(left, right)
