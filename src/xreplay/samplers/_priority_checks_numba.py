"""Numba kernel of :class:`~xreplay.samplers.PrioritizedSampler`'s priority updates (optional accelerator).

:func:`check_update` checks a whole update in one pass, as the numpy code does in several, before
anything changes; :mod:`xreplay.samplers._tree_numba` (which the sampler reaches it through) then
applies it. Importing this module imports numba and compiles the kernel (explicit signature, cached).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["check_update"]


@numba.njit(
    "Tuple((int64, int64, int64, float64, float64))"
    "(int64[::1], float64[::1], int64, int32[::1], int32[::1], boolean[::1])",
    cache=True,
    nogil=True,
)
def check_update(
    indices: np.ndarray, priorities: np.ndarray, size: int, generations: np.ndarray, seen: np.ndarray, fresh: np.ndarray
) -> tuple[int, int, int, float, float]:
    """Check a priority update in one pass (used by :class:`~xreplay.samplers.PrioritizedSampler`).

    Returns the position of the first index outside ``[0, size)`` and of the
    first priority that is not finite and >= 0 (-1 when none; then nothing
    else is computed), the number of stale items (``generations[index] !=
    seen``, ``fresh`` false), the largest fresh priority (-inf if none) and
    the largest priority.
    """
    n = indices.shape[0]
    bad_index = -1
    bad_priority = -1
    largest = -np.inf
    for i in range(n):
        if bad_index < 0 and (indices[i] < 0 or indices[i] >= size):
            bad_index = i
        p = priorities[i]
        if bad_priority < 0 and not (p >= 0.0 and p < np.inf):
            bad_priority = i
        largest = p if p > largest else largest
    stale = 0
    high = -np.inf
    if bad_index >= 0 or bad_priority >= 0:
        return bad_index, bad_priority, stale, high, largest
    for i in range(n):
        ok = generations[indices[i]] == seen[i]
        fresh[i] = ok
        stale += not ok
        if ok:
            high = max(high, priorities[i])
    return bad_index, bad_priority, stale, high, largest
