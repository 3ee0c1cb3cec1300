"""SequenceSampler: fixed-length slices of stored episodes (R2D2) with burn-in and validity masks.

Steps are stored one per slot, in time order, in a
:class:`~xreplay.buffers.TransitionBuffer` built with this sampler; an episode
ends at a step whose ``terminated`` or ``truncated`` field is non-zero (the
sampler records one end flag per slot as the buffer writes, so sampling reads
no storage). A slice is ``burn_in + length`` consecutive steps. Without
padding a slice lies inside one episode (an end may only be its last step)
and never runs past the newest stored step; starts are drawn uniformly and the
rows that break the rule are drawn again (vectorized rejection) for a few
rounds, after which the valid starts are computed explicitly and the rows
still rejected are drawn uniformly among them, so sampling is exact however
rare valid starts are. With padding any stored step may start a slice, and the
steps after the episode's end (or past the newest step) are masked out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, InsufficientDataError, UnknownFieldError
from xreplay.samplers.base import Draw, check_capacity
from xreplay.storage.resources import as_count
from xreplay.writers import SlotPlan

__all__ = ["SequenceSampler", "host_flags", "sequence_priorities"]


def host_flags(value: Any, count: int) -> np.ndarray:
    """Return one bool per item of a written batch slice: any of its values is non-zero."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return (np.asarray(value).reshape(count, -1) != 0).any(axis=1)


def sequence_priorities(errors: torch.Tensor, mask: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """Return R2D2's priority per sequence: ``eta * max + (1 - eta) * mean`` of ``|errors|`` over valid steps.

    Args:
        errors: TD errors ``[batch, steps]``.
        mask: Bool ``[batch, steps]``, true on the steps to count.
        eta: Weight of the maximum.

    Example:
        >>> p = sequence_priorities(torch.tensor([[1.0, -3.0, 9.0]]), torch.tensor([[True, True, False]]))
        >>> round(p.item(), 4)  # 0.9 * 3 + 0.1 * 2
        2.9
    """
    absolute = errors.abs() * mask
    count = mask.sum(dim=1).clamp(min=1)
    return eta * absolute.max(dim=1).values + (1 - eta) * absolute.sum(dim=1) / count


class SequenceSampler:
    """Draw ``burn_in + length`` consecutive steps of one episode from a step buffer.

    Args:
        length: Steps trained on.
        burn_in: Steps before them that only warm up a recurrent state.
        pad: Allow slices that run past their episode's end, with those steps masked.
        end_fields: Fields whose non-zero value ends an episode at that step.
        max_rounds: Cheap redraw rounds for rejected starts before the valid starts are computed explicitly
            (an O(stored steps) pass, so it should stay rare: with 16 rounds and 40% invalid starts a batch
            of 256 needs it about once in 10,000 calls).
        capacity: Slots of the buffer (set by the buffer when omitted).

    Example:
        >>> from xreplay.buffers import TransitionBuffer
        >>> buf = TransitionBuffer(100, sampler=SequenceSampler(length=3, burn_in=1, end_fields=("terminated",)))
        >>> _ = buf.extend({"obs": np.arange(10.0), "terminated": np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1])})
        >>> s = buf.sample(4)
        >>> s["obs"].shape, s.learn_mask[0].tolist()
        (torch.Size([4, 4]), [False, True, True, True])
        >>> all(row in ([0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7, 8], [6, 7, 8, 9]) for row in s.indices.tolist())
        True
    """

    prioritized = False

    def __init__(
        self,
        length: int,
        burn_in: int = 0,
        pad: bool = False,
        end_fields: tuple[str, ...] = ("terminated", "truncated"),
        max_rounds: int = 16,
        capacity: int | None = None,
    ):
        """Hold no steps yet."""
        self.length = as_count(length, "length", minimum=1)
        self.burn_in = as_count(burn_in, "burn_in")
        self.pad = bool(pad)
        self.end_fields = tuple(str(f) for f in end_fields)
        self.max_rounds = as_count(max_rounds, "max_rounds")
        self.window = self.burn_in + self.length  # steps per drawn slice
        self.capacity: int | None = None
        self.ends = np.zeros(0, dtype=bool)  # per slot: the step stored there ends its episode
        self.newest = -1  # slot of the newest stored step
        self.size = 0  # steps stored
        self.fields: tuple[str, ...] | None = None  # the buffer's fields, from its first write
        if capacity is not None:
            self.bind(capacity)

    # -- the Sampler protocol: binding and writes ------------------------------

    def bind(self, capacity: int) -> None:
        """Attach to a buffer of ``capacity`` slots.

        Raises:
            ValueError: The sampler was built for another capacity (names both).
        """
        check_capacity(self, self.capacity, capacity)
        if self.capacity is None:
            self.capacity = int(capacity)
            self.ends = np.zeros(self.capacity, dtype=bool)

    def on_write(self, plan: SlotPlan, items: Mapping[str, Any]) -> None:
        """Record the end flags of the steps the buffer wrote, and the newest step."""
        capacity = self._capacity()
        if self.fields is None:
            self.fields = tuple(items)
        present = [name for name in self.end_fields if name in items]
        for slot, item, count in plan.segments:
            flags = np.zeros(count, dtype=bool)
            for name in present:
                flags |= host_flags(items[name][item : item + count], count)
            self.ends[slot : slot + count] = flags
            self.newest = slot + count - 1
            self.size = min(capacity, self.size + count)

    def _capacity(self) -> int:
        """Return the bound capacity.

        Raises:
            ArgumentError: The sampler is not attached to a buffer.
        """
        if self.capacity is None:
            raise ArgumentError(
                "this SequenceSampler is not attached to a buffer: pass it as TransitionBuffer(sampler=...)"
            )
        return self.capacity

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Refuse: uniform slices have no priorities.

        Raises:
            ArgumentError: Always (a ``TypeError``); use a PrioritizedSequenceSampler.
        """
        raise ArgumentError(
            "update_priorities needs a PrioritizedSequenceSampler: this buffer samples slices uniformly"
        )

    # -- sampling -------------------------------------------------------------

    def check_fields(self) -> None:
        """Raise UnknownFieldError if the buffer lacks an end field (or nothing was written)."""
        missing = [f for f in self.end_fields if f not in (self.fields or ())]
        if missing:
            raise UnknownFieldError(
                f"sequence sampling needs fields {missing}; the buffer has {list(self.fields or [])}"
            )

    def bounds(self) -> tuple[int, int]:
        """Return ``(oldest, newest)`` stored slots."""
        capacity = self._capacity()
        newest = self.newest % capacity
        oldest = (newest + 1) % capacity if self.size == capacity else 0
        return oldest, newest

    def sample(self, rng: np.random.Generator, n: int, size: int | None = None, replace: bool | None = None) -> Draw:
        """Return ``n`` slices (windows of slots, masks) drawn uniformly from the valid starts, with ``rng``.

        Raises:
            ArgumentError: ``n`` is not an int >= 0, or ``replace`` is False.
            InsufficientDataError: No stored episode holds a slice (and ``pad`` is off).
            UnknownFieldError: The buffer lacks an end field.
        """
        n = as_count(n, "sample size")
        if replace is False:
            raise ArgumentError("sequence sampling draws with replacement; pass replace=True")
        steps, size, capacity = self.window, self.size, self._capacity()
        if size == 0:
            raise InsufficientDataError("cannot sample sequences from an empty buffer")
        self.check_fields()
        oldest, newest = self.bounds()
        starts = (oldest + rng.integers(0, size, n)) % capacity
        if not self.pad:
            bad = np.flatnonzero(self.rejected(starts, newest))
            for _ in range(self.max_rounds):
                if bad.size == 0:
                    break
                starts[bad] = (oldest + rng.integers(0, size, bad.size)) % capacity
                bad = bad[self.rejected(starts[bad], newest)]  # re-check only the redrawn
            if bad.size:
                valid = self.valid_starts(oldest, size)
                starts[bad] = valid[rng.integers(0, valid.shape[0], bad.size)]
        window = (starts[:, None] + np.arange(steps)) % capacity  # [n, steps] slots of each slice
        ahead = (newest - starts) % capacity  # stored steps after each start
        mask = self.mask(window, ahead)
        learn = mask.copy()
        learn[:, : self.burn_in] = False
        return Draw(window, mask=mask, learn_mask=learn)

    def rejected(self, starts: np.ndarray, newest: int) -> np.ndarray:
        """Return bool per start: its slice passes the newest step or an episode ends before its last step."""
        steps, capacity = self.window, self._capacity()
        window = (starts[:, None] + np.arange(steps - 1)) % capacity
        ahead = (newest - starts) % capacity
        return (ahead < steps - 1) | self.ends[window].any(axis=1)

    def valid_starts(self, oldest: int, size: int) -> np.ndarray:
        """Return every slot that starts a valid slice, in time order (one vectorized pass over the stored steps).

        Raises:
            InsufficientDataError: There is none.
        """
        steps = self.window
        slots = (oldest + np.arange(size)) % self._capacity()  # stored steps, oldest first
        ends = self.ends[slots]
        before = np.concatenate([[0], np.cumsum(ends)])  # ends among the first k stored steps
        first = np.arange(max(size - steps + 1, 0))  # starts whose slice stays within the stored steps
        valid = first[before[first + steps - 1] == before[first]]  # no end before the slice's last step
        if valid.size == 0:
            boundaries = np.concatenate([[-1], np.flatnonzero(ends), [size - 1]])
            longest = int(np.diff(boundaries).max())
            raise InsufficientDataError(
                f"no slice of {steps} steps (burn_in {self.burn_in} + length {self.length}) lies inside one "
                f"stored episode: the longest stored episode has {longest} steps; store longer episodes, "
                f"shorten the slices or pass pad=True"
            )
        return slots[valid]

    def mask(self, window: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """Return the steps of each slice up to its episode's end and the newest step."""
        if not self.pad:
            return np.ones(window.shape, dtype=bool)
        ends = self.ends[window]
        ended = np.cumsum(ends, axis=1) - ends  # episode ends strictly before each step
        return (ended == 0) & (np.arange(window.shape[1])[None, :] <= ahead[:, None])

    # -- state ----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every step."""
        self.ends[:] = False
        self.newest, self.size = -1, 0

    def stats(self) -> dict[str, Any]:
        """Return the number of stored episode ends."""
        return {"episode_ends": int(np.count_nonzero(self.ends[: self.size])) if self.capacity else 0}

    def state_dict(self) -> dict[str, Any]:
        """Return the recorded end flags (the array itself), the newest slot, the size and the fields."""
        return {
            "capacity": self.capacity,
            "ends": self.ends,
            "newest": int(self.newest),
            "size": int(self.size),
            "fields": None if self.fields is None else list(self.fields),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state of :meth:`state_dict` for the same capacity; on any error nothing changes.

        Raises:
            ArgumentError: The state is for another capacity or holds values out of range.
        """
        capacity = self._capacity()
        ends = np.asarray(state.get("ends", ()), dtype=bool)
        newest, size = state.get("newest"), state.get("size")
        if state.get("capacity") != capacity or ends.shape != (capacity,):
            raise ArgumentError(f"sequence sampler state is for capacity {state.get('capacity')}, not {capacity}")
        if not isinstance(newest, int) or not isinstance(size, int) or not (-1 <= newest < capacity >= size >= 0):
            raise ArgumentError(f"sequence sampler state needs -1 <= newest < {capacity} and 0 <= size <= {capacity}")
        fields = state.get("fields")
        self.ends = ends.copy()
        self.newest, self.size = newest, size
        self.fields = None if fields is None else tuple(str(f) for f in fields)
