"""A transition buffer's episodes: flagged ends, and resets found on a helper thread ahead of the writer.

An episode ends at a terminated or truncated step, and also where a step's next observation is
not the next step's observation (a reset the flags do not show). Finding those resets reads
every observation and next observation once, so it runs on one helper thread, a block of
episodes (about 2 MiB of observations) ahead of the caller that writes the episodes before:
each flagged episode is first compared byte for byte with ``memcmp`` (a foreign call that
releases the GIL and allocates nothing), and only one whose bytes differ is compared value by
value (``-0.0`` is ``0.0``, a NaN is a NaN) to find the steps that end it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["episode_ranges", "split_at_resets"]

_BLOCK_BYTES = 2 << 20  # observation bytes compared per helper-thread task


def _libc_memcmp() -> Any:
    """Return the C library's ``memcmp`` through ctypes, or None where it cannot be found."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None).memcmp
    except (OSError, AttributeError, TypeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return function


_MEMCMP = _libc_memcmp()


def _byte_comparer(obs: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray]) -> Callable[[int, int], bool]:
    """Return ``same(start, stop)``: whether next observations ``start .. stop - 2`` are observations ``start + 1 ..``.

    Byte for byte, with ``memcmp`` on the columns' addresses when every column is C-contiguous,
    else with numpy (``array_equal``).
    """
    contiguous = all(a.flags.c_contiguous for arrays in (obs, nxt) for a in arrays.values())
    if _MEMCMP is None or not contiguous:

        def same_values(start: int, stop: int) -> bool:
            return all(
                np.array_equal(nxt[leaf][start : stop - 1], o[start + 1 : stop], equal_nan=True)
                for leaf, o in obs.items()
            )

        return same_values
    # (next observations' address, observations' address, bytes per row) of each leaf
    columns = [
        (nxt[leaf].ctypes.data, o.ctypes.data, int(np.prod(o.shape[1:], dtype=np.int64)) * o.itemsize)
        for leaf, o in obs.items()
    ]

    def same_bytes(start: int, stop: int) -> bool:
        return all(
            _MEMCMP(nxt_at + start * row, obs_at + (start + 1) * row, (stop - 1 - start) * row) == 0
            for nxt_at, obs_at, row in columns
        )

    return same_bytes


def split_at_resets(
    obs: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray], start: int, stop: int
) -> list[tuple[int, int]]:
    """Return the episodes in steps ``start .. stop - 1``: cut after each step whose next_obs is not the next obs.

    Values are compared: ``-0.0`` is ``0.0``, and a NaN is the same as a NaN.
    """
    reset = None
    for leaf, observed in obs.items():
        after, following = nxt[leaf][start : stop - 1], observed[start + 1 : stop]
        differs = after != following
        if differs.dtype.kind == "b" and after.dtype.kind in "fc":
            differs &= ~(np.isnan(after) & np.isnan(following))
        found = differs.reshape(stop - 1 - start, -1).any(axis=1)
        reset = found if reset is None else reset | found
    if reset is None or not reset.any():
        return [(start, stop)]
    cuts = [start, *(start + np.flatnonzero(reset) + 1).tolist(), stop]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def episode_ranges(
    obs: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray], starts: list[int], stops: list[int]
) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` of every episode: the flagged ones (``starts``, ``stops``), cut at resets.

    Args:
        obs: Leaf -> observations ``[steps, *item]`` in age order.
        nxt: Leaf -> next observations, the same shapes.
        starts: First step of each flagged episode.
        stops: One past its last step.
    """
    same = _byte_comparer(obs, nxt)
    row_bytes = sum(int(np.prod(o.shape[1:], dtype=np.int64)) * o.itemsize for o in obs.values())
    average = max(1, row_bytes * (stops[-1] - starts[0]) // len(starts))  # observation bytes of a flagged episode
    block = max(1, _BLOCK_BYTES // average)  # flagged episodes per helper-thread task

    def scan(first: int) -> list[tuple[int, int]]:
        """Return the episodes of the block of flagged episodes from ``first``."""
        episodes = []
        for start, stop in zip(starts[first : first + block], stops[first : first + block], strict=True):
            if same(start, stop):  # the common case: no reset inside
                episodes.append((start, stop))
            else:
                episodes.extend(split_at_resets(obs, nxt, start, stop))
        return episodes

    pool = ThreadPoolExecutor(1, thread_name_prefix="xreplay-minari-scan")
    try:
        scans: deque[Future] = deque(pool.submit(scan, first) for first in range(0, len(starts), block))
        while scans:
            yield from scans.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # also when the writer failed and closed this generator
