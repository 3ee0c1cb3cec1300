"""Which checkpoint each live object matches, so that its next save to the same path can be incremental."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

__all__ = ["recorded", "remember"]

# Per object, per resolved path: (lineage, generation, ring state) of the last save or load.
_HISTORY: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, int, dict[str, Any]]]] = weakref.WeakKeyDictionary()


def _weakrefable(obj: Any) -> bool:
    """Return whether ``obj`` can key the history."""
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def remember(obj: Any, path: Path, document: dict[str, Any]) -> None:
    """Record that ``obj`` now matches the checkpoint ``document`` at ``path``."""
    if document.get("ring") is not None and _weakrefable(obj):
        entry = (str(document["lineage"]), int(document["generation"]), dict(document["ring"]))
        _HISTORY.setdefault(obj, {})[str(path.resolve())] = entry


def recorded(obj: Any, path: Path) -> tuple[str, int, dict[str, Any]] | None:
    """Return ``(lineage, generation, ring state)`` of the checkpoint at ``path`` that ``obj`` last matched."""
    return _HISTORY.get(obj, {}).get(str(path.resolve())) if _weakrefable(obj) else None
