"""Numba kernels of :class:`xreplay.samplers.priority_tree.PriorityTree` (optional accelerator).

Importing this module imports numba and compiles the kernels (from explicit
signatures, cached on disk by numba). :mod:`xreplay.samplers.priority_tree`
imports it lazily and uses its numpy code when numba is missing. Each kernel
performs the same floating point operations in the same order as the numpy
code (a parent's sum adds its children left to right, a search accumulates
them in the same order and clamps the mass carried into a child below the
child's sum with ``nextafter``), so both give bit-identical trees and results.

Layout (see ``priority_tree``): ``sums`` holds every stored level, leaves
first; level ``l`` starts at ``offsets[l]`` and node ``j`` of level ``l + 1``
is the parent of nodes ``j * fanout .. j * fanout + fanout - 1`` of level
``l``. ``mins`` holds the levels above the leaves, level ``l`` at
``offsets[l] - offsets[1]``.
"""

from __future__ import annotations

import numba
import numpy as np

from xreplay.samplers._priority_checks_numba import check_update

__all__ = [
    "check_update",
    "draw",
    "top_stats",
    "tree_fill",
    "tree_find",
    "tree_update",
    "update_fresh",
    "update_with_stats",
]

_SIG_UPDATE = "void(float64[::1], float64[::1], int64[::1], int64, int64[::1], float64[::1])"
_SIG_FILL = "void(float64[::1], float64[::1], int64[::1], int64, int64, int64, float64)"
_SIG_STATS = "float64(float64[::1], float64[::1], int64, float64[::1])"
_SIG_FIND = "void(float64[::1], int64[::1], int64, int64, float64[::1], float64[::1], int64[::1])"
_SIG_DRAW = (
    "void(float64[::1], int64[::1], int64, int64, float64[::1], float64[::1], float64, float64, float64, "
    "int32[::1], int64[::1], float64[::1], int32[::1], float64[::1])"
)
_SIG_FRESH = "void(float64[::1], float64[::1], int64[::1], int64, int64[::1], float64[::1], boolean[::1], int64)"
_SIG_WITH_STATS = (
    "float64(float64[::1], float64[::1], int64[::1], int64, int64[::1], float64[::1], boolean[::1], int64, "
    "float64[::1])"
)


@numba.njit(cache=True, nogil=True)
def _touch(sums: np.ndarray, base: int, nodes: np.ndarray, fanout: int) -> float:
    """Load every cache line of the children of each node in ``nodes``: a prefetch whose independent loads overlap.

    A line holds 8 float64; the tree aligns each node's children to as few lines as they span.
    """
    acc = 0.0
    ub, uf = np.uint64(base), np.uint64(fanout)
    last = uf - np.uint64(1)
    for i in range(nodes.shape[0]):
        child = ub + np.uint64(nodes[i]) * uf  # unsigned: no negative-index wrap on the loads
        for k in range(np.uint64(8), last, np.uint64(8)):  # the lines between the first and the last
            acc += sums[child + k]
        acc += sums[child] + sums[child + last]
    return acc


@numba.njit(cache=True, nogil=True, inline="always")
def _positive(value: float) -> float:
    """Return ``value`` if it is > 0, else ``inf`` (a leaf counts in a minimum only when positive)."""
    return value if value > 0.0 else np.inf


@numba.njit(cache=True, nogil=True, inline="always")
def _lower(a: float, b: float) -> float:
    """Return the smaller of two non-NaN floats (a select, no NaN branch: a minimum is exact in any order)."""
    return a if a < b else b


@numba.njit(cache=True, nogil=True)
def _refresh_nodes(
    sums: np.ndarray, mins: np.ndarray, offsets: np.ndarray, fanout: int, level: int, nodes: np.ndarray
) -> None:
    """Recompute the sums and minima of ``nodes`` on ``level`` (>= 1), four nodes at a time.

    Each sum adds its children left to right (the order a descent accumulates them in); the four chains of
    additions are independent, so the processor overlaps them. The last group repeats the last node (same values).
    """
    n = nodes.shape[0]
    below = np.uint64(offsets[level - 1])  # unsigned positions (all >= 0): no negative-index wrap on the loads
    base = np.uint64(offsets[1])
    up = np.uint64(offsets[level])
    uf = np.uint64(fanout)
    last = n - 1
    for i in range(0, n, 4):
        a0, a1 = np.uint64(nodes[i]), np.uint64(nodes[min(i + 1, last)])
        a2, a3 = np.uint64(nodes[min(i + 2, last)]), np.uint64(nodes[min(i + 3, last)])
        c0, c1, c2, c3 = below + a0 * uf, below + a1 * uf, below + a2 * uf, below + a3 * uf
        s0, s1, s2, s3 = sums[c0], sums[c1], sums[c2], sums[c3]
        if level == 1:  # the children are leaves: their minimum counts positive leaves only
            m0, m1, m2, m3 = _positive(s0), _positive(s1), _positive(s2), _positive(s3)
            for k in range(np.uint64(1), uf):
                v0, v1, v2, v3 = sums[c0 + k], sums[c1 + k], sums[c2 + k], sums[c3 + k]
                s0, s1, s2, s3 = s0 + v0, s1 + v1, s2 + v2, s3 + v3
                m0, m1 = _lower(_positive(v0), m0), _lower(_positive(v1), m1)
                m2, m3 = _lower(_positive(v2), m2), _lower(_positive(v3), m3)
        else:
            d0, d1, d2, d3 = c0 - base, c1 - base, c2 - base, c3 - base
            m0, m1, m2, m3 = mins[d0], mins[d1], mins[d2], mins[d3]
            for k in range(np.uint64(1), uf):
                s0, s1, s2, s3 = s0 + sums[c0 + k], s1 + sums[c1 + k], s2 + sums[c2 + k], s3 + sums[c3 + k]
                m0, m1 = _lower(mins[d0 + k], m0), _lower(mins[d1 + k], m1)
                m2, m3 = _lower(mins[d2 + k], m2), _lower(mins[d3 + k], m3)
        sums[up + a3], sums[up + a2], sums[up + a1], sums[up + a0] = s3, s2, s1, s0
        mins[up - base + a3], mins[up - base + a2] = m3, m2
        mins[up - base + a1], mins[up - base + a0] = m1, m0


@numba.njit(_SIG_UPDATE, cache=True, nogil=True)
def tree_update(
    sums: np.ndarray, mins: np.ndarray, offsets: np.ndarray, fanout: int, indices: np.ndarray, values: np.ndarray
) -> None:
    """Set leaves ``indices`` to ``values`` (last wins) and refresh their ancestors, one level at a time.

    Raises IndexError, changing nothing, for an index outside the leaf level or fewer values than indices
    (the positions below are unsigned: a wrong one would write outside the tree).
    """
    n = indices.shape[0]
    if values.shape[0] < n:
        raise IndexError("fewer values than leaf indices")
    for i in range(n):
        if indices[i] < 0 or indices[i] >= offsets[1]:
            raise IndexError("a leaf index lies outside the tree")
    for i in range(n):
        sums[indices[i]] = values[i]
    nodes = np.empty(n, dtype=np.int64)
    for i in range(n):
        nodes[i] = indices[i] // fanout
    for level in range(1, offsets.shape[0] - 1):  # offsets has one entry past the top level
        _refresh_nodes(sums, mins, offsets, fanout, level, nodes)
        for i in range(n):
            nodes[i] //= fanout


@numba.njit(_SIG_FILL, cache=True, nogil=True)
def tree_fill(
    sums: np.ndarray, mins: np.ndarray, offsets: np.ndarray, fanout: int, start: int, stop: int, value: float
) -> None:
    """Set leaves ``[start, stop)`` to ``value`` and refresh their ancestors (IndexError outside the leaf level)."""
    if stop <= start:
        return
    if start < 0 or stop > offsets[1]:
        raise IndexError("a leaf range lies outside the tree")
    for i in range(start, stop):
        sums[i] = value
    lo, hi = start, stop - 1
    for level in range(1, offsets.shape[0] - 1):
        lo //= fanout
        hi //= fanout
        _refresh_nodes(sums, mins, offsets, fanout, level, np.arange(lo, hi + 1))


@numba.njit(_SIG_STATS, cache=True, nogil=True)
def top_stats(top: np.ndarray, top_mins: np.ndarray, level: int, out: np.ndarray) -> float:
    """Write the running sum of ``top`` to ``out`` (left to right, as ``np.cumsum``) and return the minimum.

    The minimum is that of ``top_mins``, or of the positive entries of
    ``top`` when the top level (``level`` 0) holds the leaves.
    """
    running = 0.0
    smallest = np.inf
    if level == 0:
        for i in range(top.shape[0]):
            v = top[i]
            running = running + v
            out[i] = running
            smallest = _lower(_positive(v), smallest)
    else:  # one loop: the minimum overlaps the (serial) running sum
        for i in range(top.shape[0]):
            running = running + top[i]
            out[i] = running
            smallest = _lower(top_mins[i], smallest)
    return smallest


@numba.njit(_SIG_FIND, cache=True, nogil=True)
def tree_find(
    sums: np.ndarray, offsets: np.ndarray, fanout: int, top: int, ends: np.ndarray, mass: np.ndarray, out: np.ndarray
) -> None:
    """Write to ``out`` the leaf holding each ``mass`` (clamped to ``[0, ends[-1])``, overwritten).

    ``ends`` is the running sum of the top level. The binary search in it
    takes one step for every mass at a time and the batch descends one
    level at a time, so that the loads of different masses overlap; neither
    branches on the data.
    """
    n = mass.shape[0]
    for i in range(n):
        out[i] = 0
    length = ends.shape[0]
    while length > 1:  # binary search, one step for every mass at a time: independent loads overlap
        half = length >> 1
        step = np.uint64(half - 1)  # unsigned positions (all >= 0): no negative-index wrap on the loads
        for i in range(n):
            lo = out[i]
            out[i] = lo + half * (ends[np.uint64(lo) + step] <= mass[i])
        length -= half
    for i in range(n):  # out[i]: top nodes ending at or before the mass (numpy's searchsorted, side="right")
        m = mass[i]
        lo = out[i] + (ends[out[i]] <= m)
        if lo > 0:
            m = m - ends[lo - 1]
        if top > 0:
            m = min(m, np.nextafter(sums[offsets[top] + lo], 0.0))
        mass[i] = m
        out[i] = lo
    touched = 0.0
    last = n - 1
    for level in range(top, 0, -1):  # ``out[i]`` is on ``level``; descend to one of its children
        below = offsets[level - 1]
        ub, uf = np.uint64(below), np.uint64(fanout)
        touched += _touch(sums, below, out, fanout)
        for i in range(0, n, 4):  # four masses at a time: their chains of additions overlap
            i1, i2, i3 = min(i + 1, last), min(i + 2, last), min(i + 3, last)  # the last group repeats one
            m0, m1, m2, m3 = mass[i], mass[i1], mass[i2], mass[i3]
            # unsigned positions (all >= 0): the loads need no negative-index wrap
            c0, c1 = ub + np.uint64(out[i]) * uf, ub + np.uint64(out[i1]) * uf
            c2, c3 = ub + np.uint64(out[i2]) * uf, ub + np.uint64(out[i3]) * uf
            r0, r1, r2, r3 = sums[c0], sums[c1], sums[c2], sums[c3]
            b0 = b1 = b2 = b3 = 0.0
            k0 = k1 = k2 = k3 = 0
            for j in range(np.uint64(1), uf):  # k: children ending at or before the mass (at most fanout - 1)
                f0, f1, f2, f3 = r0 <= m0, r1 <= m1, r2 <= m2, r3 <= m3
                k0, k1, k2, k3 = k0 + f0, k1 + f1, k2 + f2, k3 + f3
                b0, b1 = (r0 if f0 else b0), (r1 if f1 else b1)
                b2, b3 = (r2 if f2 else b2), (r3 if f3 else b3)
                r0, r1 = r0 + sums[c0 + j], r1 + sums[c1 + j]
                r2, r3 = r2 + sums[c2 + j], r3 + sums[c3 + j]
            if level > 1:  # the mass left inside the child, kept below the child's sum
                mass[i3] = min(m3 - b3, np.nextafter(sums[c3 + np.uint64(k3)], 0.0))
                mass[i2] = min(m2 - b2, np.nextafter(sums[c2 + np.uint64(k2)], 0.0))
                mass[i1] = min(m1 - b1, np.nextafter(sums[c1 + np.uint64(k1)], 0.0))
                mass[i] = min(m0 - b0, np.nextafter(sums[c0 + np.uint64(k0)], 0.0))
            out[i3], out[i2] = np.int64(c3 - ub) + k3, np.int64(c2 - ub) + k2
            out[i1], out[i] = np.int64(c1 - ub) + k1, np.int64(c0 - ub) + k0
    if touched < 0.0:  # never (sums are >= 0): keeps the prefetch loads
        out[0] = -1


@numba.njit(_SIG_DRAW, cache=True, nogil=True)
def draw(
    sums: np.ndarray,
    offsets: np.ndarray,
    fanout: int,
    top: int,
    ends: np.ndarray,
    mass: np.ndarray,
    scale: float,
    total: float,
    smallest: float,
    generations: np.ndarray,
    out: np.ndarray,
    ratio: np.ndarray,
    seen: np.ndarray,
    probabilities: np.ndarray,
) -> None:
    """One prioritized draw: the leaves holding ``mass * scale``, their weight ratios, generations, probabilities.

    Does what :meth:`PriorityTree.find` and the sampler's arithmetic do, in the same operations and order:
    each mass is scaled (``scale`` 1.0 leaves it as it is), clamped to ``[0, total)``, searched;
    ``ratio`` gets ``smallest / leaf`` (the weight before the power ``beta``, which the caller raises
    with numpy so that both back ends share numpy's ``power``), ``probabilities`` ``leaf / total`` and
    ``seen`` the generation of each drawn slot. ``mass`` is overwritten.
    """
    below_total = np.nextafter(total, 0.0)
    for i in range(mass.shape[0]):
        m = mass[i] * scale
        mass[i] = min(max(m, 0.0), below_total)
    tree_find(sums, offsets, fanout, top, ends, mass, out)
    for i in range(out.shape[0]):
        if out[i] >= generations.shape[0]:  # generations shorter than the leaves: refuse, never read past them
            raise IndexError("fewer generations than leaves")
        slot = np.uint64(out[i])  # a leaf: >= 0
        leaf = sums[slot]
        ratio[i] = smallest / leaf
        probabilities[i] = leaf / total
        seen[i] = generations[slot]


@numba.njit(_SIG_FRESH, cache=True, nogil=True)
def update_fresh(
    sums: np.ndarray,
    mins: np.ndarray,
    offsets: np.ndarray,
    fanout: int,
    indices: np.ndarray,
    values: np.ndarray,
    fresh: np.ndarray,
    count: int,
) -> None:
    """Set the leaves ``indices[fresh]`` to ``values[fresh]`` (``count`` of them) and refresh their ancestors."""
    if values.shape[0] < indices.shape[0] or fresh.shape[0] < indices.shape[0]:
        raise IndexError("fewer values or flags than leaf indices")
    kept = np.empty(count, dtype=np.int64)
    kept_values = np.empty(count, dtype=np.float64)
    j = 0
    for i in range(indices.shape[0]):
        j += fresh[i]
    if j != count:
        raise IndexError("the count of kept leaves differs from the flags")
    j = 0
    for i in range(indices.shape[0]):
        if fresh[i]:
            kept[j] = indices[i]
            kept_values[j] = values[i]
            j += 1
    tree_update(sums, mins, offsets, fanout, kept, kept_values)


@numba.njit(_SIG_WITH_STATS, cache=True, nogil=True)
def update_with_stats(
    sums: np.ndarray,
    mins: np.ndarray,
    offsets: np.ndarray,
    fanout: int,
    indices: np.ndarray,
    values: np.ndarray,
    keep: np.ndarray,
    count: int,
    ends: np.ndarray,
) -> float:
    """Set leaves ``indices[keep]`` to ``values[keep]`` and return the new smallest positive leaf.

    ``count`` leaves are kept (all of them when it is their number). The top level's running sum goes
    to ``ends`` (as :func:`top_stats` writes it): one call does what a priority update and the next
    draw's :func:`top_stats` would do in two.
    """
    if count == indices.shape[0]:
        tree_update(sums, mins, offsets, fanout, indices, values)
    else:
        update_fresh(sums, mins, offsets, fanout, indices, values, keep, count)
    level = offsets.shape[0] - 2  # the top level
    top = sums[offsets[level] : offsets[level + 1]]
    if level == 0:
        return top_stats(top, top, 0, ends)
    return top_stats(top, mins[offsets[level] - offsets[1] : offsets[level + 1] - offsets[1]], level, ends)
