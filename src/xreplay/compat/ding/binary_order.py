"""DI-engine's sum-tree float order, reproduced over the leaves of xreplay's one priority tree.

DI-engine keeps priorities in a complete binary tree (``2 ** ceil(log2(size))``
leaves, every parent the float sum ``left + right``), takes the total from its
root and finds a mass by descending from the root (left while the left
child's sum is greater than the mass, else subtract it and go right).
xreplay's :class:`~xreplay.samplers.PriorityTree` holds the same leaves but
adds sixteen children at a time, left to right, so its sums can differ from
DI-engine's in the last bits. Two things depend on those bits:

* the total, which scales every drawn mass and divides every importance
  weight: :class:`BinaryOrderTotal` gives DI-engine's root exactly (the
  binary-order sum of every aligned block of sixteen leaves is kept and
  refreshed only for blocks whose leaves changed, then the block sums are
  added pairwise);
* a mass that lies within rounding error of a boundary between two leaves
  may fall on the other side in the other order: :func:`binary_find` replays
  DI-engine's descent for such masses over :func:`binary_levels`, the whole
  binary tree computed on demand (O(size), only when such a mass occurs).

A parent in DI-engine's tree always holds ``left + right`` of its current
children (every write recomputes the path to the root), so the pairwise
reduction of the current leaves gives its nodes bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BinaryOrderTotal", "binary_find", "binary_levels", "binary_reduce", "tree_capacity"]

_BLOCK_BITS = 4  # blocks of 16 leaves


def tree_capacity(size: int) -> int:
    """Return DI-engine's tree capacity for ``size`` records: the smallest power of two >= ``size``."""
    return 1 << max(0, int(size) - 1).bit_length()


def _pairwise(values: np.ndarray) -> np.ndarray:
    """Add adjacent columns of ``values`` (``[rows, 2 ** k]``) pairwise down to one column, as parents do."""
    while values.shape[-1] > 1:
        values = values[..., 0::2] + values[..., 1::2]
    return values


def binary_levels(leaves: np.ndarray, capacity: int) -> list[np.ndarray]:
    """Return every level of DI-engine's sum tree over ``leaves``: leaves first (zero-padded), root last.

    Args:
        leaves: The leaf values (at most ``capacity``).
        capacity: The tree's number of leaves, a power of two.
    """
    level = np.zeros(capacity)
    level[: leaves.shape[0]] = leaves
    levels = [level]
    while level.shape[0] > 1:
        level = level[0::2] + level[1::2]  # node j of the next level = left + right
        levels.append(level)
    return levels


def binary_find(levels: list[np.ndarray], mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the leaf DI-engine's descent finds for each mass, and whether DI-engine would return it.

    The descent goes left while the left child's sum is greater than the
    mass, else subtracts that sum and goes right. When it ends on the last
    leaf and that leaf is zero, DI-engine walks left to the last non-zero
    leaf. ``ok`` is False where DI-engine raises instead (the walk reaches
    leaf 0, or the descent ends on another zero leaf).

    Args:
        levels: :func:`binary_levels` of the current leaves.
        mass: The masses (float64).
    """
    node = np.zeros(mass.shape[0], dtype=np.int64)
    rest = np.array(mass, dtype=np.float64)
    for level in range(len(levels) - 1, 0, -1):  # ``node`` is on ``level``; its children are on ``level - 1``
        node <<= 1  # left child
        left = levels[level - 1].take(node)
        right = ~(left > rest)
        np.subtract(rest, left, out=rest, where=right)  # the mass left past the left child
        node += right
    leaves = levels[0]
    last = leaves.shape[0] - 1
    ok = leaves.take(node) != 0.0
    at_end = (node == last) & ~ok
    if at_end.any():
        positive = np.flatnonzero(leaves)
        if positive.size and positive[-1] != 0:  # DI-engine refuses when the walk reaches leaf 0
            node[at_end] = positive[-1]
            ok[at_end] = True
    return node, ok


def binary_reduce(levels: list[np.ndarray], start: int, end: int) -> float:
    """Return DI-engine's ``SumSegmentTree.reduce(start, end)``: the nodes covering leaves ``[start, end)``, folded.

    Args:
        levels: :func:`binary_levels` of the current leaves.
        start: First leaf.
        end: One past the last leaf (``start < end``).
    """
    capacity = levels[0].shape[0]
    start, end = start + capacity, end + capacity  # heap numbering: node i's children are 2i and 2i + 1
    result = 0.0
    level = 0
    while start < end:
        nodes, first = levels[level], capacity >> level  # the level's nodes are numbered first .. 2 * first - 1
        if start & 1:  # a right child: fold it in and move past it
            result = result + float(nodes[start - first])
            start += 1
        if end & 1:  # the node before ``end`` is a right child
            end -= 1
            result = result + float(nodes[end - first])
        start >>= 1
        end >>= 1
        level += 1
    return result


class BinaryOrderTotal:
    """DI-engine's root sum of a set of leaves, kept up to date cheaply as leaves change.

    The binary-order sum of every aligned block of 16 leaves is stored; a
    block is summed again only after one of its leaves changed (:meth:`mark`),
    and the total adds the block sums pairwise, as the levels above them do.

    Args:
        size: Number of leaves (records); DI-engine pads them with zeros to a power of two.

    Example:
        >>> total = BinaryOrderTotal(3)
        >>> leaves = np.array([0.1, 0.2, 0.3])
        >>> total.mark(np.arange(3))
        >>> total.value(leaves) == (0.1 + 0.2) + (0.3 + 0.0)
        True
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.capacity = tree_capacity(self.size)
        self.block = min(1 << _BLOCK_BITS, self.capacity)
        self._shift = self.block.bit_length() - 1
        self._sums = np.zeros(self.capacity // self.block)  # binary-order sum of each block of leaves
        self._dirty = np.zeros(self._sums.shape[0], dtype=bool)
        self._any_dirty = False
        self._total = 0.0
        self._columns = np.arange(self.block, dtype=np.int64)

    def mark(self, slots: np.ndarray) -> None:
        """Record that the leaves of ``slots`` changed."""
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size:
            self._dirty[slots >> self._shift] = True
            self._any_dirty = True

    def mark_all(self) -> None:
        """Record that every leaf may have changed."""
        self._dirty[:] = True
        self._any_dirty = True

    def reset(self) -> None:
        """Record that every leaf is zero."""
        self._sums[:] = 0.0
        self._dirty[:] = False
        self._any_dirty = False
        self._total = 0.0

    def value(self, leaves: np.ndarray) -> float:
        """Return DI-engine's root over ``leaves`` (the current values of the ``size`` leaves)."""
        if self._any_dirty:
            blocks = np.flatnonzero(self._dirty)
            where = (blocks << self._shift)[:, None] + self._columns  # [blocks, 16] leaf numbers
            values = leaves.take(np.minimum(where, self.size - 1))
            if self.capacity > self.size:
                values[where >= self.size] = 0.0  # DI-engine's padding leaves
            self._sums[blocks] = _pairwise(values)[:, 0]
            self._dirty[blocks] = False
            self._any_dirty = False
            self._total = 0.0 + float(_pairwise(self._sums)[0])  # DI-engine's reduce() starts from 0.0
        return self._total
