"""PrioritizedSequenceSampler: R2D2's prioritized sequence replay over a step buffer.

Every stored step has a priority (new steps: the largest seen so far). A
sequence is ``burn_in + length`` consecutive steps starting at a slot; its
priority is R2D2's mix of the per-step priorities of its learning steps
(the ``length`` steps after the burn-in, those inside its episode)::

    priority(sequence) = eta * max(p_t) + (1 - eta) * mean(p_t)

Starts are drawn in proportion to ``priority ** alpha`` among the valid
starts (without padding: slices inside one episode, not past the newest
step; with padding: any stored step), from a
:class:`~xreplay.samplers.priority_tree.PriorityTree` over start slots whose
invalid starts hold 0. Importance weights are ``(N P(s)) ** -beta`` over the
largest one, ``(min_priority / priority(s)) ** beta``. A priority update
takes the TD errors of sampled sequences: ``|error| + epsilon`` becomes the
priority of each learning step (steps overwritten since the sample are
skipped), and every start whose learning steps include an updated step is
recomputed. Writes reach it through :meth:`~PrioritizedSequenceSampler.on_write`, as for every sampler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, FieldShapeError, InsufficientDataError, PriorityError
from xreplay.samplers.base import Draw
from xreplay.samplers.priorities import largest_leaf
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import Schedule, as_schedule
from xreplay.samplers.sequences import SequenceSampler
from xreplay.storage.resources import as_count
from xreplay.writers import SlotPlan

_SMALLEST_WEIGHT = float(np.finfo(np.float32).tiny)

__all__ = ["PrioritizedSequenceSampler"]


class PrioritizedSequenceSampler:
    """Draw ``burn_in + length`` step slices of a buffer in proportion to their R2D2 sequence priority.

    Args:
        slices: The :class:`~xreplay.samplers.SequenceSampler` that says which slices are valid (length,
            burn-in, padding, episode-end fields); this sampler draws among them by priority.
        alpha: Priority exponent (0 is uniform over valid starts).
        beta: Importance-sampling exponent: a number or a schedule of the sample count.
        eta: Weight of the maximum in the sequence priority.
        epsilon: Added to every updated step priority.
        initial_priority: Priority of new steps until a larger one is seen.
        backend: Tree back end (see :class:`~xreplay.samplers.priority_tree.PriorityTree`).

    The buffer sets the capacity when the sampler is passed to it.

    Example:
        >>> from xreplay.buffers import TransitionBuffer
        >>> sampler = PrioritizedSequenceSampler(SequenceSampler(2, end_fields=("terminated",)), epsilon=0.0)
        >>> buf = TransitionBuffer(16, sampler=sampler, seed=0)
        >>> _ = buf.extend({"obs": np.arange(8.0), "terminated": np.array([0, 0, 0, 1, 0, 0, 0, 1])})
        >>> s = buf.sample(4)
        >>> s["obs"].shape, s.weights.tolist()
        (torch.Size([4, 2]), [1.0, 1.0, 1.0, 1.0])
        >>> buf.update_priorities(s, torch.zeros(4, 2))  # those sequences' steps now have priority 0
        0
    """

    prioritized = True

    def __init__(
        self,
        slices: SequenceSampler,
        alpha: float = 0.6,
        beta: float | Schedule = 0.4,
        eta: float = 0.9,
        epsilon: float = 1e-6,
        initial_priority: float = 1.0,
        backend: str | None = None,
    ):
        """Hold no steps yet; the buffer binds the capacity."""
        if not (0 <= alpha < np.inf and 0 <= epsilon < np.inf and 0.0 <= eta <= 1.0 and 0 < initial_priority < np.inf):
            raise ArgumentError(
                f"need alpha >= 0, epsilon >= 0, 0 <= eta <= 1 and initial_priority > 0; "
                f"got {alpha}, {epsilon}, {eta}, {initial_priority}"
            )
        if not isinstance(slices, SequenceSampler):
            raise ArgumentError(
                f"slices must be a SequenceSampler (length, burn_in, pad, end_fields), received {slices!r}"
            )
        self.slicer = slices
        self.window = self.slicer.window
        self.alpha, self.eta, self.epsilon = float(alpha), float(eta), float(epsilon)
        self.beta = as_schedule(beta)
        self.max_priority = float(initial_priority)
        self.backend = backend
        self.capacity: int | None = None
        self.step_priorities = np.zeros(0)  # priority of the step in each slot
        self.generations = np.zeros(0, dtype=np.int64)  # grows when a slot is overwritten
        self.tree: PriorityTree | None = None  # start slot -> sequence priority ** alpha
        self.samples_drawn = 0
        self.stale_updates = 0

    # -- the Sampler protocol: binding and writes ------------------------------

    def bind(self, capacity: int) -> None:
        """Attach to a buffer of ``capacity`` slots (allocating the step priorities and the tree).

        Raises:
            ValueError: The sampler was bound to another capacity (names both).
        """
        self.slicer.bind(capacity)
        if self.capacity is None:
            self.capacity = int(capacity)
            self.step_priorities = np.zeros(capacity)
            self.generations = np.zeros(capacity, dtype=np.int64)
            self.tree = PriorityTree(capacity, backend=self.backend)

    def _tree(self) -> PriorityTree:
        """Return the tree (the sampler is bound)."""
        self.slicer._capacity()  # raises when unbound
        assert self.tree is not None
        return self.tree

    def on_write(self, plan: SlotPlan, items: Mapping[str, Any]) -> None:
        """Give the written steps the max priority and recompute every start whose window holds one."""
        self.slicer.on_write(plan, items)
        capacity = self.slicer._capacity()
        count = 0
        for slot, _item, run in plan.segments:
            self.step_priorities[slot : slot + run] = self.max_priority
            self.generations[slot : slot + run] += 1
            count += run
        if count:
            # Starts whose windows hold a new step (their validity or priority changed).
            span = min(count + self.window - 1, capacity)
            self._recompute((self.slicer.newest + 1 - span + np.arange(span)) % capacity)

    def _recompute(self, starts: np.ndarray) -> None:
        """Recompute the tree leaves (sequence priority ** alpha, 0 when invalid) of ``starts``."""
        slicer, capacity, tree = self.slicer, self.slicer._capacity(), self._tree()
        size = slicer.size
        if size == 0 or starts.size == 0 or any(f not in (slicer.fields or ()) for f in slicer.end_fields):
            return
        oldest, newest = slicer.bounds()
        window = (starts[:, None] + np.arange(self.window)) % capacity
        ahead = (newest - starts) % capacity  # stored steps after each start
        stored = (starts - oldest) % capacity < size
        ends = slicer.ends[window]
        if slicer.pad:
            ended = np.cumsum(ends, axis=1) - ends  # episode ends strictly before each step
            steps_ok = (ended == 0) & (np.arange(self.window)[None, :] <= ahead[:, None])
            valid = stored
        else:
            valid = stored & (ahead >= self.window - 1) & ~ends[:, :-1].any(axis=1)
            steps_ok = np.ones(window.shape, dtype=bool)
        learn = steps_ok[:, slicer.burn_in :] & valid[:, None]
        priority = self._mix(self.step_priorities[window[:, slicer.burn_in :]], learn)
        tree.update(starts, np.where(learn.any(axis=1), priority, 0.0) ** self.alpha)

    def _mix(self, priorities: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return ``eta * max + (1 - eta) * mean`` of ``priorities`` over ``mask`` per row (0 where empty)."""
        masked = np.where(mask, priorities, 0.0)
        count = np.maximum(mask.sum(axis=1), 1)
        return self.eta * masked.max(axis=1) + (1.0 - self.eta) * masked.sum(axis=1) / count

    # -- sampling -------------------------------------------------------------

    def sample(
        self,
        rng: np.random.Generator,
        n: int,
        size: int | None = None,
        replace: bool | None = None,
        step: int | None = None,
    ) -> Draw:
        """Draw ``n`` sequences with replacement, with ``rng``.

        Raises:
            ArgumentError: ``n`` is not an int >= 0, or ``replace`` is False.
            InsufficientDataError: No valid sequence is stored (or every priority is zero).
            UnknownFieldError: The buffer lacks an end field.
        """
        n = as_count(n, "sample size")
        if replace is False:
            raise ArgumentError("sequence sampling draws with replacement; pass replace=True")
        slicer, tree = self.slicer, self._tree()
        if slicer.size == 0:
            raise InsufficientDataError("cannot sample sequences from an empty buffer")
        slicer.check_fields()
        total = tree.total()
        if not total > 0.0:
            raise InsufficientDataError(
                f"cannot sample {n} sequences of {self.window} steps: no valid start with a positive priority "
                f"among {slicer.size} stored steps (episodes may be shorter than burn_in + length: pad=True)"
            )
        starts = tree.find(rng.random(n) * total)
        leaf = tree.sums.take(starts)
        beta = self.beta(self.samples_drawn if step is None else step)
        self.samples_drawn += 1
        weights = np.maximum((tree.min() / leaf) ** beta, _SMALLEST_WEIGHT)  # float32 never rounds one to 0
        capacity = slicer._capacity()
        window = (starts[:, None] + np.arange(self.window)) % capacity
        ahead = (slicer.bounds()[1] - starts) % capacity
        mask = slicer.mask(window, ahead)
        learn = mask.copy()
        learn[:, : slicer.burn_in] = False
        return Draw(window, weights.astype(np.float32), self.generations[window], leaf / total, mask, learn)

    # -- priority updates -----------------------------------------------------

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set the step priorities of drawn sequences from their TD errors and recompute the sequences.

        Args:
            indices: The windows drawn (``[batch, burn_in + length]`` slots, a sample's ``indices``).
            priorities: TD errors ``[batch, length]`` (learning steps) or ``[batch, burn_in + length]``;
                ``|error| + epsilon`` becomes the priority of each learning step inside its episode.
            generations: The sample's ``generations``; steps overwritten since are skipped.

        Returns:
            The number of steps skipped because their slot was overwritten since the sample.

        Raises:
            FieldShapeError: ``priorities`` or ``generations`` has another shape.
            PriorityError: An error is not a real number, is NaN or infinite (names the sequence, step and
                value), or so large that the sum of priorities could overflow.
        """
        window = np.asarray(indices, dtype=np.int64)
        capacity, burn_in = self.slicer._capacity(), self.slicer.burn_in
        if window.ndim != 2 or window.shape[1] != self.window:
            raise FieldShapeError(f"expected windows of shape (batch, {self.window}), received {window.shape}")
        errors = priorities.detach().cpu().numpy() if isinstance(priorities, torch.Tensor) else priorities
        raw = np.asarray(errors)
        if raw.size and raw.dtype.kind not in "iuf":
            raise PriorityError(f"TD errors must be real numbers, received dtype {raw.dtype}")
        errors = raw.astype(np.float64)
        batch = window.shape[0]
        if errors.shape == (batch, self.window):
            errors = errors[:, burn_in:]
        if errors.shape != (batch, self.window - burn_in):
            raise FieldShapeError(
                f"expected errors of shape {(batch, self.window - burn_in)} or {(batch, self.window)}, "
                f"received {errors.shape}"
            )
        seen = self.generations[window] if generations is None else np.asarray(generations)
        if seen.shape != window.shape:
            raise FieldShapeError(f"expected generations of shape {window.shape}, received {seen.shape}")
        if not np.isfinite(errors).all():
            row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(errors)))
            raise PriorityError(
                f"error {errors[row, col]} of sequence {row} (start slot {int(window[row, 0])}), "
                f"learning step {col} is not finite"
            )
        largest = float(np.abs(errors).max(initial=0.0)) + self.epsilon
        if largest**self.alpha > largest_leaf(capacity):
            raise PriorityError(
                f"TD error magnitude {largest:.3g} ** alpha {self.alpha} exceeds float64 max / capacity "
                f"{capacity}, so the sum of sequence priorities could overflow; scale the errors down"
            )
        slots = window[:, burn_in:]
        ahead = (self.slicer.bounds()[1] - window[:, 0]) % capacity
        learn = self.slicer.mask(window, ahead)[:, burn_in:]
        fresh = self.generations[slots] == seen[:, burn_in:]
        stale = int(np.count_nonzero(learn & ~fresh))
        self.stale_updates += stale
        use = learn & fresh
        if use.any():
            values = np.abs(errors[use]) + self.epsilon
            self.step_priorities[slots[use]] = values
            self.max_priority = max(self.max_priority, float(values.max()))
            around = window[:, :1] + np.arange(-self.window + 1, self.window)  # starts sharing a step
            self._recompute(np.unique(around % capacity))
        return stale

    def priorities(self, starts: Any) -> np.ndarray:
        """Return ``priority ** alpha`` of the sequences starting at ``starts`` (0 when invalid)."""
        return self._tree()[np.asarray(starts, dtype=np.int64)]

    # -- state ----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every step; generations keep growing so that old samples stay stale."""
        self.slicer.reset()
        self.step_priorities[:] = 0.0
        self._tree().load_leaves(np.zeros(self.slicer._capacity()))

    def stats(self) -> dict[str, Any]:
        """Return stale updates skipped and the sequence priorities' (``** alpha``) minimum, maximum and sum."""
        tree = self._tree()
        leaves = tree.leaves()
        positive = leaves[leaves > 0]
        return {
            "stale_updates": self.stale_updates,
            "priority_min": float(positive.min()) if positive.size else 0.0,
            "priority_max": float(leaves.max(initial=0.0)),
            "priority_sum": tree.total(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Return the step priorities, generations, tree leaves and counters (arrays are not copies)."""
        tree = self._tree()
        return {
            "slicer": self.slicer.state_dict(),
            "step_priorities": self.step_priorities,
            "generations": self.generations,
            "leaves": tree.leaves(),
            "max_priority": self.max_priority,
            "samples_drawn": self.samples_drawn,
            "stale_updates": self.stale_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state of :meth:`state_dict` for the same capacity; on any error nothing changes.

        Raises:
            ArgumentError: The state is for another capacity or holds invalid values.
        """
        capacity, tree = self.slicer._capacity(), self._tree()
        arrays = {k: np.asarray(state.get(k, ())) for k in ("step_priorities", "generations", "leaves")}
        if any(a.shape != (capacity,) for a in arrays.values()):
            raise ArgumentError(f"prioritized sequence state must hold {capacity} values per array")
        if not (np.isfinite(arrays["leaves"]).all() and (arrays["leaves"] >= 0).all()):
            raise ArgumentError("prioritized sequence state 'leaves' must be finite and >= 0")
        max_priority = float(state.get("max_priority", 0.0))
        drawn, stale = state.get("samples_drawn"), state.get("stale_updates")
        if not isinstance(drawn, int) or not isinstance(stale, int) or not (0 < max_priority < np.inf):
            raise ArgumentError("prioritized sequence state needs 0 < max_priority < inf and counters >= 0")
        if drawn < 0 or stale < 0:
            raise ArgumentError("prioritized sequence state needs 0 < max_priority < inf and counters >= 0")
        self.slicer.load_state_dict(state["slicer"])  # checks before it changes anything
        self.step_priorities = arrays["step_priorities"].astype(np.float64)
        self.generations = arrays["generations"].astype(np.int64)
        tree.load_leaves(arrays["leaves"])
        self.max_priority, self.samples_drawn, self.stale_updates = max_priority, drawn, stale
