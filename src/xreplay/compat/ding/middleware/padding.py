"""``padding``: extend every group of a grouped sample to the longest group's length."""

from __future__ import annotations

import random
from typing import Any

from xreplay.compat.ding.data import BufferedData, fastcopy
from xreplay.compat.ding.dispatch import StringDispatch

__all__ = ["Padding", "padding"]


class Padding(StringDispatch):
    """Middleware padding the groups of a grouped sample to equal length.

    Policy ``"random"`` appends copies of records drawn with ``random.choice``
    from the growing group; ``"none"`` appends ``BufferedData(None, None,
    None)``; any other policy pads nothing (as DI-engine). Flat samples pass
    through.

    Args:
        policy: ``"random"`` or ``"none"``.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=8).use(padding(policy="none"))
        >>> _ = [buf.push(x, {"g": x % 3 == 0}) for x in range(4)]
        >>> sorted(len(g) for g in buf.sample(2, groupby="g"))
        [2, 2]

    """

    def __init__(self, policy: str = "random"):
        self.policy = policy

    def on_sample(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Pad grouped samples."""
        sampled = chain(*args, **kwargs)
        if not sampled or not isinstance(sampled[0], list):
            return sampled
        longest = max(len(group) for group in sampled)
        for group in sampled:
            while len(group) < longest:
                if self.policy == "random":
                    group.append(fastcopy(random.choice(group)))
                elif self.policy == "none":
                    group.append(BufferedData(data=None, index=None, meta=None))  # type: ignore[arg-type]
                else:
                    break
        return sampled


def padding(policy: str = "random") -> Padding:
    """Return a ``Padding`` middleware.

    Args:
        policy: ``"random"`` or ``"none"``.

    Returns:
        The middleware.

    """
    return Padding(policy)
