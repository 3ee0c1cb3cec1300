"""PrioritizedSampler: proportional prioritized replay with stale-index protection.

A slot ``i`` is drawn with probability ``p_i ** alpha / sum_j p_j ** alpha``
and carries the importance weight ``(N * P(i)) ** -beta`` divided by the
largest weight any stored slot could get, i.e. ``(min_p / p_i) ** beta`` with
``min_p`` the smallest positive stored ``p ** alpha``. New slots get the
largest priority seen so far. Every slot has a generation counter (int32,
wrapping around after 2**32 overwrites of one slot, harmless for an equality
check) that grows when the slot is overwritten; samples return the
generations they saw, and a priority update whose generation no longer
matches is skipped and counted in :attr:`PrioritizedSampler.stale_updates`
instead of landing on a newer item.

New slots written as contiguous ranges (a ring buffer's writes) are recorded
and put into the tree in one slice update before the next read, so adding
one item costs no tree walk.

Priorities must be finite real numbers >= 0, and ``(priority + epsilon) **
alpha`` at most ``float64 max / capacity`` so that their sum cannot overflow
(a larger one raises :class:`~xreplay.errors.PriorityError`). Importance
weights are float32 and never below its smallest normal value (about
1.2e-38), so a huge spread of priorities cannot turn a weight into 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.errors import ArgumentError, FieldShapeError, IndexOutOfRangeError, InsufficientDataError
from xreplay.samplers.base import Draw, check_capacity
from xreplay.samplers.priorities import (
    as_priority_update,
    check_exponents,
    check_priorities,
    largest_leaf,
    leaf_value,
)
from xreplay.samplers.prioritized_state import check_prioritized_state, prioritized_state_dict
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import Schedule, as_schedule
from xreplay.storage.resources import as_count, check_allocation, check_index_range
from xreplay.writers import SlotPlan

__all__ = ["PrioritizedSampler"]

_SMALLEST_WEIGHT = np.float32(np.finfo(np.float32).tiny)
_STORED = "the {size} stored slots [0, {size})"  # where a slot must lie, in messages


class PrioritizedSampler:
    """Draw slots in proportion to ``priority ** alpha``, with importance weights.

    Args:
        capacity: Number of slots.
        alpha: Priority exponent (0 is uniform).
        beta: Importance-sampling exponent: a number or a schedule of the
            sample count (e.g. :class:`~xreplay.samplers.schedules.LinearSchedule`).
        epsilon: Added to every updated priority so that no item starves.
        stratified: Draw one mass from each of ``n`` equal strata of the total.
        initial_priority: Priority of new slots until a larger one is seen.
        backend: Tree back end, ``"numba"``, ``"numpy"`` or None for numba
            when installed (see :class:`~xreplay.samplers.priority_tree.PriorityTree`).

    Example:
        >>> s = PrioritizedSampler(4, alpha=1.0, beta=1.0, epsilon=0.0)
        >>> s.insert_range(0, 4)
        >>> s.update_priorities(np.array([0, 1, 2, 3]), np.array([0.0, 1.0, 0.0, 3.0]))  # skipped as stale
        0
        >>> batch = s.sample(np.random.default_rng(0), 1000)
        >>> sorted(set(batch.indices.tolist())), float(batch.weights.min())
        ([1, 3], 0.3333333432674408)
    """

    prioritized = True
    replace = True  # draws with replacement (what a buffer asks before it picks how to redraw)

    def __init__(
        self,
        capacity: int,
        alpha: float = 0.6,
        beta: float | Schedule = 0.4,
        epsilon: float = 1e-6,
        stratified: bool = False,
        initial_priority: float = 1.0,
        backend: str | None = None,
    ):
        """Start with no slot inserted."""
        self.capacity = as_count(capacity, "capacity")
        check_exponents(alpha, epsilon, initial_priority)
        self.alpha = float(alpha)
        self.beta = as_schedule(beta)
        self.epsilon = float(epsilon)
        self.stratified = bool(stratified)
        self.max_priority = float(initial_priority)
        self._largest_leaf = largest_leaf(self.capacity)  # a larger leaf could overflow the sum
        if self.max_priority**self.alpha > self._largest_leaf:
            raise ArgumentError(f"initial_priority {initial_priority} ** alpha {alpha} is too large for the sum")
        # Leaves and inner levels (float64, about 1.07 x 8 bytes per slot) plus an int32 generation per slot.
        check_allocation(13 * self.capacity, "cpu", f"priority trees for {self.capacity} slots", "lower the capacity")
        self.tree = PriorityTree(self.capacity, backend=backend)
        self.generations = np.zeros(self.capacity, dtype=np.int32)
        self.size = 0  # slots [0, size) have been inserted at least once
        self.samples_drawn = 0  # sample() calls so far: the step of the beta schedule
        self.stale_updates = 0
        self._pending: list[list[int]] = []  # inserted [start, stop) ranges not yet in the tree

    # -- the Sampler protocol: binding and writes ------------------------------

    def bind(self, capacity: int) -> None:
        """Check that this sampler was built for a buffer of ``capacity`` slots.

        Raises:
            ValueError: It holds another number of slots (names both).
        """
        check_capacity(self, self.capacity, capacity)

    def on_write(self, plan: SlotPlan, items: Mapping[str, Any]) -> None:
        """Put the slots a buffer just wrote in at the current max priority (one range per ring segment)."""
        for slot, _item, count in plan.segments:
            self.insert_range(slot, slot + count)

    # -- inserts --------------------------------------------------------------

    def insert_range(self, start: int, stop: int) -> None:
        """Record that slots ``[start, stop)`` now hold new items (at the current max priority)."""
        if not 0 <= start <= stop <= self.capacity:
            raise IndexOutOfRangeError(f"slot range [{start}, {stop}) is outside capacity {self.capacity}")
        if start == stop:
            return
        if stop - start == 1:  # one slot (single adds): Python ints cost a tenth of a slice update
            count = int(self.generations[start]) + 1
            self.generations[start] = count if count < 2**31 else count - 2**32  # wraps as the slice does
        else:
            self.generations[start:stop] += 1  # a slice wraps silently at 2**31 (a scalar would warn)
        if stop > self.size:
            self.size = stop
        pending = self._pending
        if pending and pending[-1][1] == start:
            self._pending[-1][1] = stop  # extends the previous range: one slice update later
        else:
            self._pending.append([start, stop])

    def insert(self, slots: np.ndarray) -> None:
        """Record that ``slots`` (any order) now hold new items, at the current max priority."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        if slots.size == 0:
            return
        check_index_range(slots, self.capacity, "slot", _STORED)
        self._flush()
        np.add.at(self.generations, slots, 1)
        self.size = max(self.size, int(slots.max()) + 1)
        self.tree.update(slots, np.full(slots.shape, self.max_priority**self.alpha))

    def _flush(self) -> None:
        """Put the recorded new ranges into the tree."""
        if self._pending:
            value = self.max_priority**self.alpha
            for start, stop in self._pending:
                self.tree.fill(start, stop, value)
            self._pending.clear()

    # -- sampling -------------------------------------------------------------

    def sample(
        self,
        rng: np.random.Generator,
        n: int,
        size: int | None = None,
        replace: bool | None = None,
        step: int | None = None,
    ) -> Draw:
        """Draw ``n`` slots with replacement, with importance weights, generations and probabilities.

        Args:
            rng: The generator every draw comes from.
            n: Number of slots.
            size: Stored items (unused: the tree knows which slots hold priorities).
            replace: None or True: proportional sampling draws with replacement.
            step: Step of the beta schedule; the number of earlier
                :meth:`sample` calls by default.

        Raises:
            ArgumentError: ``n`` is not an int >= 0, or ``replace`` is False.
            InsufficientDataError: Nothing is stored or every priority is zero.
        """
        n = as_count(n, "sample size")
        if replace is False:
            raise ArgumentError(
                "prioritized sampling draws with replacement; pass replace=True (or use a uniform sampler)"
            )
        ends, mass, scale = self._masses(rng, n)
        tree = self.tree
        if tree._kernels is not None:  # one kernel call: the same draws as sample_masses
            indices, ratios, seen, probabilities = tree._draw_fresh(ends, mass, scale, self.generations)
            return Draw(indices, self._weights(ratios, tree._min / float(ends[-1]), step), seen, probabilities)
        if scale != 1.0:
            mass *= scale
        return self.sample_masses(mass, float(ends[-1]), step)

    def draw_slots(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the slots and generations ``sample(rng, n)`` draws (and counts), without its weights.

        For a caller that computes weights from the leaves (a replay shard): with numba one kernel call.
        """
        n = as_count(n, "sample size")
        ends, mass, scale = self._masses(rng, n)
        if self.tree._kernels is None:
            drawn = self.sample_masses(mass * scale if scale != 1.0 else mass, float(ends[-1]))
            return drawn.indices, drawn.generations  # type: ignore[return-value]
        indices, _ratios, seen, _probabilities = self.tree._draw_fresh(ends, mass, scale, self.generations)
        self.samples_drawn += 1  # as _weights counts a sample
        return indices, seen

    def _masses(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Return the top level's running sum, ``n`` drawn masses and their scale; refuse a zero total."""
        if self._pending:
            self._flush()
        ends = self.tree._top_ends()
        total = float(ends[-1])
        if not total > 0.0:
            raise InsufficientDataError(
                f"cannot sample {n} items: {self.size} slots are stored and their priorities sum to {total}"
            )
        if self.stratified:
            return ends, (np.arange(n) + rng.random(n)) * (total / max(n, 1)), 1.0
        return ends, rng.random(n), total

    def _weights(self, ratios: np.ndarray, smallest: float, step: int | None) -> np.ndarray:
        """Return float32 weights ``ratios ** beta`` (min leaf over each leaf; ``smallest``: min leaf share).

        Counts the sample for the beta schedule; weights never round to 0 (``smallest ** beta`` bounds them).
        """
        beta = self.beta(self.samples_drawn if step is None else step)
        self.samples_drawn += 1
        ratios **= beta  # (N P(i))^-beta over its largest value
        weights32 = ratios.astype(np.float32)
        if smallest**beta < _SMALLEST_WEIGHT:  # only then can a weight round to 0
            np.maximum(weights32, _SMALLEST_WEIGHT, out=weights32)
        return weights32

    def sample_masses(self, mass: np.ndarray, total: float | None = None, step: int | None = None) -> Draw:
        """Return the slots holding the priority masses ``mass`` (each in ``[0, total)``), with weights."""
        if self._pending:
            self._flush()
        tree = self.tree
        total = tree.total() if total is None else total
        indices = tree.find(mass)
        leaf = tree.sums.take(indices)  # leaves are the first ``size`` entries of the tree
        smallest = tree.min()
        weights32 = self._weights(smallest / leaf, smallest / total, step)
        leaf /= total
        return Draw(indices, weights32, self.generations.take(indices), leaf)

    # -- priority updates -----------------------------------------------------

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set the priorities of sampled slots; skip (and count) those overwritten since.

        Args:
            indices: Slots, as returned by :meth:`sample`.
            priorities: New priorities (finite, >= 0), e.g. absolute TD errors;
                ``epsilon`` is added.
            generations: The generations :meth:`sample` returned; without them
                every update is applied.

        Returns:
            The number of updates skipped as stale.

        Raises:
            ArgumentError: An index is not an integer.
            FieldShapeError: The arguments have different lengths.
            PriorityError: A priority is not a finite real number >= 0, or ``(priority + epsilon) ** alpha``
                exceeds ``float64 max / capacity`` (the sum could overflow).
            IndexOutOfRangeError: An index is outside the inserted slots.
        """
        indices, priorities = as_priority_update(indices, priorities)
        if priorities.shape != indices.shape:
            raise FieldShapeError(f"got {indices.shape[0]} indices but {priorities.shape[0]} priorities")
        if indices.size == 0:
            return 0
        kernels = self.tree._kernels
        if kernels is not None and generations is not None:
            seen = np.asarray(generations).reshape(-1)
            if seen.dtype == np.int32 and seen.shape == indices.shape:
                return self._update_checked(kernels, indices, priorities, seen)
        # One reduction per argument: negative indices are huge as unsigned; NaN fails every comparison.
        check_index_range(indices, self.size, "index", _STORED)
        low, high = priorities.min(), priorities.max()
        if not (low >= 0.0 and high < np.inf):
            self._check_priorities(indices, priorities)
        if leaf_value(high, self.epsilon, self.alpha) > self._largest_leaf:
            self._check_priorities(indices, priorities)
        stale = 0
        if generations is not None:
            generations = np.asarray(generations).reshape(-1)
            if generations.shape != indices.shape:
                raise FieldShapeError(f"got {indices.shape[0]} indices but {generations.shape[0]} generations")
            fresh = self.generations.take(indices) == generations
            stale = int(indices.shape[0] - np.count_nonzero(fresh))
            if stale:
                indices, priorities = indices[fresh], priorities[fresh]
                if not indices.size:
                    self.stale_updates += stale
                    return stale
                high = priorities.max()
        # Everything is checked: apply it.
        if self._pending:
            self._flush()
        self.stale_updates += stale
        priorities = priorities + self.epsilon
        priorities **= self.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(high) + self.epsilon)
        return stale

    def _update_checked(self, kernels: Any, indices: np.ndarray, priorities: np.ndarray, seen: np.ndarray) -> int:
        """Apply a priority update with its checks in one numba pass (same results and errors as the numpy code)."""
        indices = np.ascontiguousarray(indices)
        priorities = np.ascontiguousarray(priorities)
        fresh = np.empty(indices.shape[0], dtype=np.bool_)
        bad_index, bad_priority, stale, high, largest = kernels.check_update(
            indices, priorities, self.size, self.generations, np.ascontiguousarray(seen), fresh
        )
        if bad_index >= 0:
            check_index_range(indices, self.size, "index", _STORED)
        if bad_priority >= 0:
            self._check_priorities(indices, priorities)
        if leaf_value(largest, self.epsilon, self.alpha) > self._largest_leaf:  # stale ones are checked too
            self._check_priorities(indices, priorities)
        if stale == indices.shape[0]:
            self.stale_updates += stale
            return stale
        if self._pending:
            self._flush()
        self.stale_updates += stale
        priorities = priorities + self.epsilon  # stale ones too: the tree then skips them (same values)
        priorities **= self.alpha
        self.tree._set_checked(indices, priorities, fresh, indices.shape[0] - stale)
        self.max_priority = max(self.max_priority, float(high) + self.epsilon)
        return stale

    def _check_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Raise PriorityError naming the first invalid or overflowing priority and its index."""
        check_priorities(priorities, names=indices, alpha=self.alpha, capacity=self.capacity, offset=self.epsilon)

    def total(self) -> float:
        """Return the sum of ``priority ** alpha`` over the stored slots."""
        self._flush()
        return self.tree.total()

    def reset(self) -> None:
        """Forget every slot's priority; generations keep growing so that old samples stay stale."""
        self._pending.clear()
        self.tree.load_leaves(np.zeros(self.capacity))
        self.size = 0

    def stats(self) -> dict[str, Any]:
        """Return stale updates skipped, samples drawn and the stored priorities' (``** alpha``) min, max and sum."""
        self._flush()
        leaves = self.tree.leaves()[: self.size]
        return {
            "stale_updates": self.stale_updates,
            "samples_drawn": self.samples_drawn,
            "priority_min": float(self.tree.min()) if self.size and self.tree.total() > 0 else 0.0,
            "priority_max": float(leaves.max(initial=0.0)),
            "priority_sum": self.tree.total(),
        }

    def priorities(self, indices: Any) -> np.ndarray:
        """Return ``priority ** alpha`` of ``indices`` as stored in the tree."""
        self._flush()
        return self.tree[np.asarray(indices, dtype=np.int64)]

    # -- checkpoints ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler state (tree leaves, generations, counters, pending inserts) for checkpoints.

        Pending inserts are kept as ranges rather than flushed, so taking the state changes nothing.
        """
        return prioritized_state_dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`; on any error nothing changes.

        Raises:
            FieldValueError: The state is for another capacity, lacks an entry or holds an invalid value.
            FieldShapeError: ``leaves`` or ``generations`` are not of shape ``(capacity,)``.
        """
        checked = check_prioritized_state(state, self.capacity)
        # Everything is checked: adopt it.
        self.alpha, self.epsilon, self.max_priority = checked.alpha, checked.epsilon, checked.max_priority
        self.tree.load_leaves(checked.leaves)
        self.generations[:] = checked.generations
        self.size, self.samples_drawn, self.stale_updates = checked.size, checked.samples_drawn, checked.stale_updates
        self._pending = checked.pending
