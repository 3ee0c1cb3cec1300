"""``group_sample``: cut each group of a grouped sample to ``size_in_group`` records."""

from __future__ import annotations

import random
from typing import Any

from xreplay.compat.ding.dispatch import StringDispatch

__all__ = ["GroupSample", "group_sample"]


class GroupSample(StringDispatch):
    """Middleware trimming each sampled group.

    Ordered with ``max_use_in_group``: a random full window (or the whole
    group when shorter); ordered without it: a window starting anywhere
    (possibly short); unordered: ``random.sample`` of the group.

    Args:
        size_in_group: Records kept per group.
        ordered_in_group: Keep storage order (a contiguous window).
        max_use_in_group: Prefer full windows.

    Raises:
        TypeError: (on sample) ``groupby`` was not passed by keyword.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=8).use(group_sample(size_in_group=2))
        >>> _ = [buf.push(x, {"g": 0}) for x in range(5)]
        >>> [len(g) for g in buf.sample(1, groupby="g")]
        [2]

    """

    def __init__(self, size_in_group: int, ordered_in_group: bool = True, max_use_in_group: bool = True):
        self.size_in_group = size_in_group
        self.ordered_in_group = ordered_in_group
        self.max_use_in_group = max_use_in_group

    def on_sample(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Sample groups, then trim each one."""
        if not kwargs.get("groupby"):
            raise TypeError("group_sample needs sample(..., groupby=key) with groupby passed by keyword")
        sampled = chain(*args, **kwargs)
        k = self.size_in_group
        trimmed = []
        for group in sampled:
            if not self.ordered_in_group:
                trimmed.append(random.sample(group, k))
                continue
            if self.max_use_in_group:
                start = random.choice(range(max(0, len(group) - k) + 1))
            else:
                start = random.choice(range(len(group)))
            trimmed.append(group[start : start + k])
        return trimmed


def group_sample(size_in_group: int, ordered_in_group: bool = True, max_use_in_group: bool = True) -> GroupSample:
    """Return a ``GroupSample`` middleware.

    Args:
        size_in_group: Records kept per group.
        ordered_in_group: Keep storage order.
        max_use_in_group: Prefer full windows.

    Returns:
        The middleware.

    """
    return GroupSample(size_in_group, ordered_in_group, max_use_in_group)
