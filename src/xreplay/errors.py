"""Typed errors raised by xreplay.

Every error names the field, index or size at fault, what was expected and
what was received. Each class also derives from the built-in exception that
callers of the legacy APIs already catch, so ``except ValueError`` keeps
working::

    XReplayError
    ├── SchemeError (ValueError)            a scheme or field declaration is invalid
    ├── UnknownFieldError (KeyError)        a write or read names a field the scheme lacks
    ├── FieldShapeError (ValueError)        a value has the wrong shape for its field
    ├── FieldValueError (ValueError)        a value cannot be held by its field's dtype
    ├── InsufficientDataError (ValueError)  more items asked for than are stored
    ├── CapacityError (MemoryError)         a buffer would not fit in memory
    ├── IndexOutOfRangeError (IndexError)   an index is outside the stored items
    ├── PriorityError (ValueError)          a priority is NaN, infinite or negative
    └── CheckpointError (ValueError)        a saved buffer is corrupt, truncated or incompatible
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "CheckpointError",
    "FieldShapeError",
    "FieldValueError",
    "IndexOutOfRangeError",
    "InsufficientDataError",
    "PriorityError",
    "SchemeError",
    "UnknownFieldError",
    "XReplayError",
]


class XReplayError(Exception):
    """Base class of every error xreplay raises on purpose."""


class SchemeError(XReplayError, ValueError):
    """A scheme or field declaration is invalid."""


class UnknownFieldError(XReplayError, KeyError):
    """A write or read names a field that the scheme does not declare."""

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0]) if self.args else ""


class FieldShapeError(XReplayError, ValueError):
    """A value has the wrong shape for its field."""


class FieldValueError(XReplayError, ValueError):
    """A value cannot be held losslessly by its field's dtype."""


class InsufficientDataError(XReplayError, ValueError):
    """More items were requested than the buffer stores."""


class CapacityError(XReplayError, MemoryError):
    """A buffer's storage would not fit in the memory of its device."""


class IndexOutOfRangeError(XReplayError, IndexError):
    """An index lies outside the items that are stored."""


class PriorityError(XReplayError, ValueError):
    """A priority is NaN, infinite or negative."""


class CheckpointError(XReplayError, ValueError):
    """A saved buffer cannot be loaded: corrupt, truncated or of an unknown format version."""
