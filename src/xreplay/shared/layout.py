"""The arrays of a shared buffer inside its segment: control words, writer table, slot states, data.

Every shared buffer, of transitions or of episodes, lays out the same
bookkeeping in front of its data:

* ``control`` (int64): the reservation counter (writers increment it under
  their lock) and the kind of that lock;
* ``mutex``: the robust process-shared mutex of :mod:`xreplay.shared.locks`;
* ``writers`` (int64 ``[MAX_WRITERS, 2]``): pid and process start time of each
  registered writer handle, so a slot left mid-write can be traced to a live
  or a dead process;
* ``states`` (uint64 ``[capacity]``): each slot's state word (see
  :mod:`xreplay.shared.slots`);
* ``priorities`` (float32 ``[capacity]``): the initial priority a writer gave
  each slot, NaN for "use the max";
* the data arrays the item kind asks for (rows of transitions grouped by
  dtype, or episode rows and lengths), each 64-byte aligned.

A layout is plain data: it pickles with a writer handle, and it is stored as
JSON in the segment header, where :meth:`SlotLayout.check_matches` compares it
before a writer maps the arrays.

Example:
    >>> layout = SlotLayout(8, [("rows", "uint8", (16,))])
    >>> layout.payload_bytes, layout.nbytes - layout.payload_bytes < 20_000
    (128, True)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from xreplay.errors import SharedMemoryError
from xreplay.shared.locks import MUTEX_BYTES

__all__ = ["LOCK_KIND", "MAX_WRITERS", "RESERVED", "ArraySpec", "SlotLayout"]

MAX_WRITERS = 1024
RESERVED = 0  # control[RESERVED]: reservations made so far (the next reservation index)
LOCK_KIND = 1  # control[LOCK_KIND]: 1 for the robust mutex in ``mutex``, 2 for flock (see xreplay.shared.locks)
_CONTROL_WORDS = 8  # one cache line
_ALIGN = 64


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One array of the body: name, numpy dtype name, shape (capacity first for per-slot arrays), byte offset."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        """Return the bytes the array takes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


class SlotLayout:
    """Byte offsets of the bookkeeping arrays and of the data arrays of one shared buffer.

    Args:
        capacity: Number of slots.
        data: ``(name, numpy dtype name, item shape)`` of each data array; each gets ``[capacity, *item]``.
    """

    def __init__(self, capacity: int, data: list[tuple[str, str, tuple[int, ...]]]):
        """Compute the offsets."""
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, received {capacity!r}")
        self.capacity = int(capacity)
        self.data_names = tuple(name for name, _d, _s in data)
        specs = [
            ("control", "int64", (_CONTROL_WORDS,)),
            ("mutex", "uint8", (MUTEX_BYTES,)),
            ("writers", "int64", (MAX_WRITERS, 2)),
            ("states", "uint64", (self.capacity,)),
            ("priorities", "float32", (self.capacity,)),
        ] + [(name, np.dtype(dtype).name, (self.capacity, *tuple(shape))) for name, dtype, shape in data]
        self.arrays: dict[str, ArraySpec] = {}
        offset = 0
        for name, dtype, shape in specs:
            if name in self.arrays:
                raise ValueError(f"array {name!r} appears twice in the layout")
            spec = ArraySpec(name, dtype, tuple(int(d) for d in shape), offset)
            self.arrays[name] = spec
            offset += -(-spec.nbytes // _ALIGN) * _ALIGN
        self.nbytes = offset

    @property
    def payload_bytes(self) -> int:
        """Return the bytes of the data arrays alone (what the items themselves take)."""
        return sum(self.arrays[name].nbytes for name in self.data_names)

    def describe(self) -> dict[str, Any]:
        """Return the layout as JSON-able data."""
        return {
            "capacity": self.capacity,
            "arrays": [[s.name, s.dtype, list(s.shape), s.offset] for s in self.arrays.values()],
        }

    def check_matches(self, description: dict[str, Any], path: object) -> None:
        """Raise SharedMemoryError unless a segment header's layout is this one.

        Raises:
            SharedMemoryError: The segment holds other arrays (another buffer, or another xreplay version).
        """
        if description.get("layout") != self.describe():
            raise SharedMemoryError(
                f"segment {path} holds another layout than this handle expects "
                f"(capacity {description.get('layout', {}).get('capacity')!r} vs {self.capacity}); "
                f"the handle belongs to another buffer",
                path,
            )

    def views(self, segment: Any) -> dict[str, np.ndarray]:
        """Return every array as a numpy view of ``segment``'s body."""
        return {s.name: segment.array(s.offset, s.dtype, s.shape) for s in self.arrays.values()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotLayout) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash((self.capacity, self.data_names))

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "data": [[s.name, s.dtype, list(s.shape[1:])] for s in self._data()]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"], [(n, d, tuple(s)) for n, d, s in state["data"]])  # type: ignore[misc]

    def _data(self) -> list[ArraySpec]:
        """Return the data arrays' specs."""
        return [self.arrays[name] for name in self.data_names]
