"""The one Sampler protocol every native buffer composes, and the :class:`Draw` a sampler returns.

A sampler decides which stored slots come out; the buffer gathers them. Every
sampler (uniform, prioritized, sequence, prioritized sequence) implements the
same five members, so a buffer never asks which kind it holds:

* ``bind(capacity)``: attach to a buffer of ``capacity`` slots (a sampler built
  for another capacity raises ``ValueError`` naming both);
* ``on_write(plan, items)``: learn that the slots of a
  :class:`~xreplay.writers.SlotPlan` now hold new items (``items`` maps field
  names to the written batch, for samplers that read fields such as episode
  ends);
* ``sample(rng, n, size, replace=None) -> Draw``: draw ``n`` of the ``size``
  stored items with the buffer's generator (``replace`` None: the sampler's
  own choice; prioritized and sequence samplers only draw with replacement);
* ``update_priorities(indices, priorities, generations=None) -> int``: set
  priorities of drawn items, skipping (and returning the count of) those
  overwritten since (a sampler whose ``prioritized`` flag is False raises
  ``TypeError``);
* ``state_dict()`` / ``load_state_dict(state)``: plain data and arrays for
  checkpoints, checked before anything changes;
* ``reset()``: forget every item (a buffer's ``clear``), keeping the counters
  that protect against stale updates;
* ``stats()``: counters for the buffer's ``stats`` (stale updates skipped,
  priority minimum, maximum and sum when prioritized).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

from xreplay.writers import SlotPlan

__all__ = ["MEMBERS", "Draw", "Sampler", "check_capacity"]


class Draw(NamedTuple):
    """What a sampler drew: the slots to gather and what a priority update needs back.

    Attributes:
        indices: Slots drawn, int64: ``[n]`` items, or ``[n, steps]`` windows of consecutive steps.
        weights: Importance weights (float32 ``[n]``, at most 1), or None when sampling is uniform.
        generations: Generation of each drawn slot (same shape as ``indices``), or None without
            stale-update protection.
        probabilities: Probability of drawing each item (float64 ``[n]``), or None.
        mask: For windows, bool ``[n, steps]``: the step belongs to the window's episode (None otherwise).
        learn_mask: For windows, ``mask`` without the burn-in steps: the steps to train on.
    """

    indices: np.ndarray
    weights: np.ndarray | None = None
    generations: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    mask: np.ndarray | None = None
    learn_mask: np.ndarray | None = None

    def with_rows(self, rows: np.ndarray, other: Draw) -> Draw:
        """Return this draw with the items (windows) where ``rows`` is True taken, in order, from ``other``."""
        parts = []
        for mine, theirs in zip(self, other, strict=True):
            if mine is not None and theirs is not None:
                mine = mine.copy()
                mine[rows] = theirs
            parts.append(mine)
        return Draw._make(parts)


class Sampler(Protocol):
    """Decides which stored slots come out of a buffer (see the module docstring)."""

    prioritized: bool
    """Whether :meth:`update_priorities` applies (False: it raises, naming the fix)."""

    def bind(self, capacity: int) -> None:
        """Attach to a buffer of ``capacity`` slots."""

    def on_write(self, plan: SlotPlan, items: Mapping[str, Any]) -> None:
        """Learn that the slots of ``plan`` now hold new items (``items``: the written batch by field).

        A sampler whose ``on_write`` does nothing may say so with a class attribute
        ``watches_writes = False``; buffers then skip the call on their hot paths.
        """

    def sample(self, rng: np.random.Generator, n: int, size: int, replace: bool | None = None) -> Draw:
        """Return ``n`` of the ``size`` stored items, drawn with ``rng``."""

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Set priorities of drawn items; return how many were skipped as stale."""

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's state (plain data and numpy arrays)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state of :meth:`state_dict`; nothing changes on error."""

    def reset(self) -> None:
        """Forget every item (generation counters keep growing)."""

    def stats(self) -> dict[str, Any]:
        """Return the sampler's counters."""


def check_capacity(sampler: Any, have: int | None, capacity: int) -> None:
    """Raise ValueError naming both when a sampler built for ``have`` slots meets a buffer of ``capacity``."""
    if have is not None and int(have) != int(capacity):
        raise ValueError(
            f"{type(sampler).__name__} holds {have} slots but the buffer has capacity {capacity}; "
            f"build the sampler with capacity {capacity} (or without one: the buffer sets it)"
        )


MEMBERS = ("bind", "on_write", "sample", "update_priorities", "state_dict", "load_state_dict", "reset", "stats")
"""The methods of the Sampler protocol."""
