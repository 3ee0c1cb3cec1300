"""Unique index strings for stored records."""

from __future__ import annotations

import itertools
import os

__all__ = ["new_index"]

_state = {"prefix": os.urandom(8).hex(), "counter": itertools.count()}


def _reseed() -> None:
    """Give a forked child its own prefix so indices stay unique across processes."""
    _state["prefix"] = os.urandom(8).hex()
    _state["counter"] = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_index() -> str:
    """Return a new 32-character lowercase hex index, never returned before.

    A random 64-bit per-process prefix followed by a 64-bit counter, which is
    cheaper than DI-engine's ``uuid.uuid1().hex`` and has the same shape.

    Returns:
        The index string.

    """
    return f"{_state['prefix']}{next(_state['counter']):016x}"  # type: ignore[call-overload]
