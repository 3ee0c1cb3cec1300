"""Numba kernel of :func:`xreplay.compat.pymarl.legacy_choice.legacy_choice` (optional accelerator).

It draws what ``numpy.random.choice(n, k, replace=False)`` draws from numpy's global generator, advancing
that generator's state in place exactly as numpy does: a Fisher-Yates shuffle of ``arange(n)`` from the
top (for ``i = n - 1 .. 1`` swap item ``i`` with a uniform ``j`` in ``[0, i]``), each ``j`` drawn by
rejection from 32-bit Mersenne Twister words masked to the smallest all-ones mask covering ``i``. The
Mersenne Twister (MT19937) is the published algorithm of Matsumoto and Nishimura (1998): the state is
624 words and a position; a word is read, then tempered; after 624 reads the words are regenerated.

Speed comes from three things numpy's general code cannot assume: a block of 624 words is tempered in
one vectorizable loop, the rejection loop runs without a branch (every draw is stored at ``js[i]`` and
``i`` moves on only when the draw is accepted), and the swaps run afterwards in a second loop.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["choice_prefix"]

_WORDS = 624  # MT19937 state words
_SHIFT = 397  # the recurrence's middle word offset


@numba.njit(inline="always", nogil=True)
def _mix(word: np.uint32, following: np.uint32, middle: np.uint32) -> np.uint32:
    """Return one regenerated state word from the word, its successor and the word 397 ahead."""
    y = (word & np.uint32(0x80000000)) | (following & np.uint32(0x7FFFFFFF))
    return middle ^ (y >> np.uint32(1)) ^ ((np.uint32(0) - (y & np.uint32(1))) & np.uint32(0x9908B0DF))


@numba.njit(cache=True, nogil=True)
def _regenerate(key: np.ndarray) -> None:
    """Regenerate the 624 state words in place (the words 397 ahead wrap around to the start)."""
    for i in range(_WORDS - _SHIFT):
        key[i] = _mix(key[i], key[i + 1], key[i + _SHIFT])
    for i in range(_WORDS - _SHIFT, _WORDS - 1):
        key[i] = _mix(key[i], key[i + 1], key[i + _SHIFT - _WORDS])
    key[_WORDS - 1] = _mix(key[_WORDS - 1], key[0], key[_SHIFT - 1])


@numba.njit(cache=True, nogil=True)
def _temper(key: np.ndarray, out: np.ndarray, start: np.int64) -> None:
    """Write the tempered output of state words ``start ..`` into ``out`` (the state is unchanged)."""
    for i in range(start, _WORDS):
        y = key[i]
        y ^= y >> np.uint32(11)
        y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
        y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
        y ^= y >> np.uint32(18)
        out[i] = y


@numba.njit(cache=True, nogil=True)
def choice_prefix(state: np.ndarray, n: int, out: np.ndarray) -> None:
    """Shuffle ``arange(n)`` with the generator ``state`` (uint32 ``[625]``: words, then position) and keep a prefix.

    ``out`` receives the first ``len(out)`` items of the shuffled range; ``state`` is advanced in place.
    Needs ``1 <= n <= 2**32``.
    """
    key = state[:_WORDS]
    pos = np.int64(state[_WORDS])
    tempered = np.empty(_WORDS, dtype=np.uint32)
    if pos < _WORDS:
        _temper(key, tempered, pos)
    js = np.empty(n, dtype=np.int64)  # js[i]: the item swapped with item i
    i = np.int64(n - 1)
    while i > 0:
        if pos == _WORDS:
            _regenerate(key)
            _temper(key, tempered, np.int64(0))
            pos = np.int64(0)
        while pos < _WORDS and i > 0:
            mask = np.uint32(i)  # smallest all-ones mask covering i
            mask |= mask >> np.uint32(1)
            mask |= mask >> np.uint32(2)
            mask |= mask >> np.uint32(4)
            mask |= mask >> np.uint32(8)
            mask |= mask >> np.uint32(16)
            j = tempered[pos] & mask
            pos += 1
            js[i] = j
            i -= np.int64(j <= np.uint32(i))  # accepted: on to the next item; rejected: draw again for i
    state[_WORDS] = np.uint32(pos)
    items = np.arange(n)
    for top in range(n - 1, 0, -1):
        other = js[top]
        swapped = items[top]
        items[top] = items[other]
        items[other] = swapped
    for q in range(out.shape[0]):
        out[q] = items[q]
