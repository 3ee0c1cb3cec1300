"""Proportional prioritized sampling over vectorized sum and min trees, drawing from numpy's global RNG.

This is the sampler behind DI-engine's ``PriorityExperienceReplay`` (see
``xreplay.compat.ding``): it draws through ``np.random`` so that a seeded
DI-engine run samples the same items. Native buffers use
:class:`xreplay.samplers.prioritized.PrioritizedSampler`, which owns its
generator and guards against stale indices with generation counters.

Priorities ``p`` are stored per slot as ``p ** alpha``. Sampling is
stratified: ``size`` equal strata of the total mass, one uniform draw in each
from numpy's global RNG (one vector draw), as DI-engine and the PER paper do.
Importance-sampling weights are ``(N * P(i)) ** -beta`` normalised by the
largest possible weight (from the smallest priority).
"""

from __future__ import annotations

import numpy as np

from xreplay.errors import PriorityError
from xreplay.samplers.sum_tree import MinTree, SumTree

__all__ = ["ProportionalSampler", "check_priorities"]


def check_priorities(priorities: np.ndarray | list[float], names: object = None) -> np.ndarray:
    """Return ``priorities`` as float64 after checking that each is finite and >= 0.

    Args:
        priorities: Priority values.
        names: Optional sequence naming each value's item (for the message).

    Raises:
        PriorityError: a value is NaN, infinite or negative; names the first one.

    """
    values = np.asarray(priorities, dtype=np.float64).reshape(-1)
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = names[i] if names is not None else i  # type: ignore[index]
        raise PriorityError(f"priority of item {name!r} is {values[i]!r}; priorities must be finite and >= 0")
    return values


class ProportionalSampler:
    """Slots with priorities, sampled in proportion to ``priority ** alpha``.

    Args:
        capacity: Number of slots.
        alpha: Priority exponent.
        track_min: Keep a min tree too (needed for importance weights).

    Example:
        >>> s = ProportionalSampler(4, alpha=1.0)
        >>> s.set(np.array([0, 2]), np.array([1.0, 3.0]))
        >>> s.find(np.array([0.5, 1.5, 3.9])).tolist(), s.total()
        ([0, 2, 2], 4.0)

    """

    def __init__(self, capacity: int, alpha: float = 0.6, track_min: bool = True):
        self.alpha = float(alpha)
        self.sum_tree = SumTree(capacity)
        self.min_tree = MinTree(capacity) if track_min else None

    def set(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set the (checked) priorities of ``slots``."""
        values = check_priorities(priorities, names=np.asarray(slots).reshape(-1).tolist())
        self.set_leaves(slots, values**self.alpha)

    def set_leaves(self, slots: np.ndarray, leaves: np.ndarray) -> None:
        """Set already-exponentiated leaf values of ``slots``."""
        self.sum_tree.update(slots, leaves)
        if self.min_tree is not None:
            self.min_tree.update(slots, leaves)

    def set_leaf(self, slot: int, leaf: float) -> None:
        """Set one already-exponentiated leaf (scalar path: one pass up each tree in Python floats)."""
        leaf = float(leaf)
        for tree, is_sum in ((self.sum_tree, True), (self.min_tree, False)):
            if tree is None:
                continue
            nodes, read = tree.nodes, tree.nodes.item
            node = tree.capacity + int(slot)
            nodes[node] = value = leaf
            stop = 2 * tree.top  # parents below the top level are maintained; the root is reduced on demand
            while node >= stop:
                sibling = read(node ^ 1)  # a + b == b + a and min(a, b) == min(b, a) exactly
                value = value + sibling if is_sum else min(value, sibling)
                node >>= 1
                nodes[node] = value

    def clear_slots(self, slots: np.ndarray) -> None:
        """Remove ``slots`` from sampling (their leaves return to neutral)."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        self.sum_tree.update(slots, np.zeros(slots.size))
        if self.min_tree is not None:
            self.min_tree.update(slots, np.full(slots.size, np.inf))

    def reset(self) -> None:
        """Remove every slot."""
        self.sum_tree.reset()
        if self.min_tree is not None:
            self.min_tree.reset()

    def total(self) -> float:
        """Return the total leaf mass."""
        return self.sum_tree.root()

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Return the slots whose cumulative ranges hold ``mass``."""
        return self.sum_tree.find(mass)

    def sample(self, size: int) -> np.ndarray:
        """Draw ``size`` slots, one per stratum, with ``np.random.uniform`` (global RNG).

        Raises:
            AssertionError: nothing has positive priority (DI-engine raises the same class).

        """
        total = self.total()
        if not total > 0:
            raise AssertionError(f"cannot sample {size} items: no item has a positive priority")
        uniform = np.random.uniform(size=size)
        mass = (np.arange(size) + uniform) / size * total  # one uniform point in each stratum
        return self.find(mass)

    def weights(self, slots: np.ndarray, count: int, beta: float) -> np.ndarray:
        """Return normalised importance weights of ``slots`` in a buffer of ``count`` items."""
        if self.min_tree is None:
            raise ValueError("importance weights need track_min=True")
        total = self.total()
        p_min = self.min_tree.root() / total
        max_weight = (count * p_min) ** (-beta)
        return ((count * self.sum_tree[slots] / total) ** (-beta)) / max_weight
