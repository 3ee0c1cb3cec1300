"""legacy_choice: PyMARL's draw ``numpy.random.choice(n, k, replace=False)``, the same numbers sooner.

PyMARL's ``ReplayBuffer.sample`` draws its episodes from numpy's global generator with
``np.random.choice(episodes_in_buffer, batch_size, replace=False)``, which shuffles the whole range
``0 .. n - 1`` to keep ``k`` of it: on a buffer of 5,000 episodes that costs about as much as gathering
the 32 sampled episodes. With the optional ``numba`` package, :func:`legacy_choice` runs the same
shuffle in a compiled kernel (:mod:`xreplay.compat.pymarl._legacy_choice_numba`) on the global
generator's own state, so it returns the same items and leaves the generator in the same state as
numpy's call (a program that draws from ``np.random`` afterwards sees the same numbers).

The kernel is checked once against numpy on a private generator before it is trusted; when numba is
missing, disabled (``XREPLAY_NUMBA=0``), or the check fails, numpy's own call runs.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import numpy as np

from xreplay.accel import kernels

__all__ = ["kernel_available", "legacy_choice"]

_STATES: dict[int, tuple[Any, np.ndarray]] = {}  # id(bit generator) -> (it, its state words as uint32 [625])
_LARGEST = 2**24  # populations the kernel takes (numpy draws 64-bit words past 2**32; it needs two n-item arrays)


def _state_words(bit_generator: Any) -> np.ndarray | None:
    """Return the MT19937 state of ``bit_generator`` as a writable uint32 ``[625]`` view, None if not MT19937."""
    cached = _STATES.get(id(bit_generator))
    if cached is not None and cached[0] is bit_generator:
        return cached[1]
    if type(bit_generator) is not np.random.MT19937:
        return None
    address = bit_generator.ctypes.state_address  # the C state: 624 uint32 words, then an int position
    words = np.ctypeslib.as_array((ctypes.c_uint32 * 625).from_address(address))
    if len(_STATES) > 8:
        _STATES.clear()
    _STATES[id(bit_generator)] = (bit_generator, words)
    return words


def _checked(kernel: ModuleType) -> bool:
    """Return whether the kernel draws what numpy draws (items and next state) on private generators."""
    for seed, n, k in ((0, 5000, 32), (1, 2, 1), (2, 3, 3), (3, 1000, 1000), (4, 70001, 7)):
        expected = np.random.RandomState(seed)
        reference = expected.choice(n, k, replace=False)
        mine = np.random.RandomState(seed)
        words = _state_words(mine._bit_generator)
        if words is None:
            return False
        out = np.empty(k, dtype=np.int64)
        kernel.choice_prefix(words, n, out)
        if not np.array_equal(out, reference) or mine.randint(2**31) != expected.randint(2**31):
            return False
    _STATES.clear()  # the private generators are gone
    return True


def _kernel() -> ModuleType | None:
    """Return the checked numba kernel, or None (numba missing or disabled, or the check failed)."""
    return kernels("xreplay.compat.pymarl._legacy_choice_numba", "numpy's call", _checked)


def kernel_available() -> bool:
    """Return whether :func:`legacy_choice` runs the numba kernel (else numpy's own call)."""
    return _kernel() is not None


def legacy_choice(n: int, k: int) -> np.ndarray:
    """Return ``numpy.random.choice(n, k, replace=False)``: the same int64 items, the same global state after.

    Args:
        n: Population size (items ``0 .. n - 1``).
        k: Items drawn, ``0 <= k <= n``.
    """
    kernel = _kernel()
    if kernel is not None and 1 <= n <= _LARGEST and 0 <= k <= n:
        legacy = np.random.mtrand._rand
        bit_generator = legacy._bit_generator
        words = _state_words(bit_generator)
        if words is not None:
            out = np.empty(k, dtype=np.int64)
            with bit_generator.lock:  # numpy's own shuffle holds it too
                kernel.choice_prefix(words, n, out)
            return out
    return np.random.choice(n, k, replace=False)
