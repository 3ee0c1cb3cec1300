"""Save and load a ``DequeBuffer`` (records, indices, ``meta_index``, middleware state).

The file is an xreplay snapshot (:mod:`xreplay.persistence.snapshot`):
format version, JSON metadata and a checksummed pickle payload, written
atomically. Trust note: loading unpickles the payload, which can run code;
only load files you wrote or trust.
"""

from __future__ import annotations

from typing import Any

from xreplay.errors import CheckpointError
from xreplay.persistence import read_snapshot, write_snapshot

__all__ = ["load_buffer", "save_buffer"]

KIND = "xreplay.compat.ding.DequeBuffer"


def save_buffer(buffer: Any, file_name: str) -> None:
    """Write ``buffer``'s records and the state of its stateful middleware to ``file_name``."""
    middleware = [
        (i, type(mw).__name__, mw.state_dict())
        for i, mw in enumerate(buffer._middleware)
        if callable(getattr(mw, "state_dict", None))
    ]
    state = {
        "store": buffer._store.state(),
        "meta_index": dict(buffer.meta_index),
        "sliced": buffer.sliced,
        "middleware": middleware,
    }
    metadata = {
        "count": buffer.count(),
        "capacity": buffer._store.capacity,
        "middleware": [m[1] for m in middleware],
    }
    write_snapshot(file_name, KIND, state, metadata)


def load_buffer(buffer: Any, file_name: str) -> None:
    """Replace ``buffer``'s records and middleware state by those in ``file_name``, all or nothing.

    Raises:
        CheckpointError: unreadable file, another capacity, or a stateful
            middleware of ``buffer`` with no matching saved state.

    """
    state, _metadata = read_snapshot(file_name, KIND)
    capacity = state["store"]["capacity"]
    if capacity != buffer._store.capacity:
        raise CheckpointError(
            f"snapshot {file_name!r} holds a buffer of size {capacity}; this buffer has size {buffer._store.capacity}"
        )
    saved = {(i, name): st for i, name, st in state["middleware"]}
    plan = []
    for i, mw in enumerate(buffer._middleware):
        if not callable(getattr(mw, "load_state_dict", None)):
            continue
        key = (i, type(mw).__name__)
        if key not in saved:
            raise CheckpointError(
                f"snapshot {file_name!r} has no state for middleware {key[1]} at position {i}; "
                f"it saved {sorted(saved)}"
            )
        plan.append((mw, saved[key]))
    buffer._store.load_state(state["store"])
    buffer.meta_index = state["meta_index"]
    buffer._groups = {}
    for mw, st in plan:
        mw.load_state_dict(st)
