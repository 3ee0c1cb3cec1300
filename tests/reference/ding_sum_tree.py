"""A naive model of DI-engine's sum tree, from ``/work/shared/specs/ding-buffer-spec.md`` §5.4.1.

A list of Python floats in heap order: ``2 * capacity`` nodes, the root at 1, leaf ``i`` at
``capacity + i`` (``capacity`` a power of two), every parent set to ``left + right`` after each
write. :meth:`RefSumTree.find` descends from the root: left while the left child's sum is
strictly greater than the mass, else subtract it and go right; ending on an empty last leaf it
walks left to the last non-empty one. It is slow and meant to be obviously right.
"""

from __future__ import annotations

__all__ = ["RefSumTree"]


class RefSumTree:
    """DI-engine's binary sum tree over ``size`` leaves (padded with zeros to a power of two)."""

    def __init__(self, size: int) -> None:
        capacity = 1
        while capacity < size:
            capacity *= 2
        self.capacity = capacity
        self.nodes = [0.0] * (2 * capacity)

    def set(self, leaf: int, value: float) -> None:
        """Set one leaf and recompute the sums on its path to the root."""
        node = self.capacity + leaf
        self.nodes[node] = float(value)
        while node > 1:
            node //= 2
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def total(self) -> float:
        """Return the root, as DI-engine's ``reduce()`` does (starting from 0.0)."""
        return 0.0 + self.nodes[1]

    def find(self, mass: float) -> int:
        """Return the leaf DI-engine's ``find_prefixsum_idx(mass)`` returns."""
        node = 1
        while node < self.capacity:
            left = 2 * node
            if self.nodes[left] > mass:
                node = left
            else:
                mass -= self.nodes[left]
                node = left + 1
        if node == 2 * self.capacity - 1 and self.nodes[node] == 0.0:
            while node >= self.capacity and self.nodes[node] == 0.0:
                node -= 1
        assert self.nodes[node] != 0.0, "DI-engine raises here"
        return node - self.capacity
