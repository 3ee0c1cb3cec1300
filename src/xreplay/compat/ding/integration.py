"""Optional integration with an installed DI-engine (never imported by xreplay itself).

When ``ding.data.buffer`` is already imported, xreplay's ``Buffer`` is
registered as a virtual subclass of DI-engine's ``Buffer`` ABC (so
DI-engine's data fetcher accepts xreplay buffers), and new
``PriorityExperienceReplay`` objects are instances of a subclass that also
derives from DI-engine's class (so the fetcher writes priorities back).
:func:`integrate` imports DI-engine explicitly for scripts that create
xreplay buffers before importing DI-engine.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["integrate", "per_class", "register_if_loaded"]

_BUFFER_MODULE = "ding.data.buffer.buffer"
_PER_MODULE = "ding.data.buffer.middleware.priority"
_subclasses: dict[type, type] = {}
_registered: set[int] = set()
_buffer_class: list[type] = []  # xreplay's Buffer, set when it is defined


def register_if_loaded(buffer_class: type | None = None) -> None:
    """Register ``buffer_class`` (xreplay's ``Buffer``) with DI-engine's ``Buffer`` ABC if DI-engine is imported.

    Args:
        buffer_class: The class to register; by default the one given before
            (:mod:`xreplay.compat.ding.base` gives its ``Buffer`` when it is imported).
    """
    if buffer_class is not None:
        _buffer_class[:] = [buffer_class]
    module = sys.modules.get(_BUFFER_MODULE)
    ding_buffer = getattr(module, "Buffer", None) if module is not None else None
    if ding_buffer is None or not _buffer_class or id(ding_buffer) in _registered:
        return
    ding_buffer.register(_buffer_class[0])
    _registered.add(id(ding_buffer))


def per_class(cls: type) -> type:
    """Return ``cls``, or a subclass of ``cls`` and DI-engine's PER class when DI-engine is imported."""
    module = sys.modules.get(_PER_MODULE)
    ding_per = getattr(module, "PriorityExperienceReplay", None) if module is not None else None
    if ding_per is None or issubclass(cls, ding_per):
        return cls
    sub = _subclasses.get(cls)
    if sub is None or not issubclass(sub, ding_per):
        sub = type(cls.__name__, (cls, ding_per), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _subclasses[cls] = sub
    return sub


def integrate() -> Any:
    """Import DI-engine's buffer modules and register xreplay with them.

    Returns:
        DI-engine's ``ding.data.buffer`` package.

    Raises:
        ModuleNotFoundError: DI-engine is not installed (``pip install DI-engine``).

    """
    importlib.import_module(_PER_MODULE)
    package = importlib.import_module("ding.data.buffer")
    register_if_loaded()
    return package
