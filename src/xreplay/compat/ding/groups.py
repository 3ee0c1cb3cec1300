"""Group sampling the DI-engine way, over xreplay's ``GroupedSampler``; and ``group_by_env``.

For every groupby key a ``DequeBuffer`` keeps a
:class:`~xreplay.samplers.grouped.GroupedSampler` (the slots of each group
value in storage order, so drawing a window of ``unroll_len`` records costs
O(unroll_len) rather than a scan of the buffer) together with what it was
built from: the ``meta_index[key]`` sequence and the storage version. It is
kept in step with pushes, evictions, deletes and meta updates, and rebuilt
from the stored metas whenever it might be out of date. The draws themselves
use Python's global ``random`` with DI-engine's calls, in its order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from xreplay.samplers.grouped import GroupedSampler

__all__ = ["GroupIndex", "candidate_groups", "choose_groups", "group_by_env", "window"]


class GroupIndex:
    """The group sampler of one meta key, with the ``meta_index`` sequence and store version it reflects.

    Args:
        capacity: The buffer's capacity.
        source: The ``meta_index[key]`` sequence this index was built alongside.
        version: The storage version the index reflects.

    Example:
        >>> g = GroupIndex(4, source=[], version=0)
        >>> for slot, env in enumerate([0, 1, 0]):
        ...     g.sampler.add(slot, env)
        >>> g.sampler.remove(0)
        >>> g.sampler.members(0), g.sampler.size_of(1)
        ([2], 1)

    """

    __slots__ = ("sampler", "source", "version")

    def __init__(self, capacity: int, source: Any, version: int) -> None:
        self.sampler = GroupedSampler(capacity)
        self.source = source
        self.version = version


def candidate_groups(index: GroupIndex, unroll_len: int | None) -> list[Any]:
    """Return the groups eligible for sampling, in DI-engine's order.

    Without ``unroll_len > 1``: every group, in the iteration order of a set
    filled with the group values in storage order (as DI-engine builds it).
    With it: groups holding at least ``unroll_len`` records, ordered by their
    first record in storage (DI-engine counts them with a ``Counter``).
    """
    if not (unroll_len and unroll_len > 1):
        return list(set(index.sampler.groups()))
    return index.sampler.groups(min_size=unroll_len)


def choose_groups(groups: list[Any], size: int, replace: bool) -> list[Any]:
    """Draw ``size`` groups with Python's global ``random``.

    Raises:
        ValueError: fewer groups than ``size`` without replacement.

    """
    if replace:
        return random.choices(groups, k=size)
    if len(groups) < size:
        raise ValueError(
            f"There are less than {size} groups in buffer({len(groups)} groups); "
            "sample fewer groups or pass replace=True"
        )
    return random.sample(groups, k=size)


def window(length: int, unroll_len: int, sliced: bool, full_last_window: bool = False) -> tuple[int, int]:
    """Draw the ``(start, stop)`` of an ``unroll_len`` window in a group of ``length`` records.

    Args:
        length: Number of records in the group.
        unroll_len: Window length.
        sliced: Windows start at multiples of ``unroll_len``; the last one is
            aligned to the group's end.
        full_last_window: Also allow the last full window when not sliced
            (DI-engine never draws it: defect D7, kept by default).

    Returns:
        The half-open range of record positions.

    """
    if sliced:
        chunk = random.choice(range(max(1, length))) // unroll_len
        if chunk == (length - 1) // unroll_len:
            return max(0, length - unroll_len), length  # the final chunk, right-aligned
        return chunk * unroll_len, chunk * unroll_len + unroll_len
    span = length - unroll_len + (1 if full_last_window else 0)
    start = random.choice(range(max(1, span)))
    return start, start + unroll_len


def group_by_env(buffer: Any, transitions: Iterable[Any], env_ids: Iterable[int]) -> list:
    """Push each transition with ``meta={'env': env_id}`` so it can be sampled with ``groupby='env'``.

    This is DI-engine's ``data_pusher(..., group_by_env=True)`` pattern (R2D2,
    IMPALA): transitions of one env form one group.

    Args:
        buffer: A DI-engine style buffer.
        transitions: Transitions to push.
        env_ids: The env id of each transition (ints, or 0-d tensors).

    Returns:
        What each push returned.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=8)
        >>> _ = group_by_env(buf, ["a", "b", "c"], [0, 1, 0])
        >>> sorted([r.data for r in g] for g in buf.sample(2, groupby="env"))
        [['a', 'c'], ['b']]

    """
    pushed = []
    for transition, env in zip(transitions, env_ids, strict=False):
        env = env.item() if hasattr(env, "item") else env
        pushed.append(buffer.push(transition, {"env": env}))
    return pushed
