"""DI-engine's prioritized draws and importance weights, run on xreplay's one prioritized sampler.

:class:`DingPriorities` keeps a record's priority leaf (``priority ** alpha``,
computed one record at a time with Python's ``**`` as DI-engine does) in a
:class:`~xreplay.samplers.PrioritizedSampler`'s tree, the same 16-ary
:class:`~xreplay.samplers.PriorityTree` every prioritized buffer uses, and
reproduces DI-engine's float results on top of it:

* leaf writes are collected and applied to the tree in one vectorized update
  before the next read, so a loop of single-record updates costs one tree
  update, not one tree walk per record;
* the total that scales the masses and divides the weights is DI-engine's
  root (:class:`~xreplay.compat.ding.binary_order.BinaryOrderTotal`);
* a mass is looked up in the tree twice, shifted down and up by a bound on
  the rounding error of both summation orders. Where both lookups agree, no
  leaf boundary lies that close and the leaf is the one DI-engine's descent
  finds; where they differ (about once in 10**7 draws) DI-engine's descent is
  replayed over its binary tree, computed for that draw
  (:func:`~xreplay.compat.ding.binary_order.binary_find`);
* importance weights use DI-engine's formula and operation order, one record
  at a time with Python floats (numpy's vectorized ``**`` can differ from
  the C library's ``pow`` in the last bit).

So draws and weights equal DI-engine's bit for bit under the same
``np.random.seed``.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

import numpy as np

from xreplay.compat.ding.binary_order import BinaryOrderTotal, binary_find, binary_levels, binary_reduce
from xreplay.errors import InsufficientDataAssertionError
from xreplay.samplers.prioritized import PrioritizedSampler

__all__ = ["UPDATE_OFFSET", "DingPriorities"]

UPDATE_OFFSET = 1e-5  # DI-engine adds it to every updated priority
_FLUSH_EVERY = 16384  # collected writes applied at the latest after this many (bounds their memory)
_EPS = float(np.finfo(np.float64).eps)


class DingPriorities:
    """Priority leaves per storage slot, sampled and weighted exactly as DI-engine's PER does.

    Args:
        size: Number of slots (the buffer's capacity).
        alpha: The priority exponent (DI-engine's ``priority_power_factor``).

    Example:
        >>> p = DingPriorities(4, alpha=1.0)
        >>> for slot, leaf in enumerate([1.0, 1.0, 0.0, 2.0]):
        ...     p.push(slot, leaf)
        >>> np.random.seed(0)
        >>> p.draw(4).tolist(), p.total()
        ([0, 1, 3, 3], 4.0)
    """

    def __init__(self, size: int, alpha: float) -> None:
        self.alpha = alpha
        self.sampler = PrioritizedSampler(size, alpha=alpha, epsilon=UPDATE_OFFSET)
        self.tree = self.sampler.tree
        self._total = BinaryOrderTotal(size)
        self._pending: dict[int, float] = {}  # slot -> leaf, applied to the tree before the next read
        self._new: list[int] = []  # slots filled since the last flush (the sampler counts their generations)
        tree = self.tree
        top_nodes = int(tree.offsets[tree.top + 1] - tree.offsets[tree.top])
        depth = self._total.capacity.bit_length()
        # Rounding error of a leaf boundary, relative to the total: the 16-ary tree's running sums
        # (top level, then fanout children per level) plus DI-engine's descent (3 per binary level), doubled.
        self._tolerance = 2 * _EPS * (top_nodes + (tree.fanout + 2) * (tree.top + 1) + 3 * depth + 16)

    @property
    def capacity(self) -> int:
        """Return the number of slots."""
        return self.sampler.capacity

    # -- writes -----------------------------------------------------------------

    def push(self, slot: int, leaf: float) -> None:
        """Enter a new record's leaf at ``slot``."""
        self._new.append(slot)
        self._pending[slot] = leaf
        if len(self._new) >= _FLUSH_EVERY:
            self.flush()

    def set_leaf(self, slot: int, leaf: float) -> None:
        """Set the leaf of ``slot`` (applied before the next read)."""
        self._pending[slot] = leaf
        if len(self._pending) >= _FLUSH_EVERY:
            self.flush()

    def clear_slots(self, slots: list[int]) -> None:
        """Take ``slots`` out of sampling (their leaves become 0)."""
        for slot in slots:
            self._pending[slot] = 0.0

    def update_many(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``(priority + 1e-5) ** alpha`` for each slot in one vectorized sampler update."""
        self.flush()
        self.sampler.update_priorities(slots, priorities)
        self._total.mark(slots)

    def reset(self) -> None:
        """Take every slot out of sampling."""
        self._pending.clear()
        self._new.clear()
        self.tree.reset()
        self._total.reset()

    def load(self, leaves: np.ndarray, entered: np.ndarray) -> None:
        """Replace every leaf by ``leaves`` (``entered``: the slots holding records)."""
        self.reset()
        self.sampler.insert(entered)
        self.tree.update(np.arange(leaves.shape[0]), leaves)
        self._total.mark_all()

    def flush(self) -> None:
        """Apply the collected leaf writes to the tree (one update)."""
        if self._new:
            self.sampler.insert(np.array(self._new, dtype=np.int64))  # generation and size bookkeeping
            self._new.clear()
        pending = self._pending
        if pending:
            slots = np.fromiter(pending, dtype=np.int64, count=len(pending))
            self.tree.update(slots, np.fromiter(pending.values(), dtype=np.float64, count=len(pending)))
            self._total.mark(slots)
            pending.clear()

    # -- reads ------------------------------------------------------------------

    def leaves(self) -> np.ndarray:
        """Return a view of every slot's leaf."""
        self.flush()
        return self.tree.leaves()

    def total(self) -> float:
        """Return the sum of the leaves, added in DI-engine's order."""
        self.flush()
        return self._total.value(self.tree.leaves())

    def minimum(self) -> float:
        """Return the smallest positive leaf (``inf`` when none; zero leaves are never drawn)."""
        self.flush()
        return self.tree.min()

    def reduce(self, start: int = 0, end: int | None = None) -> float:
        """Return DI-engine's ``sum_tree.reduce(start, end)`` over leaves ``[start, end)``."""
        capacity = self._total.capacity
        end = capacity if end is None else end
        if start == 0 and end == capacity:
            return self.total()
        return binary_reduce(binary_levels(self.leaves(), capacity), start, end)

    def draw(self, size: int) -> np.ndarray:
        """Draw ``size`` slots, one from each of ``size`` equal strata of the mass, with ``np.random.uniform``.

        Raises:
            InsufficientDataAssertionError: no leaf is positive (an AssertionError, as DI-engine's).
        """
        total = self.total()
        if not total > 0.0:
            raise InsufficientDataAssertionError(f"cannot sample {size} items: no item has a positive priority")
        mass = np.arange(size) / size  # DI-engine: i / size + uniform / size, then times the total
        mass += np.random.uniform(size=size) / size
        mass *= total
        return self.find(mass, total)

    def find(self, mass: np.ndarray, total: float | None = None) -> np.ndarray:
        """Return the slot DI-engine's ``find_prefixsum_idx`` gives for each mass (in ``[0, total)``)."""
        self.flush()
        total = self.total() if total is None else total
        n = mass.shape[0]
        delta = self._tolerance * total
        probe = np.empty(2 * n)
        np.subtract(mass, delta, out=probe[:n])
        np.add(mass, delta, out=probe[n:])
        found = self.tree.find(probe)
        slots = found[n:]
        near = found[:n] != slots  # a leaf boundary within rounding error: replay DI-engine's descent
        if near.any():
            where = np.flatnonzero(near)
            exact, ok = binary_find(binary_levels(self.tree.leaves(), self._total.capacity), mass[where])
            if not ok.all():  # DI-engine raises here; the tree's own answer is a positive leaf
                exact[~ok] = self.tree.find(mass[where[~ok]])
            slots[where] = exact
        return slots

    def weights(self, slots: Any, count: int, beta: float) -> np.ndarray:
        """Return DI-engine's importance weights of ``slots`` in a buffer of ``count`` records (float64).

        ``(count * (leaf / total)) ** -beta`` over its value at the smallest positive leaf, the powers
        taken by the C library one at a time; a zero leaf (a record taken out of sampling) gets ``inf``.
        """
        total = self.total()
        power = -beta
        max_weight = (count * (self.tree.min() / total)) ** power
        bases = count * (self.tree.leaves().take(slots) / total)  # elementwise * and / round as Python's do
        zero = bases == 0.0
        if zero.any():
            bases[zero] = 1.0
        weights = np.fromiter(map(math.pow, bases.tolist(), repeat(power)), dtype=np.float64, count=bases.shape[0])
        weights /= max_weight
        if zero.any():
            weights[zero] = math.inf
        return weights
