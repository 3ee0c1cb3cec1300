"""SequenceSampler: fixed-length slices of stored episodes (R2D2) with burn-in and validity masks.

Steps are stored one per slot, in time order, in a
:class:`~xreplay.buffers.TransitionBuffer`; an episode ends at a step whose
``terminated`` or ``truncated`` field is non-zero. A slice is ``burn_in +
length`` consecutive steps. Without padding a slice lies inside one episode
(an end may only be its last step) and never runs past the newest stored
step; starts are drawn uniformly and the rows that break the rule are drawn
again (vectorized rejection) for a couple of rounds, after which the valid
starts are computed explicitly and the rows still rejected are drawn uniformly
among them, so sampling is exact however rare valid starts are. With padding any stored step may start a
slice, and the steps after the episode's end (or past the newest step) are
masked out.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from xreplay.errors import InsufficientDataError, UnknownFieldError
from xreplay.storage.resources import as_count, check_allocation

if TYPE_CHECKING:
    from xreplay.buffers.transitions import TransitionBuffer

__all__ = ["SequenceSample", "SequenceSampler", "check_sequence_sample", "sequence_priorities"]


def check_sequence_sample(buffer: TransitionBuffer, n: int, steps: int) -> None:
    """Raise CapacityError before sampling ``n`` slices of ``steps`` steps that would not fit in memory.

    Each step costs its gathered row twice (the gather and the reshaped copy), its slot and its masks.
    """
    row = buffer.storage.row_bytes()
    check_allocation(
        n * steps * (2 * row + 16),
        buffer.device,
        lambda: f"a sample of {n} sequences x {steps} steps x {row} bytes",
        "sample fewer or shorter sequences",
    )


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


@dataclasses.dataclass(frozen=True)
class SequenceSample:
    """Slices drawn by a :class:`SequenceSampler`.

    Attributes:
        fields: Field name -> tensor ``[batch, burn_in + length, *item]``.
        indices: Slot of every step (int64 ``[batch, burn_in + length]``).
        mask: Bool ``[batch, burn_in + length]``: the step belongs to the slice's episode.
        learn_mask: ``mask`` without the burn-in steps: the steps to train on.
    """

    fields: dict[str, torch.Tensor]
    indices: np.ndarray
    mask: torch.Tensor
    learn_mask: torch.Tensor


@dataclasses.dataclass(frozen=True)
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

    Example:
        >>> from xreplay.buffers import TransitionBuffer
        >>> buf = TransitionBuffer(100, seed=0)
        >>> _ = buf.extend({"obs": np.arange(10.0), "terminated": np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1])})
        >>> s = SequenceSampler(length=3, burn_in=1, end_fields=("terminated",)).sample(buf, 4)
        >>> s.fields["obs"].shape, s.learn_mask[0].tolist()
        (torch.Size([4, 4]), [False, True, True, True])
        >>> all(row in ([0, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7, 8], [6, 7, 8, 9]) for row in s.indices.tolist())
        True
    """

    length: int
    burn_in: int = 0
    pad: bool = False
    end_fields: tuple[str, ...] = ("terminated", "truncated")
    max_rounds: int = 16

    def sample(self, buffer: TransitionBuffer, n: int) -> SequenceSample:
        """Return ``n`` slices drawn uniformly from the valid starts, with the buffer's generator.

        Raises:
            ArgumentError: ``n`` is not an int >= 0.
            InsufficientDataError: No stored episode holds a slice (and ``pad`` is off).
            UnknownFieldError: The buffer lacks an end field.
        """
        n = as_count(n, "sample size")
        steps = self.burn_in + self.length
        check_sequence_sample(buffer, n, steps)
        size, capacity = len(buffer), buffer.capacity
        if size == 0:
            raise InsufficientDataError("cannot sample sequences from an empty buffer")
        self._check_fields(buffer)
        newest = (buffer.writer.cursor - 1) % capacity
        oldest = (newest + 1) % capacity if size == capacity else 0
        offsets = np.arange(steps)
        starts = (oldest + buffer.rng.integers(0, size, n)) % capacity
        if not self.pad:
            bad = np.flatnonzero(self._rejected(buffer, starts, newest, steps))
            for _ in range(self.max_rounds):
                if bad.size == 0:
                    break
                starts[bad] = (oldest + buffer.rng.integers(0, size, bad.size)) % capacity
                bad = bad[self._rejected(buffer, starts[bad], newest, steps)]  # re-check only the redrawn
            if bad.size:
                valid = self._valid_starts(buffer, oldest, size, steps)
                starts[bad] = valid[buffer.rng.integers(0, valid.shape[0], bad.size)]
        window = (starts[:, None] + offsets) % capacity  # [n, steps] slots of each slice
        ahead = (newest - starts) % capacity  # stored steps after each start
        mask = self._mask(buffer, window, ahead)
        fields = buffer.gather(window.reshape(-1))  # next observations stored once included
        fields = {k: v.reshape(n, steps, *v.shape[1:]) for k, v in fields.items()}
        mask_t = torch.from_numpy(mask).to(buffer.device)
        learn = mask_t.clone()
        learn[:, : self.burn_in] = False
        return SequenceSample(fields, window, mask_t, learn)

    def _rejected(self, buffer: TransitionBuffer, starts: np.ndarray, newest: int, steps: int) -> np.ndarray:
        """Return bool per start: its slice passes the newest step or an episode ends before its last step."""
        capacity = buffer.capacity
        window = (starts[:, None] + np.arange(steps - 1)) % capacity
        ahead = (newest - starts) % capacity
        return (ahead < steps - 1) | self._ends(buffer, window).any(axis=1)

    def _valid_starts(self, buffer: TransitionBuffer, oldest: int, size: int, steps: int) -> np.ndarray:
        """Return every slot that starts a valid slice, in time order (one vectorized pass over the stored steps).

        Raises:
            InsufficientDataError: There is none.
        """
        slots = (oldest + np.arange(size)) % buffer.capacity  # stored steps, oldest first
        ends = self._ends(buffer, slots[None, :])[0]
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

    def _check_fields(self, buffer: TransitionBuffer) -> None:
        """Raise UnknownFieldError if the buffer lacks an end field."""
        columns = buffer.storage.columns
        missing = [f for f in self.end_fields if f not in columns]
        if missing:
            raise UnknownFieldError(
                f"sequence sampling needs fields {missing}; the buffer has {list(columns)}"
            )

    def _ends(self, buffer: TransitionBuffer, window: np.ndarray) -> np.ndarray:
        """Return bool ``window.shape``: the step at each slot ends its episode."""
        if window.size == 0:
            return np.zeros(window.shape, dtype=bool)
        flat = np.ascontiguousarray(window).reshape(-1)
        ends = np.zeros(flat.shape[0], dtype=bool)
        for name in self.end_fields:
            column = buffer.storage.columns[name]
            if column.device.type == "cpu":
                values = column.numpy()[flat]  # numpy's gather costs less per call on CPU
                ends |= (values.reshape(flat.shape[0], -1) != 0).any(axis=1)
            else:
                index = torch.from_numpy(flat).to(column.device)
                hit = column.index_select(0, index).reshape(flat.shape[0], -1).ne(0).any(dim=1)
                ends |= hit.cpu().numpy()
        return ends.reshape(window.shape)

    def _mask(self, buffer: TransitionBuffer, window: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        """Return the steps of each slice up to its episode's end and the newest step."""
        if not self.pad:
            return np.ones(window.shape, dtype=bool)
        ends = self._ends(buffer, window)
        ended = np.cumsum(ends, axis=1) - ends  # episode ends strictly before each step
        return (ended == 0) & (np.arange(window.shape[1])[None, :] <= ahead[:, None])
