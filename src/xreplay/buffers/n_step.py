"""N-step returns for sampled transitions, stopping at episode ends and at the newest item."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any, Protocol

import numpy as np
import torch

from xreplay.errors import UnknownFieldError
from xreplay.storage.columns import ColumnStorage
from xreplay.writers import RingWriter


class StepBuffer(Protocol):
    """What n-step returns read: a :class:`~xreplay.buffers.TransitionBuffer` holding steps in time order."""

    storage: ColumnStorage
    writer: RingWriter

    @property
    def capacity(self) -> int:
        """Return the number of slots."""

    @property
    def next_obs_fields(self) -> tuple[str, ...]:
        """Return the fields read from the following slot."""

    def gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, Any]:
        """Return stored fields at ``indices``."""


__all__ = ["NStepReturns"]


@dataclasses.dataclass(frozen=True)
class NStepReturns:
    """Compute ``sum_k gamma^k r_{t+k}`` over up to ``n`` following transitions at sample time.

    The sum stops after the first transition that ends its episode
    (terminated or truncated) and at the newest stored transition. The
    bootstrap discount is ``gamma^(m+1)`` after ``m + 1`` summed rewards, or 0
    when the last summed transition *terminated*: a *truncated* episode still
    bootstraps from its ``next_obs``. Samples gain ``"n_step/return"``,
    ``"n_step/discount"`` and ``"n_step/next_obs"`` (the ``next_obs`` of the
    last summed transition, also when the buffer stores it once with
    ``next_obs_from``). Transitions must be added in time order.

    Example:
        >>> from xreplay.buffers.transitions import TransitionBuffer
        >>> nstep = NStepReturns(3, gamma=0.5, reward="rew", terminated="term", truncated=None, next_obs="nobs")
        >>> buf = TransitionBuffer(8, n_step=nstep, seed=0)
        >>> _ = buf.extend({"rew": np.ones(4, np.float32), "term": np.array([0, 0, 1, 0], np.float32),
        ...                 "nobs": np.arange(4, dtype=np.float32)})
        >>> out = nstep.compute(buf, np.array([0, 1, 3]))
        >>> out["n_step/return"].tolist(), out["n_step/discount"].tolist(), out["n_step/next_obs"].tolist()
        ([1.75, 1.5, 1.0], [0.0, 0.0, 0.5], [2.0, 2.0, 3.0])
    """

    n: int
    gamma: float
    reward: str = "reward"
    terminated: str = "terminated"
    truncated: str | None = "truncated"
    next_obs: str = "next_obs"

    def __post_init__(self) -> None:
        """Check ``n`` and ``gamma``."""
        if self.n < 1 or not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"need n >= 1 and 0 <= gamma <= 1, got n={self.n}, gamma={self.gamma}")

    def compute(self, buffer: StepBuffer, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Return the n-step fields for the transitions at ``indices``.

        Raises:
            UnknownFieldError: The buffer lacks one of the named fields.
        """
        columns = buffer.storage.columns
        names = [self.reward, self.terminated, self.next_obs] + ([self.truncated] if self.truncated else [])
        missing = [name for name in names if name not in columns and name not in buffer.next_obs_fields]
        if missing:
            raise UnknownFieldError(f"n-step returns need fields {missing}; the buffer has {list(columns)}")
        capacity, n, batch = buffer.capacity, self.n, indices.shape[0]
        newest = (buffer.writer.cursor - 1) % capacity
        ahead = (newest - indices) % capacity  # stored transitions after each index
        window = (indices[:, None] + np.arange(n)) % capacity  # [batch, n] slots t .. t + n - 1
        device = columns[self.reward].device
        if device.type == "cpu":  # numpy costs less per call than the same few torch ops on small batches
            return self._compute_host(buffer, window, ahead)
        flat = torch.from_numpy(window.reshape(-1)).to(device)
        reward = columns[self.reward].index_select(0, flat).reshape(batch, n).double()
        terminated = columns[self.terminated].index_select(0, flat).reshape(batch, n) != 0
        stop = terminated.clone()
        if self.truncated:
            stop |= columns[self.truncated].index_select(0, flat).reshape(batch, n) != 0
        steps = torch.arange(n, device=device)
        stop |= steps[None, :] >= torch.from_numpy(np.minimum(ahead, n - 1)).to(device)[:, None]
        last = stop.to(torch.uint8).argmax(dim=1)  # first step that ends the sum
        included = steps[None, :] <= last[:, None]
        powers = self.gamma ** steps.double()
        returns = (reward * powers * included).sum(dim=1)
        ended = terminated.gather(1, last[:, None])[:, 0]
        discount = torch.where(ended, 0.0, self.gamma ** (last.double() + 1))
        next_slot = torch.from_numpy(window).to(device).gather(1, last[:, None])[:, 0]
        dtype = columns[self.reward].dtype if columns[self.reward].is_floating_point() else torch.float32
        return {
            "n_step/return": returns.to(dtype),
            "n_step/discount": discount.to(dtype),
            "n_step/next_obs": self._next_obs(buffer, next_slot),
        }

    def _compute_host(self, buffer: StepBuffer, window: np.ndarray, ahead: np.ndarray) -> dict[str, torch.Tensor]:
        """Return :meth:`compute`'s fields for CPU columns, computed with numpy on their views."""
        columns = buffer.storage.columns
        batch, n = window.shape
        flat = window.reshape(-1)
        reward_column = columns[self.reward]
        reward = reward_column.numpy()[flat].reshape(batch, n)
        terminated = columns[self.terminated].numpy()[flat].reshape(batch, n) != 0
        stop = terminated.copy()
        if self.truncated:
            stop |= columns[self.truncated].numpy()[flat].reshape(batch, n) != 0
        steps = np.arange(n)
        stop |= steps >= np.minimum(ahead, n - 1)[:, None]  # the newest stored transition ends the sum
        last = stop.argmax(axis=1)  # first step that ends the sum
        rows = np.arange(batch)
        powers = self.gamma ** steps.astype(np.float64)
        returns = np.where(steps <= last[:, None], reward, 0.0) @ powers  # float64 sums
        discount = np.where(terminated[rows, last], 0.0, self.gamma ** (last + 1.0))
        dtype = reward_column.dtype if reward_column.is_floating_point() else torch.float32
        host = np.float32 if dtype == torch.float32 else np.float64
        return {
            "n_step/return": torch.from_numpy(returns.astype(host)).to(dtype),
            "n_step/discount": torch.from_numpy(discount.astype(host)).to(dtype),
            "n_step/next_obs": self._next_obs(buffer, torch.from_numpy(window[rows, last])),
        }

    def _next_obs(self, buffer: StepBuffer, slots: torch.Tensor) -> torch.Tensor:
        """Return the next observations of ``slots`` (stored, or read from the following slots)."""
        column = buffer.storage.columns.get(self.next_obs)
        if column is not None:
            return column.index_select(0, slots)
        return buffer.gather(slots.cpu().numpy(), [self.next_obs])[self.next_obs]
