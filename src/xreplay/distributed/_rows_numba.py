"""Numba kernel of :class:`xreplay.distributed.rows.RowReader` (optional accelerator).

One call copies a draw into its reply: the drawn rows of every field of one
storage block (the fields of a dtype share the rows of one array), and the
slots, generations and leaf masses. The shard's process is cold when a request
arrives (it slept between calls), and there every numpy or torch call costs
several microseconds more than in a warm loop; this replaces about twenty of
them with one. The bytes written are those the numpy and torch code writes.

A block is read in words of 1 or 4 bytes (the reader picks the widest that
divides every offset and width); the cache lines of 64 drawn rows are loaded
first, all at once, so that their misses overlap, then those rows are copied.

Importing this module imports numba and compiles the kernel (explicit signatures, cached on disk).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["read_rows"]

_ARGS = "int64, int64, int64[:, ::1], int64[::1], int64, int32[::1], float64[::1], int64[::1], uint8[::1]"
_LINE = 64  # bytes of a cache line
_CHUNK = 64  # rows loaded ahead of their copy (64 rows of a few lines: well inside a core's first-level cache)


@numba.njit([f"uint64({word}[::1], {_ARGS})" for word in ("uint8", "uint32")], cache=True, nogil=True)
def read_rows(
    block: np.ndarray,
    row_words: int,
    capacity: int,
    fields: np.ndarray,
    indices: np.ndarray,
    head: int,
    generations: np.ndarray,
    leaves: np.ndarray,
    meta: np.ndarray,
    out: np.ndarray,
) -> np.uint64:
    """Copy the rows ``indices`` of the fields of ``block`` and the draw's metadata into ``out``.

    Args:
        block: The words of a block of the storage: row ``r`` of a field starts at word
            ``r * row_words`` plus the field's offset (the last row may end early).
        row_words: Words from one row of the block to the next.
        capacity: Rows of the block.
        fields: ``[k, 3]``: each field's offset in a row, its words per item and its offset in ``out``
            (in words; the field's items lie one after the other there).
        indices: The slots drawn.
        head: Or-ed into each slot written (0: the slots as they are).
        generations: The drawn slots' generations (read when ``meta[1] >= 0``).
        leaves: Every slot's leaf mass, indexed by slot (read when ``meta[2] >= 0``).
        meta: Byte offsets in ``out`` of the slots (int64), generations (int32) and leaf masses (float64); -1: none.
        out: The reply's bytes.

    Returns:
        A value of the loads that warm the rows up (meaningless; returned so that they are kept).
    """
    n = indices.shape[0]
    word = block.itemsize
    words = out[: out.shape[0] // word * word].view(block.dtype)
    first, last = row_words, 0
    for f in range(fields.shape[0]):  # every read and write in bounds (a wrong layout would corrupt memory)
        start, width = fields[f, 0], fields[f, 1]
        if (
            start < 0
            or width < 1
            or start + width > row_words
            or (capacity - 1) * row_words + start + width > block.shape[0]
        ):
            raise IndexError("a field's layout lies outside its rows")
        if fields[f, 2] < 0 or fields[f, 2] + n * width > words.shape[0]:
            raise IndexError("a field's layout lies outside the reply")
        first, last = min(first, start), max(last, start + width)
    if max(meta[0] + 8 * n, meta[1] + 4 * n, meta[2] + 8 * n) > out.shape[0] or (
        meta[1] >= 0 and generations.shape[0] < n
    ):
        raise IndexError("the metadata's layout lies outside the reply")
    for i in range(n):  # refuse before writing anything: a slot outside the block would read foreign memory
        if indices[i] < 0 or indices[i] >= capacity or (meta[2] >= 0 and indices[i] >= leaves.shape[0]):
            raise IndexError("a drawn slot lies outside the storage")
    slots = out[max(meta[0], 0) : max(meta[0], 0) + 8 * n].view(np.int64) if meta[0] >= 0 else out[:0].view(np.int64)
    seen = out[max(meta[1], 0) : max(meta[1], 0) + 4 * n].view(np.int32) if meta[1] >= 0 else out[:0].view(np.int32)
    masses = (
        out[max(meta[2], 0) : max(meta[2], 0) + 8 * n].view(np.float64) if meta[2] >= 0 else out[:0].view(np.float64)
    )
    touched = np.uint64(0)
    step = max(1, _LINE // word)
    for chunk in range(0, n, _CHUNK):  # a chunk of rows at a time, its lines staying in the core's cache
        end = min(n, chunk + _CHUNK)
        for i in range(chunk, end):  # one load per cache line of every row: independent loads, misses overlap
            row = indices[i] * row_words
            for w in range(row + first, row + last, step):
                touched ^= np.uint64(block[w])
            touched ^= np.uint64(block[row + last - 1])
        for i in range(chunk, end):  # then copy, row by row: a row's fields share its cache lines
            row = indices[i] * row_words
            for f in range(fields.shape[0]):
                width = np.uint64(fields[f, 1])  # unsigned positions: no negative-index wrap, a tight loop
                start, dest = np.uint64(row + fields[f, 0]), np.uint64(fields[f, 2] + i * fields[f, 1])
                for w in range(width):
                    words[dest + w] = block[start + w]
        if meta[0] >= 0:
            for i in range(chunk, end):
                slots[i] = indices[i] | head
        if meta[1] >= 0:
            for i in range(chunk, end):
                seen[i] = generations[i]
        if meta[2] >= 0:
            for i in range(chunk, end):
                masses[i] = leaves[indices[i]]
    return touched
