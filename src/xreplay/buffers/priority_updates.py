"""How a buffer turns a priority update's arguments into slots and generations for its sampler."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError

__all__ = ["check_last_sample", "resolve_update"]


def resolve_update(
    indices: Any, priorities: Any, generations: Any, last: tuple[np.ndarray, np.ndarray] | None
) -> tuple[Any, np.ndarray, Any]:
    """Return ``(indices, priorities, generations)`` for ``sampler.update_priorities``.

    Args:
        indices: A sample (anything with ``indices`` and ``generations``), or the slots sampled.
        priorities: New priorities (a tensor is moved to the host).
        generations: With plain indices: the sample's generations; None to use those of ``last`` (the
            buffer's most recent sample) when the indices are exactly its indices; ``"current"`` to
            update whatever the slots hold now (no stale protection).
        last: ``(indices, generations)`` of the buffer's most recent sample, or None.

    Raises:
        ArgumentError: ``generations`` is given with a sample, is an unknown string, or is omitted with
            plain indices other than those of the most recent sample.
    """
    if hasattr(indices, "indices") and hasattr(indices, "generations"):
        if generations is not None:
            raise ArgumentError("pass generations only with plain indices, not with a sample")
        indices, generations = indices.indices, indices.generations
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
    elif isinstance(generations, str):
        if generations != "current":
            raise ArgumentError(f"generations must be an array, None or 'current'; received {generations!r}")
        generations = None
    elif generations is None:
        indices = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
        if last is None or not np.array_equal(indices.reshape(-1), last[0].reshape(-1)):
            raise ArgumentError(
                f"update_priorities got {indices.size} plain indices that are not those of the most recent "
                f"sample, and no generations: pass the sample itself, its generations "
                f"(sample.generations), or generations='current' to update whatever the slots hold now"
            )
        indices, generations = indices.reshape(last[0].shape), last[1]
    if isinstance(priorities, torch.Tensor):
        priorities = priorities.detach().cpu().numpy()
    return indices, priorities, generations


def check_last_sample(last: Any, capacity: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Return a saved ``{"indices", "generations"}`` of a buffer's last sample as arrays, checked against ``capacity``.

    Raises:
        ArgumentError: The two differ in shape, or a slot lies outside ``[0, capacity)``.
    """
    if last is None:
        return None
    indices = np.array(last["indices"], dtype=np.int64)
    generations = np.array(last["generations"])
    inside = not indices.size or 0 <= indices.min() <= indices.max() < capacity
    if generations.shape != indices.shape or not inside:
        raise ArgumentError(f"buffer state 'last_sample': slots must lie in [0, {capacity}), one generation each")
    return indices, generations
