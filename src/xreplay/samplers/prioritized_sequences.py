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
recomputed. Writes to the buffer are picked up at the next call.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, FieldShapeError, InsufficientDataError, PriorityError
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import Schedule, as_schedule
from xreplay.samplers.sequences import SequenceSample, SequenceSampler, check_sequence_sample
from xreplay.storage.resources import as_count

if TYPE_CHECKING:
    from xreplay.buffers.transitions import TransitionBuffer

_SMALLEST_WEIGHT = float(np.finfo(np.float32).tiny)
_LARGEST = float(np.finfo(np.float64).max)

__all__ = ["PrioritizedSequenceSample", "PrioritizedSequenceSampler"]


@dataclasses.dataclass(frozen=True)
class PrioritizedSequenceSample(SequenceSample):
    """Sequences drawn by a :class:`PrioritizedSequenceSampler`.

    Attributes:
        weights: Importance weights (float32 tensor ``[batch]``), at most 1.
        probabilities: Probability of drawing each start (float64 ``[batch]``).
        generations: Generation of every step's slot when drawn (int64 ``[batch, steps]``).
    """

    weights: torch.Tensor
    probabilities: np.ndarray
    generations: np.ndarray


class PrioritizedSequenceSampler:
    """Draw ``burn_in + length`` step slices of a buffer in proportion to their R2D2 sequence priority.

    Args:
        buffer: The step buffer (steps in time order, episode ends flagged).
        length: Steps trained on.
        burn_in: Steps before them that only warm up a recurrent state.
        pad: Allow slices that run past their episode's end (those steps masked).
        end_fields: Fields whose non-zero value ends an episode at that step.
        alpha: Priority exponent (0 is uniform over valid starts).
        beta: Importance-sampling exponent: a number or a schedule of the sample count.
        eta: Weight of the maximum in the sequence priority.
        epsilon: Added to every updated step priority.
        initial_priority: Priority of new steps until a larger one is seen.
        backend: Tree back end (see :class:`~xreplay.samplers.priority_tree.PriorityTree`).

    Example:
        >>> from xreplay.buffers import TransitionBuffer
        >>> buf = TransitionBuffer(16, seed=0)
        >>> _ = buf.extend({"obs": np.arange(8.0), "terminated": np.array([0, 0, 0, 1, 0, 0, 0, 1])})
        >>> sampler = PrioritizedSequenceSampler(buf, length=2, end_fields=("terminated",), epsilon=0.0)
        >>> s = sampler.sample(4)
        >>> s.fields["obs"].shape, s.weights.tolist()
        (torch.Size([4, 2]), [1.0, 1.0, 1.0, 1.0])
        >>> sampler.update_priorities(s, torch.zeros(4, 2))  # those sequences' steps now have priority 0
        0
    """

    def __init__(
        self,
        buffer: TransitionBuffer,
        length: int,
        burn_in: int = 0,
        pad: bool = False,
        end_fields: tuple[str, ...] = ("terminated", "truncated"),
        alpha: float = 0.6,
        beta: float | Schedule = 0.4,
        eta: float = 0.9,
        epsilon: float = 1e-6,
        initial_priority: float = 1.0,
        backend: str | None = None,
    ):
        """Bind to ``buffer``; its current steps start at ``initial_priority``."""
        length, burn_in = as_count(length, "length", minimum=1), as_count(burn_in, "burn_in")
        if not (0 <= alpha < np.inf and 0 <= epsilon < np.inf and 0.0 <= eta <= 1.0 and 0 < initial_priority < np.inf):
            raise ArgumentError(
                f"need alpha >= 0, epsilon >= 0, 0 <= eta <= 1 and initial_priority > 0; "
                f"got {alpha}, {epsilon}, {eta}, {initial_priority}"
            )
        self.buffer = buffer
        self.slicer = SequenceSampler(length, burn_in, pad, tuple(end_fields))
        self.steps = burn_in + length
        self.alpha, self.eta, self.epsilon = float(alpha), float(eta), float(epsilon)
        self.beta = as_schedule(beta)
        self.max_priority = float(initial_priority)
        capacity = buffer.capacity
        self.step_priorities = np.zeros(capacity)  # priority of the step in each slot
        self.generations = np.zeros(capacity, dtype=np.int64)  # grows when a slot is overwritten
        self.tree = PriorityTree(capacity, backend=backend)  # start slot -> sequence priority ** alpha
        self.samples_drawn = 0
        self.stale_updates = 0
        self._writes_seen = 0

    # -- following the buffer -------------------------------------------------

    def sync(self) -> None:
        """Give the steps written since the last call the max priority and recompute the starts they touch."""
        writer = self.buffer.writer
        new = writer.writes - self._writes_seen
        if new <= 0:
            return
        self._writes_seen = writer.writes
        capacity = self.buffer.capacity
        count = min(new, capacity)
        slots = (writer.cursor - count + np.arange(count)) % capacity
        self.step_priorities[slots] = self.max_priority
        self.generations[slots] += 1
        # Starts whose windows hold a new step (their validity or priority changed).
        span = min(count + self.steps - 1, capacity)
        self._recompute((writer.cursor - span + np.arange(span)) % capacity)

    def _recompute(self, starts: np.ndarray) -> None:
        """Recompute the tree leaves (sequence priority ** alpha, 0 when invalid) of ``starts``."""
        buffer, slicer, capacity = self.buffer, self.slicer, self.buffer.capacity
        size = len(buffer)
        if size == 0 or starts.size == 0:
            return
        slicer._check_fields(buffer)
        newest = (buffer.writer.cursor - 1) % capacity
        oldest = (newest + 1) % capacity if size == capacity else 0
        window = (starts[:, None] + np.arange(self.steps)) % capacity
        ahead = (newest - starts) % capacity  # stored steps after each start
        stored = (starts - oldest) % capacity < size
        ends = slicer._ends(buffer, window)
        if slicer.pad:
            ended = np.cumsum(ends, axis=1) - ends  # episode ends strictly before each step
            steps_ok = (ended == 0) & (np.arange(self.steps)[None, :] <= ahead[:, None])
            valid = stored
        else:
            valid = stored & (ahead >= self.steps - 1) & ~ends[:, :-1].any(axis=1)
            steps_ok = np.ones(window.shape, dtype=bool)
        learn = steps_ok[:, slicer.burn_in :] & valid[:, None]
        priority = self._mix(self.step_priorities[window[:, slicer.burn_in :]], learn)
        self.tree.update(starts, np.where(learn.any(axis=1), priority, 0.0) ** self.alpha)

    def _mix(self, priorities: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Return ``eta * max + (1 - eta) * mean`` of ``priorities`` over ``mask`` per row (0 where empty)."""
        masked = np.where(mask, priorities, 0.0)
        count = np.maximum(mask.sum(axis=1), 1)
        return self.eta * masked.max(axis=1) + (1.0 - self.eta) * masked.sum(axis=1) / count

    # -- sampling -------------------------------------------------------------

    def sample(self, n: int, step: int | None = None) -> PrioritizedSequenceSample:
        """Draw ``n`` sequences with replacement, with the buffer's generator.

        Raises:
            ArgumentError: ``n`` is not an int >= 0.
            InsufficientDataError: No valid sequence is stored (or every priority is zero).
            UnknownFieldError: The buffer lacks an end field.
        """
        n = as_count(n, "sample size")
        check_sequence_sample(self.buffer, n, self.steps)
        self.sync()
        total = self.tree.total()
        if not total > 0.0:
            raise InsufficientDataError(
                f"cannot sample {n} sequences of {self.steps} steps: no valid start with a positive priority "
                f"among {len(self.buffer)} stored steps (episodes may be shorter than burn_in + length: pad=True)"
            )
        starts = self.tree.find(self.buffer.rng.random(n) * total)
        leaf = self.tree.sums.take(starts)
        beta = self.beta(self.samples_drawn if step is None else step)
        self.samples_drawn += 1
        weights = np.maximum((self.tree.min() / leaf) ** beta, _SMALLEST_WEIGHT)  # float32 never rounds one to 0
        capacity = self.buffer.capacity
        window = (starts[:, None] + np.arange(self.steps)) % capacity
        ahead = (self.buffer.writer.cursor - 1 - starts) % capacity
        mask = torch.from_numpy(self.slicer._mask(self.buffer, window, ahead)).to(self.buffer.device)
        fields = self.buffer.gather(window.reshape(-1))
        fields = {k: v.reshape(n, self.steps, *v.shape[1:]) for k, v in fields.items()}
        learn = mask.clone()
        learn[:, : self.slicer.burn_in] = False
        return PrioritizedSequenceSample(
            fields,
            window,
            mask,
            learn,
            torch.from_numpy(weights.astype(np.float32)).to(self.buffer.device),
            leaf / total,
            self.generations[window],
        )

    # -- priority updates -----------------------------------------------------

    def update_priorities(self, sample: PrioritizedSequenceSample, errors: Any) -> int:
        """Set the step priorities of sampled sequences from their TD errors and recompute the sequences.

        Args:
            sample: The sample the errors belong to.
            errors: TD errors ``[batch, length]`` (learning steps) or
                ``[batch, burn_in + length]``; ``|error| + epsilon`` becomes
                the priority of each learning step inside its episode.

        Returns:
            The number of steps skipped because their slot was overwritten since the sample.

        Raises:
            FieldShapeError: ``errors`` has another shape.
            PriorityError: An error is not a real number, is NaN or infinite (names the sequence, step and
                value), or so large that the sum of priorities could overflow.
        """
        if isinstance(errors, torch.Tensor):
            errors = errors.detach().cpu().numpy()
        raw = np.asarray(errors)
        if raw.size and raw.dtype.kind not in "iuf":
            raise PriorityError(f"TD errors must be real numbers, received dtype {raw.dtype}")
        errors = raw.astype(np.float64)
        batch, burn_in = sample.indices.shape[0], self.slicer.burn_in
        if errors.shape == (batch, self.steps):
            errors = errors[:, burn_in:]
        if errors.shape != (batch, self.steps - burn_in):
            raise FieldShapeError(
                f"expected errors of shape {(batch, self.steps - burn_in)} or {(batch, self.steps)}, "
                f"received {errors.shape}"
            )
        if not np.isfinite(errors).all():
            row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(errors)))
            raise PriorityError(
                f"error {errors[row, col]} of sequence {row} (start slot {int(sample.indices[row, 0])}), "
                f"learning step {col} is not finite"
            )
        largest = float(np.abs(errors).max(initial=0.0)) + self.epsilon
        if largest**self.alpha > _LARGEST / self.buffer.capacity:
            raise PriorityError(
                f"TD error magnitude {largest:.3g} ** alpha {self.alpha} exceeds float64 max / capacity "
                f"{self.buffer.capacity}, so the sum of sequence priorities could overflow; scale the errors down"
            )
        self.sync()
        slots = sample.indices[:, burn_in:]
        learn = sample.learn_mask[:, burn_in:].cpu().numpy()
        fresh = self.generations[slots] == sample.generations[:, burn_in:]
        stale = int(np.count_nonzero(learn & ~fresh))
        self.stale_updates += stale
        use = learn & fresh
        if use.any():
            priorities = np.abs(errors[use]) + self.epsilon
            self.step_priorities[slots[use]] = priorities
            self.max_priority = max(self.max_priority, float(priorities.max()))
            capacity = self.buffer.capacity
            around = sample.indices[:, :1] + np.arange(-self.steps + 1, self.steps)  # starts sharing a step
            self._recompute(np.unique(around % capacity))
        return stale

    def priorities(self, starts: Any) -> np.ndarray:
        """Return ``priority ** alpha`` of the sequences starting at ``starts`` (0 when invalid)."""
        self.sync()
        return self.tree[np.asarray(starts, dtype=np.int64)]
