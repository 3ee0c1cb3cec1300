"""pymarl2's ``PrioritizedReplayBuffer``: episodes sampled in proportion to ``priority ** alpha``.

Same signature, attributes (``alpha``, ``beta_original``, ``beta``,
``beta_increment``, ``max_priority``) and results as pymarl2: ``sample(batch_size, t)``
returns ``(batch, idxes, weights)``, draws one mass per stratum from Python's
global ``random`` (so a seeded pymarl2 run draws the same numbers), anneals
beta from ``beta`` to 1 over ``t_max`` and normalises the importance weights
by the largest weight any stored episode could get. Priorities live in
xreplay's :class:`~xreplay.samplers.PrioritizedSampler`.

Upstream defects that are fixed rather than reproduced (each has a test in
``tests/compat/pymarl/test_prioritized.py``):

* The sampling total was ``sum(0, episodes_in_buffer - 1)`` with an exclusive
  end, so the last stored episode was never sampled; every stored episode is
  now sampled with probability ``p ** alpha / sum``.
* With one stored episode the tree reduction recursed forever
  (``RecursionError``); one episode now samples normally.
* Priorities of new episodes were set over the range between the old and new
  ``buffer_index``, so an insert of exactly ``buffer_size`` episodes set no
  priorities (they stayed 0 and were never sampled) and larger inserts set the
  wrong slots. Every slot written now gets the current max priority.
* ``device`` was ignored and storage forced to ``"cpu"``; it is honoured.
* ``beta`` kept growing past 1 after ``t_max``; it stops at 1.
* ``update_priorities`` applied priorities to whatever episode a slot held by
  then; updates for episodes overwritten since they were sampled are skipped
  and counted in ``stale_updates``.
* With every priority 0, sampling raised a bare ``ValueError`` after
  drawing from ``random`` and moving ``beta``; it raises
  :class:`~xreplay.errors.InsufficientDataError` (a ``ValueError``) before
  drawing or changing anything.
* ``update_priorities`` used bare ``assert``; invalid priorities (NaN, inf,
  negative, text, or so large that the sum would overflow) raise
  :class:`~xreplay.errors.PriorityError`, a length mismatch
  :class:`~xreplay.errors.FieldShapeError` and indices outside the stored
  episodes :class:`~xreplay.errors.IndexOutOfRangeError`, naming the index
  and value, before anything changes. A priority of 0 is accepted (never sampled).
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any, ClassVar

import numpy as np
import torch

from xreplay.buffers.locking import critical_section
from xreplay.compat.pymarl.episode_batch import EpisodeBatch
from xreplay.compat.pymarl.replay_buffer import ReplayBuffer
from xreplay.errors import ArgumentError, InsufficientDataAssertionError, InsufficientDataError
from xreplay.samplers.priorities import as_priority_update
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.schedules import LinearSchedule
from xreplay.storage.resources import as_count, check_allocation

__all__ = ["PrioritizedReplayBuffer"]


class PrioritizedReplayBuffer(ReplayBuffer):
    """pymarl2's prioritized episode buffer: ``sample(batch_size, t)`` and ``update_priorities``.

    Thread-safe as :class:`ReplayBuffer`: priority updates take the same lock.

    Example:
        >>> import random
        >>> buf = PrioritizedReplayBuffer({"reward": {"vshape": (1,)}}, {}, 4, 2, alpha=0.6, beta=0.4, t_max=100)
        >>> buf.insert_episode_batch(EpisodeBatch({"reward": {"vshape": (1,)}}, {}, 4, 2))
        >>> random.seed(0)
        >>> batch, idxes, weights = buf.sample(4, t=0)
        >>> idxes, weights.tolist()
        ([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0])
        >>> buf.update_priorities(idxes, [0.5, 1.0, 2.0, 4.0])
    """

    _pymarl_kind: ClassVar[str] = "pymarl.prioritized_replay_buffer"

    def __init__(
        self,
        scheme: dict[str, Any],
        groups: Any,
        buffer_size: int,
        max_seq_length: int,
        alpha: float,
        beta: float,
        t_max: int,
        preprocess: dict[str, Any] | None = None,
        device: Any = "cpu",
        *,
        compact: bool | None = None,
    ):
        """Allocate ``buffer_size`` episodes and their priorities (new episodes start at priority 1)."""
        super().__init__(
            scheme, groups, buffer_size, max_seq_length, preprocess=preprocess, device=device, compact=compact
        )
        self.alpha = alpha
        self.beta_original = beta
        self.beta = beta
        self.beta_increment = (1.0 - beta) / t_max
        self.t_max = t_max
        self._sampler = self._new_sampler(buffer_size)
        self._last_sample: tuple[np.ndarray, np.ndarray] | None = None

    def _new_sampler(self, capacity: int) -> PrioritizedSampler:
        """Return an empty priority sampler of ``capacity`` slots with this buffer's alpha and beta schedule."""
        return PrioritizedSampler(
            capacity,
            alpha=self.alpha,
            beta=LinearSchedule(self.beta_original, 1.0, self.t_max),
            epsilon=0.0,
            initial_priority=1.0,
        )

    @property
    def max_priority(self) -> float:
        """Return the largest priority seen (new episodes get its ``alpha`` power)."""
        return self._sampler.max_priority

    @property
    def stale_updates(self) -> int:
        """Return how many priority updates were skipped because their episode was overwritten."""
        return self._sampler.stale_updates

    @critical_section
    def insert_episode_batch(self, ep_batch: EpisodeBatch) -> None:
        """Insert ``ep_batch`` and give every slot written the current max priority."""
        plan = self._writer.plan(self._check_episode_batch(ep_batch))
        super().insert_episode_batch(ep_batch)
        for slot, _item, count in plan.segments:
            self._sampler.insert_range(slot, slot + count)

    @critical_section
    def sample(  # type: ignore[override]  # pymarl2's signature differs from ReplayBuffer.sample
        self, batch_size: int, t: int
    ) -> tuple[EpisodeBatch, list[int], np.ndarray]:
        """Return ``(batch, idxes, weights)``: ``batch_size`` episodes drawn with replacement, one per stratum.

        The importance weights follow pymarl2's formula in float64:
        ``(P(i) N) ** -beta / (P_min N) ** -beta`` with ``N`` the stored episodes,
        ``P(i)`` the drawn episode's probability and ``P_min`` the smallest
        positive one; ``beta = beta_original + t * beta_increment``, at most 1.

        Raises:
            ArgumentError: ``batch_size`` is not an int >= 1 or ``t`` is not a real number.
            AssertionError: Fewer than ``batch_size`` episodes are stored (as the base buffer).
            InsufficientDataError: Every stored priority is 0; raised before anything is drawn
                from ``random`` or any counter (``beta``...) changes.
        """
        batch_size = as_count(batch_size, "batch_size", minimum=1)
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t):
            raise ArgumentError(f"t (the training step) must be a finite real number, received {t!r}")
        if not self.can_sample(batch_size):
            raise InsufficientDataAssertionError(
                f"sample size {batch_size} exceeds the {self.episodes_in_buffer} stored episodes; "
                f"lower it or check can_sample() first"
            )
        assert self._storage is not None
        row = self._storage.layout.row_bytes
        # Drawn with replacement: the masses, indices and weights (about 64 bytes each) and the gathered rows.
        check_allocation(
            batch_size * (row + 64), self._storage.device, lambda: f"a sample of {batch_size} episodes", "sample fewer"
        )
        total = self._sampler.total()
        if not total > 0.0:
            raise InsufficientDataError(
                f"cannot sample {batch_size} episodes: the priorities of all {self.episodes_in_buffer} stored "
                f"episodes are 0 (their sum is {total}); give some a positive priority with update_priorities"
            )
        beta = min(1.0, self.beta_original + t * self.beta_increment)
        segment = total / batch_size
        # pymarl2 draws each stratum's mass from Python's global random, one call per episode.
        uniform = np.array([random.random() for _ in range(batch_size)])
        mass = uniform * segment + np.arange(batch_size) * segment
        drawn = self._sampler.sample_masses(mass, total, step=t)
        self.beta = beta
        self._last_sample = (drawn.indices, drawn.generations)
        stored = float(self.episodes_in_buffer)
        max_weight = (self._sampler.tree.min() / total * stored) ** -beta
        weights = (drawn.probabilities * stored) ** -beta / max_weight
        return self.gather(drawn.indices), drawn.indices.tolist(), weights

    @critical_section
    def update_priorities(self, idxes: Any, priorities: Any) -> None:
        """Set the priorities of sampled episodes, skipping those overwritten since they were sampled.

        Raises:
            ArgumentError: An index is not an integer.
            FieldShapeError: ``idxes`` and ``priorities`` differ in length.
            PriorityError: A priority is not a finite real number >= 0, or is too large for the sum.
            IndexOutOfRangeError: An index is outside the stored episodes.
        """
        if isinstance(priorities, torch.Tensor):
            priorities = priorities.detach().cpu().numpy()
        if isinstance(idxes, torch.Tensor):
            idxes = idxes.detach().cpu().numpy()
        indices, priorities = as_priority_update(idxes, priorities)
        generations = None
        if self._last_sample is not None and np.array_equal(indices, self._last_sample[0]):
            generations = self._last_sample[1]
        self._sampler.update_priorities(indices, priorities, generations)
