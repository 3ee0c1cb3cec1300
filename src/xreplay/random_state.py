"""Random generator state as plain data: what a buffer's ``state_dict`` holds and ``load_state_dict`` restores."""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.errors import ArgumentError

__all__ = ["BIT_GENERATORS", "generator_from_state", "generator_state"]

BIT_GENERATORS = frozenset({"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"})
"""numpy bit generators whose state can be restored."""


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return a copy of ``rng``'s bit-generator state (plain dicts and ints; JSON keeps the big ints exact)."""
    return dict(rng.bit_generator.state)


def generator_from_state(state: Any) -> np.random.Generator:
    """Return a new Generator that continues from ``state`` (a :func:`generator_state` result).

    Raises:
        ArgumentError: ``state`` names an unknown bit generator or is not a state numpy accepts.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> again = generator_from_state(generator_state(rng))
        >>> int(again.integers(100)) == int(rng.integers(100))
        True
    """
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    if kind not in BIT_GENERATORS:
        raise ArgumentError(
            f"generator state must name one of numpy's bit generators {sorted(BIT_GENERATORS)}, "
            f"received {str(kind)[:40]!r}"
        )
    bit_generator = getattr(np.random, kind)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError, IndexError, AttributeError) as exc:
        raise ArgumentError(f"generator state is not a state of numpy's {kind}: {exc}") from None
    return np.random.Generator(bit_generator)
