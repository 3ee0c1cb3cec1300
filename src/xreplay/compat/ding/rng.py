"""``random.sample(range(n), k)`` from Python's global ``random``, with the same result in fewer calls.

DI-engine draws plain samples with ``random.sample(population, k)``. With
``n`` above its small-population threshold, ``random.sample`` draws
``randbelow(n)`` once per pick (rejecting repeats), and each ``randbelow`` is
``getrandbits(n.bit_length())`` repeated while the value is ``>= n``: the top
bits of one 32-bit Mersenne Twister output per call. :func:`sample_positions`
takes ``k`` outputs with one ``getrandbits(32 * k)`` call (never more than
``sample`` consumes, since every pick needs at least one output), keeps the
accepted ones, then draws the few replacements for rejected values one at a
time. The result and the generator's state afterwards equal
``random.sample``'s. (``random.choices`` is already one C call per pick and is
used as is.)

It falls back to ``random.sample`` when that has been replaced (e.g. mocked),
when the population is outside the fast path, or when a one-time self-check
against a private ``random.Random`` finds a Python that draws differently.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = ["sample_positions"]

_SAMPLE = random.sample
_GETRANDBITS = random.getrandbits
_setsize: dict[int, int] = {}
_verified: list[bool] = []  # [] until the self-check ran, then [ok]


def _small_population_limit(k: int) -> int:
    """Return the population size at or below which ``random.sample`` uses its pool algorithm."""
    limit = _setsize.get(k)
    if limit is None:
        limit = 21 + (4 ** math.ceil(math.log(k * 3, 4)) if k > 5 else 0)
        _setsize[k] = limit
    return limit


def _sample_with(getrandbits: Callable[[int], int], n: int, k: int) -> list[int]:
    """Return ``Random.sample(range(n), k)`` for ``n`` above the pool threshold and below ``2**32``."""
    bits = n.bit_length()
    shift = 32 - bits
    words = memoryview(getrandbits(32 * k).to_bytes(4 * k, "little")).cast("I")
    picks = [j for w in words if (j := w >> shift) < n]
    seen = set(picks)
    if len(seen) != len(picks):  # a repeat is rejected like an out-of-range value
        seen = set()
        picks = [j for j in picks if not (j in seen or seen.add(j))]  # type: ignore[func-returns-value]
    for _ in range(k - len(picks)):
        j = getrandbits(bits)
        while j >= n or j in seen:
            j = getrandbits(bits)
        seen.add(j)
        picks.append(j)
    return picks


def _self_check() -> bool:
    """Return whether the fast draws equal ``random.Random``'s on this Python (run once)."""
    cases = [(300, 32), (1000, 6), (65537, 32), (100_000, 256), (2**31 + 5, 7)]
    for seed in range(3):
        for n, k in cases:
            a, b = random.Random(seed), random.Random(seed)
            if a.sample(range(n), k) != _sample_with(b.getrandbits, n, k) or a.random() != b.random():
                return False
    return True


def _fast_ok() -> bool:
    """Return whether ``random.sample``/``getrandbits`` are the originals and the self-check passed."""
    if random.sample is not _SAMPLE or random.getrandbits is not _GETRANDBITS:
        return False
    if not _verified:
        _verified.append(_self_check())
    return _verified[0]


def sample_positions(n: int, k: int) -> list[int]:
    """Return ``random.sample(range(n), k)``, drawing from the global generator in fewer calls.

    Args:
        n: Population size.
        k: Number of distinct positions.

    Returns:
        ``k`` distinct positions in ``[0, n)``, equal to ``random.sample(range(n), k)``.

    Raises:
        ValueError: ``k`` is negative or larger than ``n`` (from ``random.sample``).

    Example:
        >>> random.seed(3); a = random.sample(range(1000), 8)
        >>> random.seed(3); a == sample_positions(1000, 8)
        True

    """
    if 0 < k <= n and n > _small_population_limit(k) and n.bit_length() <= 32 and _fast_ok():
        return _sample_with(random.getrandbits, n, k)
    return random.sample(range(n), k)
