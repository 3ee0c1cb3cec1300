"""A transition buffer's episodes, gathered into contiguous blocks on a helper thread ahead of the writer.

An episode ends at a terminated or truncated step, and also where a step's next observation is
not the next step's observation (a reset the flags do not show). A buffer may keep each
transition's fields together in one row (the S2 buffer: 168-byte rows), so its columns are
strided views. One helper thread, a few blocks of episodes (each about 4 MiB of observations)
ahead of the caller, copies every field of a block out into one contiguous array (one numpy
copy per field and block, reading the rows from memory once; a view where the column is
contiguous already) and finds the block's episodes with ``memcmp`` on those copies (a byte
comparison that releases the GIL and allocates nothing; only an episode whose bytes differ is
compared value by value, ``-0.0`` being ``0.0`` and a NaN a NaN). The caller then hands out
each episode's rows as contiguous slices of the block, which HDF5 writes as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["gathered_episodes", "split_at_resets"]

_BLOCK_BYTES = 4 << 20  # observation bytes gathered per block of flagged episodes
_AHEAD = 2  # blocks gathered ahead of the caller (each a new set of arrays: none is reused)

Rows = dict[Any, np.ndarray]  # leaf or field -> rows of one episode (or of one block)


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


def _same(after: np.ndarray, following: np.ndarray) -> bool:
    """Return whether two C-contiguous arrays of one shape and dtype hold the same bytes (else the same values)."""
    if _MEMCMP is None:
        return bool(np.array_equal(after, following, equal_nan=True))
    return _MEMCMP(after.ctypes.data, following.ctypes.data, after.nbytes) == 0


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


def _blocks(starts: list[int], stops: list[int], row_bytes: int) -> list[tuple[int, int]]:
    """Return the blocks ``(first, last)`` of flagged episodes ``first .. last - 1``, about _BLOCK_BYTES each."""
    blocks, first = [], 0
    while first < len(starts):
        last = first + 1
        while last < len(starts) and (stops[last] - starts[first]) * row_bytes <= _BLOCK_BYTES:
            last += 1
        blocks.append((first, last))
        first = last
    return blocks


def gathered_episodes(
    obs: Mapping[str, np.ndarray],
    nxt: Mapping[str, np.ndarray],
    columns: Mapping[Any, np.ndarray],
    starts: list[int],
    stops: list[int],
) -> Iterator[tuple[int, Rows, Rows]]:
    """Yield ``(steps, observations, rows)`` of every episode: the flagged ones, cut at resets.

    Args:
        obs: Leaf -> observations ``[steps, *item]`` in age order.
        nxt: Leaf -> next observations, the same shapes.
        columns: Name -> another per-step field ``[steps, *item]`` in age order (actions, rewards, flags).
        starts: First step of each flagged episode.
        stops: One past its last step.

    Yields:
        The episode's steps, its ``steps + 1`` observations (leaf -> rows: its observations, then
        the last next observation; a stage valid until the next episode is asked for) and its
        rows of ``columns`` (contiguous slices of its block).
    """
    row_bytes = sum(int(np.prod(o.shape[1:], dtype=np.int64)) * o.itemsize for o in obs.values())

    def gather(first: int, last: int) -> tuple[Rows, Rows, Rows, list[tuple[int, int]]]:
        """Copy the rows of flagged episodes ``first .. last - 1`` out and cut them into episodes."""
        base, end = starts[first], stops[last - 1]
        block_obs = {leaf: np.ascontiguousarray(o[base:end]) for leaf, o in obs.items()}
        block_nxt = {leaf: np.ascontiguousarray(n[base:end]) for leaf, n in nxt.items()}
        block = {name: np.ascontiguousarray(c[base:end]) for name, c in columns.items()}
        episodes = []
        for start, stop in zip(starts[first:last], stops[first:last], strict=True):
            start, stop = start - base, stop - base  # steps within the block
            if all(_same(block_nxt[leaf][start : stop - 1], o[start + 1 : stop]) for leaf, o in block_obs.items()):
                episodes.append((start, stop))  # the common case: no reset inside
            else:
                episodes.extend(split_at_resets(block_obs, block_nxt, start, stop))
        return block_obs, block_nxt, block, episodes

    longest = max(stop - start for start, stop in zip(starts, stops, strict=True))
    stage = {leaf: np.empty((longest + 1, *o.shape[1:]), o.dtype) for leaf, o in obs.items()}
    todo = deque(_blocks(starts, stops, row_bytes))
    pool = ThreadPoolExecutor(1, thread_name_prefix="xreplay-minari-gather")
    try:
        pending: deque[Future] = deque(pool.submit(gather, *todo.popleft()) for _ in range(min(_AHEAD, len(todo))))
        while pending:
            block_obs, block_nxt, block, episodes = pending.popleft().result()
            if todo:
                pending.append(pool.submit(gather, *todo.popleft()))
            for start, stop in episodes:
                steps = stop - start
                observations = {}
                for leaf, staged in stage.items():  # T + 1 rows in a reused stage: written before the next episode
                    staged[:steps] = block_obs[leaf][start:stop]
                    staged[steps] = block_nxt[leaf][stop - 1]
                    observations[leaf] = staged[: steps + 1]
                yield steps, observations, {name: rows[start:stop] for name, rows in block.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # also when the writer failed and closed this generator
