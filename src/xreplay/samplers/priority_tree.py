"""PriorityTree: a 16-ary sum tree with a min over the same leaves, run by numpy or numba.

Prioritized sampling needs the total and the prefix-sum search of a sum tree
and the smallest positive priority (for the largest importance weight) of a
min tree, and it updates both with the same indices. One tree serves both:

* Every leaf is stored once (float64, ``size`` rounded up to a multiple of
  the fanout). Minima are kept for the inner levels only: a leaf's minimum
  is the leaf itself when positive.
* Each inner node has ``fanout`` (16) children, contiguous in memory (two
  cache lines), and stores their sum and their minimum.
* Only the inner levels up to the *top level*, the first with at most
  ``top_width`` (4096) nodes, are stored. The total is the running sum of
  the top level and a search starts with one binary search in that running
  sum. At a million leaves two inner levels are stored (62,512 and 3,920
  nodes): the tree takes 8.0 MB of leaves and 1.06 MB of sums and minima.
  Its arrays are aligned so that a node's children fill whole cache lines
  (:mod:`xreplay.samplers.tree_layout`).
* A parent's sum adds its children left to right, the same order in which
  :meth:`PriorityTree.find` accumulates them during a descent, and the mass
  carried into a child is kept below the child's sum, so a descent never
  runs past a node's last child and never ends on a zero leaf.

Two interchangeable back ends run the batch operations: numpy (a few dozen
numpy calls per batch) and, when the optional ``numba`` package is installed
(``pip install xreplay[accel]``), compiled loops
(:mod:`xreplay.samplers._tree_numba`; the numpy code is in
:mod:`xreplay.samplers._tree_numpy`). Both perform the same floating point
operations in the same order and give bit-identical trees and results;
:attr:`PriorityTree.backend` names the one in use and ``XREPLAY_NUMBA=0`` in
the environment turns numba off. numba stays optional because the core
depends on torch and numpy only; it is used because the S2 benchmark's
prioritized loop (sample 256, update 256 at a million transitions) is bound
by numpy's per-call overhead in the tree, which compiled loops remove.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from xreplay.accel import kernels
from xreplay.errors import IndexOutOfRangeError
from xreplay.samplers._tree_numpy import combine, descend
from xreplay.samplers.tree_layout import aligned_full, alignment, level_sizes
from xreplay.storage.resources import check_index_range

__all__ = ["DEFAULT_FANOUT", "DEFAULT_TOP_WIDTH", "PriorityTree", "numba_available"]

DEFAULT_FANOUT = 16
DEFAULT_TOP_WIDTH = 4096
_FUSED_STATS = 32  # leaves from which a checked update also refreshes the top level's stats in its kernel call
_BLOCK_ROWS = 4096  # parents recomputed per numpy call in range operations (bounds temporaries)


def _numba_kernels() -> ModuleType | None:
    """Return the compiled numba kernels, or None when numba is missing or disabled (``XREPLAY_NUMBA=0``)."""
    return kernels("xreplay.samplers._tree_numba", "numpy")


def numba_available() -> bool:
    """Return whether the numba back end can be used (numba importable and not disabled)."""
    return _numba_kernels() is not None


class PriorityTree:
    """Sum and min over float64 leaves with batch update and batch prefix-sum search.

    Unset and zero leaves count 0 in the sum and are ignored by the minimum,
    which is the smallest positive leaf.

    Args:
        size: Number of leaves.
        top_width: Widest level searched with one binary search instead of a
            descent (at least 1).
        fanout: Children per inner node (at least 2).
        backend: ``"numba"``, ``"numpy"`` or None: numba when it is
            installed, numpy otherwise.

    Raises:
        ValueError: ``size`` < 0, ``fanout`` not >= 2, ``top_width`` < 1 or an unknown backend.
        ImportError: ``backend="numba"`` without numba installed.

    Example:
        >>> t = PriorityTree(4)
        >>> t.update(np.array([0, 1, 3]), np.array([1.0, 2.0, 3.0]))
        >>> t.total(), t.min(), t.find(np.array([0.5, 1.0, 2.9, 3.0])).tolist()
        (6.0, 1.0, [0, 1, 1, 3])
    """

    def __init__(
        self,
        size: int,
        top_width: int = DEFAULT_TOP_WIDTH,
        fanout: int = DEFAULT_FANOUT,
        backend: str | None = None,
    ):
        """Hold ``size`` unset leaves."""
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        if fanout < 2 or top_width < 1:
            raise ValueError(f"tree fanout must be >= 2 and top_width >= 1, got {fanout}, {top_width}")
        if backend not in (None, "numba", "numpy"):
            raise ValueError(f"backend must be 'numba', 'numpy' or None, got {backend!r}")
        kernels = None if backend == "numpy" else _numba_kernels()
        if backend == "numba" and kernels is None:
            raise ImportError("backend='numba' needs numba (pip install 'xreplay[accel]') and XREPLAY_NUMBA != 0")
        self._kernels = kernels
        self.backend = "numba" if kernels is not None else "numpy"
        self.size = int(size)
        self.fanout = int(fanout)
        sizes = level_sizes(self.size, self.fanout, int(top_width))
        self.top = len(sizes) - 1  # level searched by binary search; levels 1 .. top are inner levels
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # level l: [offsets[l], offsets[l+1])
        align = alignment(self.fanout)
        self.sums = aligned_full(int(self.offsets[-1]), 0.0, align)
        self.mins = aligned_full(int(self.offsets[-1] - self.offsets[1]), np.inf, align)
        bounds = list(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True))
        base = int(self.offsets[1])
        self._sum_levels = [self.sums[a:b] for a, b in bounds]
        self._min_levels = [self.sums[:0]] + [self.mins[a - base : b - base] for a, b in bounds[1:]]
        self._rows = np.arange(self.fanout, dtype=np.int64)[:, None]  # child offsets, as a column
        self._ends: np.ndarray | None = None  # running sum of the top level, None when stale
        self._top_nodes = int(self.offsets[self.top + 1] - self.offsets[self.top])  # nodes of the top level
        self._min = float("inf")  # smallest positive leaf, valid while ``_ends`` is not None

    def nbytes(self) -> int:
        """Return the bytes held by the tree's arrays."""
        return int(self.sums.nbytes + self.mins.nbytes)

    def reset(self) -> None:
        """Unset every leaf."""
        self.sums.fill(0.0)
        self.mins.fill(np.inf)
        self._ends = None

    # -- writes ---------------------------------------------------------------

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (the last value wins for repeated indices).

        Raises:
            IndexOutOfRangeError: An index is outside ``[0, size)`` (nothing changes).
            ValueError: ``values`` is not one value per index.
        """
        indices, values = self._checked(indices, values)
        if indices.size == 0:
            return
        self._ends = None
        if self._kernels is not None:
            self._kernels.tree_update(self.sums, self.mins, self.offsets, self.fanout, indices, values)
            return
        self.sums[indices] = values
        nodes = indices
        for level in range(1, self.top + 1):
            nodes = nodes // self.fanout
            children = nodes * self.fanout + self._rows  # [fanout, batch] positions on the level below
            sums, mins = combine(
                self._sum_levels[level - 1].take(children),
                self._min_levels[level - 1].take(children) if level > 1 else None,
            )
            self._sum_levels[level][nodes] = sums
            self._min_levels[level][nodes] = mins

    def update_where(self, indices: np.ndarray, values: np.ndarray, keep: np.ndarray) -> None:
        """Set leaves ``indices[keep]`` to ``values[keep]`` (``keep`` a bool mask; one kernel call with numba).

        The same as ``update(indices[keep], values[keep])``, without the two selected copies.

        Raises:
            IndexOutOfRangeError: A kept index is outside ``[0, size)`` (nothing changes).
            ValueError: ``values`` or ``keep`` is not one per index.
        """
        keep = np.ascontiguousarray(keep, dtype=np.bool_).reshape(-1)
        indices, values = self._checked(indices, values, keep)
        count = int(np.count_nonzero(keep))
        if count == 0:
            return
        if self._kernels is None:
            self.update(indices[keep], values[keep])
            return
        self._ends = None
        self._kernels.update_fresh(self.sums, self.mins, self.offsets, self.fanout, indices, values, keep, count)

    def _checked(
        self, indices: np.ndarray, values: np.ndarray, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``indices`` (int64) and ``values`` (float64) as contiguous ``[n]`` arrays, checked.

        Only the indices ``keep`` selects must lie in ``[0, size)`` (all of them when None).

        Raises:
            IndexOutOfRangeError: An index is outside ``[0, size)``.
            ValueError: ``values`` (or ``keep``) is not one per index.
        """
        indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        values = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        if values.shape != indices.shape:
            raise ValueError(f"tree update: got {indices.shape[0]} indices but {values.shape[0]} values")
        if keep is not None and keep.shape != indices.shape:
            raise ValueError(f"tree update: got {indices.shape[0]} indices but {keep.shape[0]} keep flags")
        check_index_range(indices if keep is None else indices[keep], self.size, "tree leaf index", "[0, {size})")
        return indices, values

    def _set_checked(self, indices: np.ndarray, values: np.ndarray, keep: np.ndarray, count: int) -> None:
        """Set leaves ``indices[keep]`` to ``values[keep]`` (numba only; ``count`` kept, at least one).

        ``indices`` (int64), ``values`` (float64) and ``keep`` (bool) are contiguous ``[n]`` arrays whose
        indices were checked to lie in ``[0, size)``: one kernel call, no conversion. From ``_FUSED_STATS``
        leaves on (a batch, as after a sample), the same call also refreshes the total and minimum the next
        draw reads; below, the next draw does (several small updates between two draws pay for it once).
        """
        kernels = self._kernels
        if count < _FUSED_STATS:  # a few leaves (per-item updates): the next draw refreshes the stats once
            self._ends = None
            if count == indices.shape[0]:
                kernels.tree_update(self.sums, self.mins, self.offsets, self.fanout, indices, values)  # type: ignore[union-attr]
            else:
                kernels.update_fresh(self.sums, self.mins, self.offsets, self.fanout, indices, values, keep, count)  # type: ignore[union-attr]
            return
        ends = np.empty(self._top_nodes)
        self._min = kernels.update_with_stats(  # type: ignore[union-attr]
            self.sums, self.mins, self.offsets, self.fanout, indices, values, keep, count, ends
        )
        self._ends = ends  # the running sum of the top level, written by the same call

    def fill(self, start: int, stop: int, value: float) -> None:
        """Set the contiguous leaves ``[start, stop)`` to ``value`` with slice operations.

        Raises:
            IndexOutOfRangeError: The range is not inside ``[0, size]`` (nothing changes).
        """
        start, stop = int(start), int(stop)
        if stop <= start:
            return
        if start < 0 or stop > self.size:
            raise IndexOutOfRangeError(f"tree leaf range [{start}, {stop}) is outside [0, {self.size})")
        self._ends = None
        if self._kernels is not None:
            self._kernels.tree_fill(self.sums, self.mins, self.offsets, self.fanout, start, stop, float(value))
            return
        self.sums[start:stop] = value
        self._refresh_range(start, stop - 1)

    def _refresh_range(self, first: int, last: int) -> None:
        """Recompute the ancestors of leaves ``first .. last`` (inclusive), level by level, in blocks."""
        fanout = self.fanout
        for level in range(1, self.top + 1):
            first, last = first // fanout, last // fanout
            below = self._sum_levels[level - 1].reshape(-1, fanout)
            mins_below = self._min_levels[level - 1].reshape(-1, fanout) if level > 1 else None
            for lo in range(first, last + 1, _BLOCK_ROWS):
                nodes = slice(lo, min(lo + _BLOCK_ROWS, last + 1))
                sums, mins = combine(below[nodes].T, None if mins_below is None else mins_below[nodes].T)
                self._sum_levels[level][nodes] = sums
                self._min_levels[level][nodes] = mins

    def load_leaves(self, values: np.ndarray) -> None:
        """Replace all ``size`` leaves with ``values`` (``nan`` for unset) and rebuild the tree."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape[0] != self.size:
            raise ValueError(f"expected {self.size} leaf values, received {values.shape[0]}")
        self.reset()
        self.sums[: self.size] = np.where(np.isnan(values), 0.0, values)
        self._refresh_range(0, self._sum_levels[0].shape[0] - 1)

    # -- reads ----------------------------------------------------------------

    def __getitem__(self, indices: Any) -> np.ndarray:
        """Return the leaf values at ``indices`` (0 where unset)."""
        return self.sums[: self.size][indices]

    def leaves(self) -> np.ndarray:
        """Return a view of the ``size`` leaf values (0 where unset)."""
        return self.sums[: self.size]

    def _top_ends(self) -> np.ndarray:
        """Return the running sum of the top level (cached with the minimum until the next write)."""
        if self._ends is None:
            top = self._sum_levels[self.top]
            if self._kernels is not None:  # the same left-to-right sum as np.cumsum, without its overhead
                self._ends = np.empty(top.shape[0])
                self._min = self._kernels.top_stats(top, self._min_levels[self.top], self.top, self._ends)
            else:
                self._ends = np.cumsum(top)
                if self.top == 0:  # the leaves are the top level
                    self._min = float(np.where(top > 0.0, top, np.inf).min())
                else:
                    self._min = float(self._min_levels[self.top].min())
        return self._ends

    def total(self) -> float:
        """Return the sum of all leaves (accumulated node by node)."""
        return float(self._top_ends()[-1])

    def min(self) -> float:
        """Return the smallest positive leaf (``inf`` when there is none)."""
        self._top_ends()
        return self._min

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Return, for each ``mass``, the leaf whose cumulative range holds it.

        Leaf ``i`` holds the masses in ``[sum(leaves[:i]), sum(leaves[:i + 1]))``
        (sums accumulated node by node), so a zero leaf is never returned while
        any leaf is positive. Masses below 0 count as 0 and masses at or past
        the total as the largest mass below it.

        Raises:
            ValueError: Every leaf is zero, or a mass is NaN.
        """
        ends = self._top_ends()
        total = float(ends[-1])
        if not total > 0.0:
            raise ValueError("cannot sample: every priority is zero")
        mass = np.array(mass, dtype=np.float64).reshape(-1)  # a copy: the search overwrites it
        if np.isnan(mass).any():
            raise ValueError("tree search: a mass is NaN; pass masses in [0, total())")
        np.maximum(mass, 0.0, out=mass)
        np.minimum(mass, math.nextafter(total, 0.0), out=mass)
        if self._kernels is not None:
            out = np.empty(mass.shape[0], dtype=np.int64)
            self._kernels.tree_find(self.sums, self.offsets, self.fanout, self.top, ends, mass, out)
            return out
        return descend(self._sum_levels, self.top, self.fanout, ends, mass)

    def draw(self, mass: np.ndarray, scale: float, generations: np.ndarray) -> tuple[np.ndarray, ...]:
        """Return the leaves holding ``mass * scale`` with what a prioritized sample needs of them, in one pass.

        Returns ``(indices, ratios, seen, probabilities)``: the leaves (as :meth:`find` returns for
        ``mass * scale``), ``min() / leaf`` (an importance weight before its power ``beta``), the
        entries of ``generations`` (int32, one per leaf) at the leaves, and ``leaf / total()``. With
        numba this is one kernel call (``mass``, a float64 array, is then overwritten); the values are
        the same floating point operations either way.

        Raises:
            ValueError: Every leaf is zero, a mass (or ``scale``) is NaN, or ``generations`` has fewer
                than ``size`` entries.
        """
        ends = self._top_ends()
        total = float(ends[-1])
        if not total > 0.0:
            raise ValueError("cannot sample: every priority is zero")
        mass, generations = np.asarray(mass), np.asarray(generations)
        if generations.ndim != 1 or generations.shape[0] < self.size:
            raise ValueError(f"tree draw: expected {self.size} generations, one per leaf; received {generations.shape}")
        if scale != scale or np.isnan(mass).any():
            raise ValueError("tree draw: a mass or the scale is NaN; pass masses in [0, total() / scale)")
        fits = mass.dtype == np.float64 and mass.ndim == 1 and mass.flags.c_contiguous and mass.flags.writeable
        if self._kernels is None or not fits or generations.dtype != np.int32 or not generations.flags.c_contiguous:
            indices = self.find(mass * scale if scale != 1.0 else mass)  # numpy: find, then the same arithmetic
            leaf = self.sums.take(indices)
            return indices, self._min / leaf, generations.take(indices), leaf / total
        return self._draw_fresh(ends, mass, scale, generations)

    def _draw_fresh(
        self, ends: np.ndarray, mass: np.ndarray, scale: float, generations: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Run :meth:`draw`'s kernel on checked arguments (numba only; ``ends`` from ``_top_ends()``).

        ``ends[-1]`` (the total) is positive, ``mass`` a writable contiguous float64 array (overwritten),
        ``generations`` contiguous int32.
        """
        n = mass.shape[0]
        out, ratios = np.empty(n, dtype=np.int64), np.empty(n)
        seen, probabilities = np.empty(n, dtype=np.int32), np.empty(n)
        self._kernels.draw(  # type: ignore[union-attr]
            self.sums,
            self.offsets,
            self.fanout,
            self.top,
            ends,
            mass,
            float(scale),
            float(ends[-1]),
            self._min,
            generations,
            out,
            ratios,
            seen,
            probabilities,
        )
        return out, ratios, seen, probabilities
