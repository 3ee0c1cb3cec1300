"""Typed errors raised by xreplay.

Every error names the field, index or size at fault, what was expected and
what was received. Each class also derives from the built-in exception that
callers of the legacy APIs already catch, so ``except ValueError`` keeps
working. The ``...IndexError`` / ``...RuntimeError`` leaves exist for the
compatibility layers: where PyMARL raised one of those classes for a bad
value, xreplay raises the typed error that also derives from it::

    XReplayError
    ├── SchemeError (ValueError)            a scheme or field declaration is invalid
    ├── ArgumentError (ValueError, TypeError)  a capacity, size, index or device argument is invalid
    │   ├── DeviceError (RuntimeError)      a device that torch cannot use here ("gpu", "cuda" without one)
    │   └── ArgumentAssertionError (AssertionError)  ... where the legacy API used a bare assert
    ├── UnknownFieldError (KeyError)        a write or read names a field the scheme lacks
    │   └── UnknownFieldValueError (ValueError)  ... where the legacy API raised ValueError
    ├── FieldTypeError (TypeError, ValueError)  a value's type cannot be held by its field (text, objects)
    ├── FieldShapeError (ValueError)        a value has the wrong shape for its field
    │   ├── FieldShapeIndexError (IndexError)      ... where the legacy API raised IndexError
    │   └── FieldShapeRuntimeError (RuntimeError)  ... where the legacy API raised RuntimeError
    ├── FieldValueError (ValueError)        a value cannot be held by its field's dtype
    │   └── FieldValueRuntimeError (RuntimeError)  ... where the legacy API raised RuntimeError
    ├── InsufficientDataError (ValueError)  more items asked for than are stored
    │   └── InsufficientDataAssertionError (AssertionError)  ... where the legacy API used a bare assert
    ├── CapacityError (MemoryError, RuntimeError)  a buffer or sample would not fit in memory
    ├── IndexOutOfRangeError (IndexError)   an index is outside the stored items
    ├── InvalidIndexError (IndexError)      an index has a form the API does not take (a list time index)
    ├── UnknownIndexError (KeyError)        an index string names no stored record (DI-engine's indices)
    ├── PriorityError (ValueError)          a priority is not a finite number >= 0, or would overflow the sum
    ├── RateLimiterTimeout (TimeoutError)   a rate limiter did not allow an insert or sample in time
    ├── ShardError (RuntimeError)           a replay shard of xreplay.distributed cannot be built or reached
    │   ├── ShardFactoryError (TypeError)   the factory cannot be pickled or builds no native buffer
    │   └── ShardUnavailableError (TimeoutError)  a shard stayed unreachable past its timeout
    ├── BufferClosedError (RuntimeError)    a buffer or writer handle was used after it was closed
    ├── SharedMemoryError (OSError)         a shared-memory segment cannot be created or attached
    │   └── StaleSegmentError               a segment left by a crashed run holds the name asked for
    ├── CheckpointError (OSError)           a checkpoint cannot be written or read
    │   ├── NotACheckpointError             the path holds no xreplay checkpoint
    │   ├── CheckpointFileMissingError (FileNotFoundError)  a file the checkpoint lists is gone
    │   ├── CheckpointCorruptError          a file is truncated or fails its checksum
    │   │   ├── CheckpointPathError         metadata names a file outside the checkpoint folder
    │   │   └── CheckpointSchemaError       a metadata.json key breaks a rule of the format
    │   ├── CheckpointTooLargeError (CapacityError)  loading would not fit in the memory available
    │   ├── CheckpointVersionError          written in a newer format than this xreplay reads
    │   ├── CheckpointMismatchError         a checkpoint of another buffer kind or scheme
    │   ├── CheckpointWriteError            a save failed (e.g. disk full); the previous one is intact
    │   │   └── CheckpointLockedError       another saver holds the checkpoint path's lock
    │   └── UntrustedCheckpointError        loading would run code from the checkpoint (needs trusted=True)
    └── DatasetError (OSError)              an offline dataset (HDF5 file, Minari dataset) cannot be read or written
        ├── DatasetCorruptError             truncated, not HDF5, or inconsistent with its own metadata
        ├── DatasetFieldMissingError (KeyError)  a field the reader needs is absent
        └── DatasetMismatchError (ValueError)    its fields or spaces differ from the buffer's or the given ones
"""

from __future__ import annotations

__all__ = [
    "ArgumentAssertionError",
    "ArgumentError",
    "BufferClosedError",
    "CapacityError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointFileMissingError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "CheckpointPathError",
    "CheckpointSchemaError",
    "CheckpointTooLargeError",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetFieldMissingError",
    "DatasetMismatchError",
    "DeviceError",
    "FieldShapeError",
    "FieldShapeIndexError",
    "FieldShapeRuntimeError",
    "FieldTypeError",
    "FieldValueError",
    "FieldValueRuntimeError",
    "IndexOutOfRangeError",
    "InsufficientDataAssertionError",
    "InsufficientDataError",
    "InvalidIndexError",
    "NotACheckpointError",
    "PriorityError",
    "RateLimiterTimeout",
    "SchemeError",
    "ShardError",
    "ShardFactoryError",
    "ShardUnavailableError",
    "SharedMemoryError",
    "StaleSegmentError",
    "UnknownFieldError",
    "UnknownFieldValueError",
    "UnknownIndexError",
    "UntrustedCheckpointError",
    "XReplayError",
]


class XReplayError(Exception):
    """Base class of every error xreplay raises on purpose."""


class SchemeError(XReplayError, ValueError):
    """A scheme or field declaration is invalid."""


class ArgumentError(XReplayError, ValueError, TypeError):
    """A capacity, sample size, index, device or option argument has the wrong type or value.

    It is both a ValueError and a TypeError: Python raises the first for a bad
    value (``capacity=0``) and the second for a bad type (``sample(2.5)``).
    """


class ArgumentAssertionError(ArgumentError, AssertionError):
    """An argument refused where the legacy API used a bare ``assert`` (DI-engine's ``sample``, PER's ``update``)."""


class DeviceError(ArgumentError, RuntimeError):
    """A device argument names no device torch can use here; also the RuntimeError torch raises for it."""


class UnknownFieldError(XReplayError, KeyError):
    """A write or read names a field that the scheme does not declare."""

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0]) if self.args else ""


class UnknownFieldValueError(UnknownFieldError, ValueError):
    """An unknown field where the legacy API raised ValueError (PyMARL's ``batch["nope"]``)."""


class FieldTypeError(XReplayError, TypeError, ValueError):
    """A value's type cannot be held by its field (text, objects, complex numbers into a real field).

    It is both a TypeError (what torch raises for such values) and a ValueError
    (what numpy raises).
    """


class FieldShapeError(XReplayError, ValueError):
    """A value has the wrong shape for its field."""


class FieldShapeIndexError(FieldShapeError, IndexError):
    """A shape error where the legacy API raised IndexError (PyMARL's check of a 0-d value)."""


class FieldShapeRuntimeError(FieldShapeError, RuntimeError):
    """A shape error where the legacy API raised RuntimeError (PyMARL's ``view_as``)."""


class FieldValueError(XReplayError, ValueError):
    """A value cannot be held losslessly by its field's dtype."""


class FieldValueRuntimeError(FieldValueError, RuntimeError):
    """A value error where the legacy API raised RuntimeError (an integer overflow, a one-hot class out of range)."""


class InsufficientDataError(XReplayError, ValueError):
    """More items were requested than the buffer stores."""


class InsufficientDataAssertionError(InsufficientDataError, AssertionError):
    """Too few items where the legacy API used a bare ``assert`` (PyMARL's ``sample``, PER on an empty buffer)."""


class CapacityError(XReplayError, MemoryError, RuntimeError):
    """A buffer's storage would not fit in the memory of its device.

    It is also a RuntimeError, the class torch raises when an allocation fails.
    """


class IndexOutOfRangeError(XReplayError, IndexError):
    """An index lies outside the items that are stored."""


class InvalidIndexError(XReplayError, IndexError):
    """An index has a form the API does not accept (PyMARL's list as a time index)."""


class UnknownIndexError(XReplayError, KeyError):
    """An index string names no stored record (DI-engine's ``sample(indices=...)``, ``get_by_index``)."""

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0]) if self.args else ""


class CheckpointError(XReplayError, OSError):
    """A checkpoint cannot be written or read; the message names the path and the reason.

    It is also an OSError, so code that already handles file errors catches it.
    """

    def __init__(self, message: str, path: object = None):
        """Keep ``message`` as the whole text and ``path`` as ``filename``."""
        super().__init__(message)
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        """Return the message alone (OSError would add errno and filename)."""
        return str(self.args[0]) if self.args else ""


class NotACheckpointError(CheckpointError):
    """The path holds no xreplay checkpoint (no or unreadable ``metadata.json``)."""


class CheckpointFileMissingError(CheckpointError, FileNotFoundError):
    """A file that the checkpoint's metadata lists does not exist."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file is truncated or its checksum does not match."""


class CheckpointPathError(CheckpointCorruptError):
    """``metadata.json`` names a file that is not a plain file name inside the checkpoint folder.

    Raised before any file is opened, so a crafted checkpoint cannot read or write outside its folder.
    """


class CheckpointSchemaError(CheckpointCorruptError):
    """A ``metadata.json`` key is missing, of the wrong type or outside its allowed range.

    Attributes:
        key: The dotted key at fault (``"state.writer.cursor"``).
        rule: The rule it breaks (``"must be < capacity 8"``).
    """

    def __init__(self, message: str, path: object = None, key: str = "", rule: str = ""):
        """Keep ``key`` and ``rule`` besides the message."""
        super().__init__(message, path)
        self.key = key
        self.rule = rule


class CheckpointTooLargeError(CheckpointError, CapacityError):
    """Loading the checkpoint would need more memory than is available (checked before allocating)."""


class CheckpointVersionError(CheckpointError):
    """The checkpoint was written in a newer format version than this xreplay reads."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint holds another kind of buffer, or another scheme, than the one asked for."""


class CheckpointWriteError(CheckpointError):
    """A save failed (for example on a full disk); the previous checkpoint at the path is intact."""


class CheckpointLockedError(CheckpointWriteError):
    """Another saver (named in the message: pid, host, since when) holds the lock of the checkpoint path."""


class UntrustedCheckpointError(CheckpointError):
    """Loading the checkpoint would run code it carries (pickled Python objects); pass ``trusted=True`` to allow."""


class DatasetError(XReplayError, OSError):
    """An offline dataset cannot be read or written; the message names the path, the field and the reason.

    It is also an OSError, like :class:`CheckpointError`: both are files from outside the process.
    """

    def __init__(self, message: str, path: object = None):
        """Keep ``message`` as the whole text and ``path`` as ``filename``."""
        super().__init__(message)
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        """Return the message alone (OSError would add errno and filename)."""
        return str(self.args[0]) if self.args else ""


class DatasetCorruptError(DatasetError):
    """A dataset file is truncated, is not HDF5, fails a checksum, or contradicts its own metadata."""


class DatasetFieldMissingError(DatasetError, KeyError):
    """A field (or an episode's dataset) that the reader needs is absent."""


class DatasetMismatchError(DatasetError, ValueError):
    """A dataset's fields or spaces differ from those of the buffer it goes into, or from the given ones."""


class PriorityError(XReplayError, ValueError):
    """A priority is not a finite real number >= 0, or is so large that the sum of priorities would overflow."""


class RateLimiterTimeout(XReplayError, TimeoutError):
    """A rate limiter did not allow an insert or a sample within its timeout; the message states its counters."""


class ShardError(XReplayError, RuntimeError):
    """A replay shard of :mod:`xreplay.distributed` cannot be built or reached; the message names the shard."""


class ShardFactoryError(ShardError, TypeError):
    """A shard factory cannot be pickled, or builds something other than a native xreplay buffer."""


class ShardUnavailableError(ShardError, TimeoutError):
    """A shard stayed unreachable past its timeout (its restarts are used up, or its node is gone)."""


class BufferClosedError(XReplayError, RuntimeError):
    """A buffer, or a writer handle of a shared buffer, was used after it (or its buffer) was closed."""


class SharedMemoryError(XReplayError, OSError):
    """A shared-memory segment cannot be created or attached; the message names the segment and the reason."""

    def __init__(self, message: str, path: object = None):
        """Keep ``message`` as the whole text and ``path`` as ``filename``."""
        super().__init__(message)
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        """Return the message alone (OSError would add errno and filename)."""
        return str(self.args[0]) if self.args else ""


class StaleSegmentError(SharedMemoryError):
    """A segment left behind by a crashed run (its owner process is gone) holds the name asked for.

    It is reported, never silently reused: remove it with :func:`xreplay.shared.remove_stale_segments`.
    """
