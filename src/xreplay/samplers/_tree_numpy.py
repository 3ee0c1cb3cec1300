"""The numpy back end of :class:`xreplay.samplers.priority_tree.PriorityTree`: a batch descent and parents.

Each function performs the floating point operations that the numba kernels of
:mod:`xreplay.samplers._tree_numba` perform, in the same order (a parent's sum
adds its children left to right; a descent accumulates them in that order and
keeps the mass carried into a child below the child's sum), so both back ends
give bit-identical trees and results.
"""

from __future__ import annotations

import numpy as np

__all__ = ["combine", "descend"]


def descend(levels: list[np.ndarray], top: int, fanout: int, ends: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Return the leaf holding each ``mass`` (clamped to ``[0, ends[-1])``; overwritten).

    ``levels`` are the tree's stored levels (leaves first), ``ends`` the running sum of level ``top``.
    """
    node = np.searchsorted(ends, mass, side="right")  # first top node ending past the mass
    mass -= np.where(node > 0, ends[node - 1], 0.0)  # the mass left inside that node
    if top == 0:
        return node
    np.minimum(mass, np.nextafter(levels[top][node], 0.0), out=mass)
    n = mass.shape[0]
    columns = np.arange(n)
    rows = np.arange(fanout, dtype=np.int64)[:, None]  # child offsets, as a column
    running = np.zeros((fanout + 1, n))  # row k: sum of the first k children, added left to right
    for level in range(top, 0, -1):  # ``node`` is on ``level``; descend to one of its children
        below = levels[level - 1]
        base = node * fanout
        children = below.take(base + rows)  # [fanout, n]
        running[1] = children[0]
        for j in range(1, fanout - 1):
            np.add(running[j], children[j], out=running[j + 1])
        k = np.count_nonzero(running[1:fanout] <= mass, axis=0)  # children ending at or before the mass
        node = base + k
        if level > 1:  # the mass left inside the child, kept below the child's sum
            mass -= running.take(k * n + columns)
            np.minimum(mass, np.nextafter(below.take(node), 0.0), out=mass)
    return node


def combine(block: np.ndarray, min_block: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the sums (rows added first to last) and the minima of ``block``'s columns of children.

    ``min_block`` holds the children's minima; None when the children are
    leaves, whose minimum is the positive leaf itself.
    """
    sums = block[0] + block[1]
    for k in range(2, block.shape[0]):
        sums += block[k]
    if min_block is None:
        mins = np.where(block > 0.0, block, np.inf).min(axis=0)
    else:
        mins = min_block.min(axis=0)
    return sums, mins
