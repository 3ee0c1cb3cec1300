"""Index strings of stored records, kept as compact integer codes and spelled out on demand.

An index is 32 lowercase hex characters: a 16-character *era tag* and the
16-character hex of the record's storage handle ``generation * capacity +
slot``. A buffer draws a random 64-bit tag when it first pushes, again in a
forked child and again after loading a checkpoint, so no two records of one
process ever get the same index, in this process or a fork of it, and an
index is never reused after deletion (the slot's generation only grows).

A record made by a buffer does not hold the string: it holds the ``int``
``handle << ERA_BITS | era`` (era: a small number naming its tag in this
process's registry), 32 bytes instead of an 81-byte string, and a lookup
parses the handle out of the string instead of consulting a dict. Tags of
records loaded from a checkpoint are registered too, so those records keep
their saved index strings.
"""

from __future__ import annotations

import os
import threading

__all__ = ["ERA_BITS", "MAX_ERAS", "era_of_tag", "fork_count", "new_era", "spell", "split"]

ERA_BITS = 24
MAX_ERAS = 1 << ERA_BITS  # eras beyond this get string indices (same strings, more memory)
_ERA_MASK = MAX_ERAS - 1

_tags: list[str] = []  # era -> 16-character hex tag
_era_of: dict[str, int] = {}  # tag -> era
_lock = threading.Lock()
_forks = [0]  # bumped in every forked child


def _after_fork() -> None:
    """Make every buffer of a forked child draw a new tag before its next push."""
    global _lock
    _lock = threading.Lock()  # the parent's lock may have been held by another thread at the fork
    _forks[0] += 1


os.register_at_fork(after_in_child=_after_fork)


def fork_count() -> int:
    """Return how many forks separate this process from the one that imported this module."""
    return _forks[0]


def _register(tag: str) -> int:
    """Return the era of ``tag``, registering it if new (the caller holds the lock)."""
    era = _era_of.get(tag)
    if era is None:
        era = len(_tags)
        _tags.append(tag)
        _era_of[tag] = era
    return era


def new_era() -> tuple[int, str]:
    """Return ``(era, tag)`` for a fresh random tag never registered in this process."""
    with _lock:
        while True:
            tag = os.urandom(8).hex()
            if tag not in _era_of:
                return _register(tag), tag


def era_of_tag(tag: str) -> int:
    """Return the era of an existing ``tag`` (a loaded record's), registering it if new."""
    with _lock:
        return _register(tag)


def spell(code: int) -> str:
    """Return the 32-character index string of the compact ``code``."""
    return f"{_tags[code & _ERA_MASK]}{code >> ERA_BITS:016x}"


def split(index: str) -> tuple[str, int] | None:
    """Return ``(tag, handle)`` of an index string, or ``None`` if it is not 32 lowercase hex characters."""
    if index.__class__ is not str or len(index) != 32:
        return None
    try:
        handle = int(index[16:], 16)
    except ValueError:
        return None
    if index[16:] != f"{handle:016x}" or not _is_hex(index[:16]):
        return None
    return index[:16], handle


def _is_hex(text: str) -> bool:
    """Return whether ``text`` is lowercase hex digits only."""
    return not text.strip("0123456789abcdef")
