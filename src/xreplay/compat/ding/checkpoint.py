"""Checkpoint adapter for ``DequeBuffer`` (kind ``ding.deque_buffer``): records, indices, ``meta_index``, middleware.

``DequeBuffer.save_data(file_name)`` writes an xreplay checkpoint directory
at ``file_name`` (:mod:`xreplay.persistence`: versioned ``metadata.json``,
one file per array with a CRC-32 each, atomic replacement of an earlier save
at that path) and ``load_data`` reads one back into the buffer.

Arrays: the storage's ``generation`` (int64), ``order`` and ``where`` (int32,
or int64 from 2**31 slots; either is read back), and
``payload`` (uint8): one pickle holding the stored ``BufferedData`` by slot,
the free-slot list, ``meta_index`` and the state of each stateful middleware
(``state_dict()``), since records and metas are arbitrary Python objects.

Trust note: loading unpickles ``payload``, which can run code chosen by
whoever wrote the checkpoint. The checksums only catch damage, not
tampering; only load checkpoints you wrote or trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.errors import CheckpointCorruptError, CheckpointMismatchError, NotACheckpointError
from xreplay.persistence import load, save

__all__ = ["DEQUE_BUFFER", "KIND", "DequeBufferAdapter", "load_buffer", "save_buffer"]

KIND = "ding.deque_buffer"
PAYLOAD_VERSION = 1


def _stateful(buffer: Any) -> list[tuple[int, str, Any]]:
    """Return ``(position, class name, middleware)`` of the buffer's middleware with ``state_dict``."""
    return [
        (i, type(mw).__name__, mw)
        for i, mw in enumerate(buffer._middleware)
        if callable(getattr(mw, "state_dict", None))
    ]


class DequeBufferAdapter:
    """Saves a ``DequeBuffer`` as ``(meta, arrays)`` and restores one, new or in place."""

    kind = KIND

    def state(self, buffer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the checkpoint ``(meta, arrays)`` of ``buffer``."""
        store = buffer._store
        middleware = _stateful(buffer)
        payload = {
            "items": store.items,
            "free": store._free,
            "meta_index": dict(buffer.meta_index),
            "middleware": [(i, name, mw.state_dict()) for i, name, mw in middleware],
        }
        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "structure": {"capacity": store.capacity},
            "state": {
                "payload_version": PAYLOAD_VERSION,
                "count": store.count,
                "head": store.head,
                "fresh": store._fresh,
                "sliced": bool(buffer.sliced),
                "full_last_window": bool(getattr(buffer, "full_last_window", False)),
                "middleware": [name for _, name, _ in middleware],
            },
        }
        arrays = {
            "generation": store.generation,
            "order": store.order,
            "where": store.where,
            "payload": np.frombuffer(blob, dtype=np.uint8),
        }
        return meta, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], into: Any = None) -> Any:
        """Return the saved buffer: ``into`` with its contents replaced, or a new ``DequeBuffer``.

        Raises:
            CheckpointMismatchError: ``into`` has another capacity, or a stateful
                middleware with no saved state at its position; ``into`` is unchanged.
            CheckpointCorruptError: the payload cannot be unpickled.

        """
        from xreplay.compat.ding.deque_buffer import DequeBuffer

        where = meta.get("path", "the checkpoint")
        capacity, state = int(meta["structure"]["capacity"]), meta["state"]
        if state.get("payload_version") != PAYLOAD_VERSION:
            raise CheckpointMismatchError(
                f"{where} holds DequeBuffer payload version {state.get('payload_version')!r}; "
                f"this xreplay reads version {PAYLOAD_VERSION}",
                where,
            )
        if into is None:
            into = DequeBuffer(capacity, sliced=state["sliced"], full_last_window=state["full_last_window"])
        if capacity != into._store.capacity:
            raise CheckpointMismatchError(
                f"{where} holds a DequeBuffer of size {capacity}; this buffer has size {into._store.capacity}",
                where,
            )
        try:
            payload = pickle.loads(np.ascontiguousarray(arrays["payload"]).tobytes())
        except Exception as exc:  # checksum-valid but unreadable: written by an incompatible version
            message = f"{where}: the DequeBuffer payload cannot be unpickled: {exc!r}"
            raise CheckpointCorruptError(message, where) from exc
        saved = {(i, name): st for i, name, st in payload["middleware"]}
        plan = []
        for i, name, mw in _stateful(into):
            if not callable(getattr(mw, "load_state_dict", None)):
                continue
            if (i, name) not in saved:
                raise CheckpointMismatchError(
                    f"{where} has no state for middleware {name} at position {i}; it saved {sorted(saved)}", where
                )
            plan.append((mw, saved[(i, name)]))
        into._store.load_state(
            {
                "capacity": capacity,
                "items": payload["items"],
                "metas": None,
                "keys": None,
                "generation": arrays["generation"],
                "order": arrays["order"],
                "where": arrays["where"],
                "head": state["head"],
                "count": state["count"],
                "free": payload["free"],
                "fresh": state["fresh"],
            }
        )
        into._store.adopt_loaded()  # records hold their saved index strings; compact them again
        into.meta_index = payload["meta_index"]
        into._groups = {}
        for mw, st in plan:
            mw.load_state_dict(st)
        return into


DEQUE_BUFFER = DequeBufferAdapter()


def save_buffer(buffer: Any, file_name: str | os.PathLike[str]) -> None:
    """Save ``buffer`` as a checkpoint directory at ``file_name`` (parents created, an earlier save replaced).

    Raises:
        NotACheckpointError: ``file_name`` exists and is not a checkpoint (it is never deleted).
        CheckpointWriteError: writing failed; an earlier checkpoint there is intact.

    """
    path = Path(file_name)
    if path.is_file() or path.is_symlink():
        raise NotACheckpointError(
            f"will not save to {path}: it is a file, not an xreplay checkpoint directory; remove it or choose "
            "another name",
            path,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    save(buffer, path, incremental=False)


def load_buffer(buffer: Any, file_name: str | os.PathLike[str]) -> None:
    """Replace ``buffer``'s records and middleware state by the checkpoint at ``file_name``, all or nothing."""
    load(file_name, kind=KIND, into=buffer)
