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

from typing import Any

import numpy as np

from xreplay.errors import InsufficientDataAssertionError, PriorityError
from xreplay.samplers.sum_tree import MinTree, SumTree
from xreplay.storage.resources import as_count, check_allocation

__all__ = ["ProportionalSampler", "check_priorities"]


_LARGEST = float(np.finfo(np.float64).max)


def check_priorities(
    priorities: Any, names: object = None, alpha: float = 1.0, capacity: int = 1, offset: float = 0.0
) -> np.ndarray:
    """Return ``priorities`` as float64 after checking that each is a finite real number >= 0.

    Args:
        priorities: Priority values (numbers; text, booleans and objects are refused).
        names: Optional sequence naming each value's item (for the message).
        alpha: The exponent leaves are raised to.
        capacity: Number of leaves; ``(priority + offset) ** alpha`` must stay at most
            ``float64 max / capacity`` so that the sum of all leaves cannot overflow.
        offset: Added to each priority before the exponent (DI-engine's 1e-5 on update).

    Raises:
        PriorityError: a value is not a real number, is NaN, infinite, negative or too
            large for the sum; names the first one.

    """
    raw = np.asarray(priorities)
    if raw.dtype.kind not in "iuf":
        if raw.size:
            shown = raw.reshape(-1)[:3].tolist()
            raise PriorityError(f"priorities must be real numbers, received dtype {raw.dtype} ({shown})")
        raw = raw.astype(np.float64)
    values = raw.astype(np.float64, copy=False).reshape(-1)
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        name = names[i] if names is not None else i  # type: ignore[index]
        raise PriorityError(f"priority of item {name!r} is {float(values[i])!r}; priorities must be finite and >= 0")
    largest = _LARGEST / max(int(capacity), 1)
    if values.size and (float(values.max()) + offset) ** alpha > largest:
        with np.errstate(over="ignore"):
            leaves = (values + offset) ** alpha
        i = int(np.flatnonzero(~(leaves <= largest))[0])
        name = names[i] if names is not None else i  # type: ignore[index]
        raise PriorityError(
            f"priority of item {name!r} is {float(values[i])!r}: priority ** alpha = {leaves[i]:.3g} exceeds "
            f"{largest:.3g} (float64 max / {capacity} slots), so the sum of priorities could overflow; "
            f"scale the priorities down"
        )
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
        capacity = as_count(capacity, "capacity", minimum=1)
        # Two float64 trees of 2 x (capacity rounded up to a power of two) nodes each.
        power = 1 << max(0, (capacity - 1).bit_length())
        check_allocation(32 * power, "cpu", f"priority trees for {capacity} slots", "lower the buffer size")
        self.alpha = float(alpha)
        self.sum_tree = SumTree(capacity)
        self.min_tree = MinTree(capacity) if track_min else None

    @property
    def capacity(self) -> int:
        """Return the number of slots."""
        return self.sum_tree.size

    def set(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set the (checked) priorities of ``slots``."""
        values = check_priorities(
            priorities, names=np.asarray(slots).reshape(-1).tolist(), alpha=self.alpha, capacity=self.capacity
        )
        self.set_leaves(slots, values**self.alpha)

    def set_leaves(self, slots: np.ndarray, leaves: np.ndarray) -> None:
        """Set already-exponentiated leaf values of ``slots`` (zero leaves are left out of the minimum)."""
        self.sum_tree.update(slots, leaves)
        if self.min_tree is not None:
            leaves = np.asarray(leaves, dtype=np.float64)
            self.min_tree.update(slots, np.where(leaves > 0.0, leaves, np.inf))

    def set_leaf(self, slot: int, leaf: float) -> None:
        """Set one already-exponentiated leaf (scalar path: one pass up each tree in Python floats)."""
        leaf = float(leaf)
        for tree, is_sum in ((self.sum_tree, True), (self.min_tree, False)):
            if tree is None:
                continue
            nodes, read = tree.nodes, tree.nodes.item
            node = tree.capacity + int(slot)
            # A zero leaf is never drawn, so it is left out of the minimum (its weight would divide by 0).
            nodes[node] = value = leaf if is_sum or leaf > 0.0 else float("inf")
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
            InsufficientDataAssertionError: nothing has positive priority (an AssertionError, as DI-engine's).

        """
        total = self.total()
        if not total > 0:
            raise InsufficientDataAssertionError(f"cannot sample {size} items: no item has a positive priority")
        uniform = np.random.uniform(size=size)
        mass = (np.arange(size) + uniform) / size * total  # one uniform point in each stratum
        return self.find(mass)

    def weights(self, slots: np.ndarray, count: int, beta: float) -> np.ndarray:
        """Return normalised importance weights of ``slots`` in a buffer of ``count`` items.

        The minimum is that of the positive priorities (zero ones are never drawn).
        """
        if self.min_tree is None:
            raise ValueError("importance weights need track_min=True")
        total = self.total()
        p_min = self.min_tree.root() / total
        max_weight = (count * p_min) ** (-beta)
        return ((count * self.sum_tree[slots] / total) ** (-beta)) / max_weight
