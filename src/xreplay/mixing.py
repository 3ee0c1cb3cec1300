"""Sampling from several buffers by weight.

``sample_mixed([(buffer, 0.5), (expert_buffer, 0.5)], batch_size)`` draws
``int(batch_size * weight)`` items from each buffer in list order and
concatenates them, as DI-engine's off-policy data fetcher does for SQIL and
R2D3. It works with any buffer whose ``sample(n)`` returns a list (DI-engine
style ``DequeBuffer``) or a sized batch (native buffers).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from xreplay.errors import ArgumentError, InsufficientDataError
from xreplay.storage.resources import as_count

__all__ = ["MixedSampleError", "sample_mixed"]


class MixedSampleError(InsufficientDataError):
    """One buffer of a weighted mix could not supply its share."""


def sample_mixed(sources: Sequence[tuple[Any, float]], batch_size: int) -> list:
    """Draw ``int(batch_size * weight)`` items from each ``(buffer, weight)`` in order and concatenate.

    Args:
        sources: ``(buffer, weight)`` pairs; weights need not sum to 1.
        batch_size: Base batch size.

    Returns:
        The concatenated samples, in ``sources`` order (not shuffled). A
        buffer whose ``sample`` returns a batch object rather than a list
        (native ``EpisodeBuffer``) contributes that batch as one entry.

    Raises:
        ArgumentError: ``batch_size`` is not an int >= 1, or a weight is not a finite number >= 0.
        MixedSampleError: (a ``ValueError``) a share is below 1, or a buffer
            holds too little; names the buffer's position, its share and its count.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> agent, expert = DequeBuffer(size=8), DequeBuffer(size=8)
        >>> for i in range(4):
        ...     _ = agent.push(("agent", i)); _ = expert.push(("expert", i))
        >>> [r.data[0] for r in sample_mixed([(agent, 0.5), (expert, 0.5)], 4)]
        ['agent', 'agent', 'expert', 'expert']

    """
    batch_size = as_count(batch_size, "batch_size", minimum=1)
    for position, (_buffer, weight) in enumerate(sources):
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= weight < math.inf:
            raise ArgumentError(f"buffer #{position}: weight must be a finite number >= 0, received {weight!r}")
    shares = [(buffer, int(batch_size * weight)) for buffer, weight in sources]
    for position, (buffer, share) in enumerate(shares):
        if share < 1:
            raise MixedSampleError(
                f"buffer #{position} ({type(buffer).__name__}) gets int({batch_size} * weight) = {share} items; "
                "raise its weight or the batch size"
            )
    result: list = []
    for position, (buffer, share) in enumerate(shares):
        try:
            part = buffer.sample(share)
        except ValueError as e:
            raise MixedSampleError(
                f"buffer #{position} ({type(buffer).__name__}) cannot supply its share of {share} items: "
                f"it holds {_count(buffer)} ({e})"
            ) from e
        if isinstance(part, list):
            result.extend(part)
        else:
            result.append(part)  # a native batch (e.g. EpisodeSample) stays one entry per buffer
    return result


def _count(buffer: Any) -> Any:
    """Return the buffer's item count for messages."""
    for name in ("count", "__len__"):
        method = getattr(buffer, name, None)
        if callable(method):
            return method()
    return "an unknown number of items"
