"""The checked state of a :class:`~xreplay.samplers.PrioritizedSampler`, before the sampler adopts it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.errors import FieldShapeError, FieldValueError

__all__ = ["PrioritizedState", "check_prioritized_state", "prioritized_state_dict"]


@dataclasses.dataclass(frozen=True)
class PrioritizedState:
    """A prioritized sampler's state whose every value was checked."""

    alpha: float
    epsilon: float
    max_priority: float
    leaves: np.ndarray
    generations: np.ndarray
    size: int
    samples_drawn: int
    stale_updates: int
    pending: list[list[int]]


def check_prioritized_state(state: Mapping[str, Any], capacity: int) -> PrioritizedState:
    """Return ``state`` (a ``state_dict()``) checked for a sampler of ``capacity`` slots.

    Raises:
        FieldValueError: The state is for another capacity, lacks an entry or holds an invalid value.
        FieldShapeError: ``leaves`` or ``generations`` are not of shape ``(capacity,)``.
    """
    keys = ("capacity", "alpha", "epsilon", "max_priority", "leaves", "generations", "size")
    missing = [key for key in (*keys, "samples_drawn", "stale_updates") if key not in state]
    if missing:
        raise FieldValueError(f"sampler state lacks {missing}; expected the keys of state_dict()")
    if int(state["capacity"]) != capacity:
        raise FieldValueError(f"sampler state is for capacity {state['capacity']}, this sampler has {capacity}")
    leaves = np.array(state["leaves"], dtype=np.float64).reshape(-1) if np.ndim(state["leaves"]) else None
    generations = np.asarray(state["generations"])
    for name, array in (("leaves", leaves), ("generations", generations)):
        if array is None or array.shape != (capacity,):
            shape = None if array is None else array.shape
            raise FieldShapeError(f"sampler state {name!r}: expected shape ({capacity},), received {shape}")
    if generations.dtype.kind not in "iu":
        raise FieldValueError(f"sampler state 'generations': expected integers, received dtype {generations.dtype}")
    assert leaves is not None
    known = ~np.isnan(leaves)
    if not (np.isfinite(leaves[known]).all() and (leaves[known] >= 0).all()):
        bad = int(np.flatnonzero(known & ~((leaves >= 0) & np.isfinite(leaves)))[0])
        raise FieldValueError(f"sampler state 'leaves': slot {bad} holds {leaves[bad]}, expected finite >= 0")
    alpha, epsilon, max_priority = float(state["alpha"]), float(state["epsilon"]), float(state["max_priority"])
    if alpha < 0 or epsilon < 0 or not 0 < max_priority < np.inf:
        raise FieldValueError(
            f"sampler state: need alpha >= 0, epsilon >= 0, 0 < max_priority < inf; "
            f"received {alpha}, {epsilon}, {max_priority}"
        )
    size, drawn, stale = int(state["size"]), int(state["samples_drawn"]), int(state["stale_updates"])
    if not 0 <= size <= capacity:
        raise FieldValueError(f"sampler state 'size': expected a value in [0, {capacity}], received {size}")
    if drawn < 0 or stale < 0:
        raise FieldValueError(f"sampler state counters must be >= 0, received {drawn}, {stale}")
    pending = [[int(a), int(b)] for a, b in state.get("pending", [])]
    for start, stop in pending:
        if not 0 <= start < stop <= capacity:
            raise FieldValueError(f"sampler state 'pending': range [{start}, {stop}) is not inside capacity {capacity}")
    return PrioritizedState(alpha, epsilon, max_priority, leaves, generations, size, drawn, stale, pending)


def prioritized_state_dict(sampler: Any) -> dict[str, Any]:
    """Return the state of a :class:`~xreplay.samplers.PrioritizedSampler` (its ``state_dict()``), copying arrays."""
    leaves = np.where(sampler.generations != 0, sampler.tree.leaves(), np.nan)
    return {
        "capacity": sampler.capacity,
        "alpha": sampler.alpha,
        "epsilon": sampler.epsilon,
        "max_priority": sampler.max_priority,
        "leaves": leaves,
        "generations": sampler.generations.copy(),
        "size": sampler.size,
        "samples_drawn": sampler.samples_drawn,
        "stale_updates": sampler.stale_updates,
        "pending": [[int(a), int(b)] for a, b in sampler._pending],
    }
