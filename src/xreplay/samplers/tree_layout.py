"""Where a :class:`~xreplay.samplers.priority_tree.PriorityTree` keeps its nodes: level sizes and aligned arrays.

Every level holds a whole number of nodes' children (a multiple of the fanout)
and starts at a multiple of the fanout, and the arrays start on a boundary of
``alignment(fanout)`` bytes: so the children of any node lie in as few cache
lines as they fill (two at fanout 16), which a search then loads at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["aligned_full", "alignment", "level_sizes"]


def level_sizes(size: int, fanout: int, top_width: int) -> list[int]:
    """Return the stored node count of each level, leaves first, up to the first level of <= ``top_width``."""

    def whole_rows(count: int) -> int:
        return -(-count // fanout) * fanout

    count = whole_rows(max(int(size), 1))
    sizes = [count]
    while count > top_width:
        parents = count // fanout
        count = parents if parents == 1 else whole_rows(parents)
        sizes.append(count)
    return sizes


def alignment(fanout: int) -> int:
    """Return the byte alignment of a tree's arrays: a node's children in as few cache lines as they fill.

    64 bytes at least, a page at most.
    """
    node = 8 * fanout
    return 64 if node <= 64 else min(4096, 1 << (node - 1).bit_length())


def aligned_full(count: int, value: float, align: int) -> np.ndarray:
    """Return a float64 ``[count]`` array of ``value`` whose data starts at a multiple of ``align`` bytes.

    numpy itself aligns to 16 bytes, so without this a node's children would often span one more line.
    """
    raw = np.empty(8 * count + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    array = raw[start : start + 8 * count].view(np.float64)
    array.fill(value)
    return array
