"""One contiguous buffer for the arrays of a shard's reply: one buffer for Ray to move, views to read it.

Ray serializes every numpy array of a reply as a buffer of its own, with its
own pickling and reconstruction on both sides; a sample's reply holds eight
(five fields, slots, generations, leaf masses), which costs more than the
bytes. :func:`pack` copies them into one ``uint8`` array (each aligned to its
item size) and returns a small layout; :func:`unpack` returns views of
the received buffer (read-only: the client copies what it keeps).

Example:
    >>> data, (layout,) = pack({"obs": np.arange(6.0).reshape(3, 2), "done": np.array([True, False, True])})
    >>> arrays = unpack(data, layout)
    >>> arrays["obs"].tolist(), arrays["done"].tolist(), data.nbytes
    ([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], [True, False, True], 51)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np

_ALIGN = 64
K = TypeVar("K", bound=Hashable)

__all__ = ["BlockPool", "Layout", "merge", "pack", "rows", "unpack"]

Layout = tuple[tuple[str, str, tuple[int, ...], int], ...]
"""Each packed array's name, dtype (``dtype.str``), shape and byte offset."""


def pack(*groups: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[Layout]]:
    """Return the arrays of every group copied into one ``uint8`` buffer, and each group's layout.

    The arrays go in by decreasing item size, so each starts at a multiple of its own item size
    (its elements are aligned, as numpy and torch want them) without padding; one concatenation
    copies them all.
    """
    entries = [(g, name, array) for g, arrays in enumerate(groups) for name, array in arrays.items()]
    offsets, offset, parts = {}, 0, []
    for g, name, array in sorted(entries, key=lambda entry: -entry[2].dtype.itemsize):
        offsets[g, name] = offset
        offset += array.nbytes
        parts.append(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    layouts: list[list[tuple[str, str, tuple[int, ...], int]]] = [[] for _ in groups]
    for g, name, array in entries:  # each group's layout in its own order
        layouts[g].append((name, array.dtype.str, array.shape, offsets[g, name]))
    return data, [tuple(layout) for layout in layouts]


def unpack(data: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """Return the arrays of a packed buffer as views of it (read-only when ``data`` is)."""
    return {name: np.ndarray(shape, dtype, data, offset) for name, dtype, shape, offset in layout}


def rows(layout: Layout, name: str) -> int:
    """Return the leading dimension of the array ``name`` in ``layout`` (0 when it is missing)."""
    return next((shape[0] for entry, _dtype, shape, _offset in layout if entry == name), 0)


class BlockPool:
    """Memory blocks reused for the arrays of a client's requests, once nothing uses them any more.

    A multi-batch request's arrays are megabytes; fresh memory costs a page fault per 4 KB (on the
    machine of benchmark S7, more than the copies themselves). A block is handed out again only
    when no array or tensor made from it is alive (its reference count says so), so a batch a
    learner keeps is never overwritten. At most ``keep`` blocks are kept.

    Args:
        keep: Blocks kept for reuse.
    """

    def __init__(self, keep: int = 8):
        """Start empty."""
        self.keep = keep
        self.blocks: list[np.ndarray] = []

    def take(self, nbytes: int) -> np.ndarray:
        """Return ``nbytes`` bytes of memory (``uint8``) that nothing else uses."""
        for i in range(len(self.blocks)):
            if nbytes <= self.blocks[i].nbytes <= 2 * nbytes + 65536 and _references(self.blocks, i) <= _UNUSED:
                return self.blocks[i][:nbytes]
        block = np.empty(nbytes, dtype=np.uint8)
        if len(self.blocks) < self.keep:
            self.blocks.append(block)
        else:  # replace a block nobody uses (too small or too large for this size) if there is one
            for i in range(len(self.blocks)):
                if _references(self.blocks, i) <= _UNUSED:
                    self.blocks[i] = block
                    break
        return block


def _references(blocks: list[np.ndarray], i: int) -> int:
    """Return the reference count of ``blocks[i]`` as seen from here."""
    block = blocks[i]
    return sys.getrefcount(block)


_UNUSED = _references([np.empty(0, dtype=np.uint8)], 0)  # a block only the pool's list holds, counted the same way


def merge(
    parts: Mapping[K, list[np.ndarray]], source: np.ndarray, rows: int, pool: BlockPool | None = None
) -> dict[K, np.ndarray]:
    """Return, for each key, ``rows`` rows: row ``j`` is row ``source[j]`` of ``parts[key]`` joined end to end.

    Every array lies in one block of memory (from ``pool`` when given; one block per request, not
    one per array: fresh memory costs page faults). Each key's parts are joined once and its rows
    taken in one pass.
    """
    specs, offset = [], 0
    for key, arrays in parts.items():
        shape = (rows, *arrays[0].shape[1:])
        offset = -(-offset // _ALIGN) * _ALIGN
        specs.append((key, arrays[0].dtype, shape, offset))
        offset += arrays[0].dtype.itemsize * math.prod(shape)
    block = np.empty(offset, dtype=np.uint8) if pool is None else pool.take(offset)
    out = {}
    for (key, dtype, shape, start), arrays in zip(specs, parts.values(), strict=True):
        array = block[start : start + dtype.itemsize * math.prod(shape)].view(dtype).reshape(shape)
        if array.size:
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            np.take(joined, source, axis=0, out=array, mode="wrap")  # wrap: unbuffered (every source row exists)
        out[key] = array
    return out
