"""Checkpoint adapter for ``DequeBuffer`` (kind ``ding.deque_buffer``): records, indices, ``meta_index``, middleware.

``DequeBuffer.save_data(file_name)`` writes an xreplay checkpoint directory
at ``file_name`` (:mod:`xreplay.persistence`: versioned ``metadata.json``,
one file per array with a CRC-32 each, atomic replacement of an earlier save
at that path) and ``load_data`` reads one back into the buffer.

Arrays: the storage's ``generation`` (int64), ``order`` and ``where`` (int32,
or int64 from 2**31 slots; either is read back), and the records by slot, the
free-slot list, ``meta_index`` and each stateful middleware's ``state_dict()``
in the code-free encoding of :mod:`xreplay.persistence.plain_data`:
``payload.tree`` (a JSON tree), ``payload.data`` (the raw bytes of every
array and tensor) and ``payload.offsets``.

Trust: loading runs no code from the checkpoint as long as the records hold
arrays, tensors, numbers, strings, bytes, lists, tuples, dicts and sets.
Values of other types (instances of your own classes, say) are pickled; the
metadata lists their types, and loading such a checkpoint raises
:class:`~xreplay.errors.UntrustedCheckpointError` unless ``trusted=True`` is
passed (``load_data(path, trusted=True)``), because unpickling runs code
chosen by whoever wrote the file. Checkpoints of earlier xreplay versions
(one pickle, payload version 1) also need ``trusted=True``.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from xreplay.compat.ding.data import BufferedData, make_record
from xreplay.compat.ding.deque_buffer import DequeBuffer
from xreplay.errors import CheckpointCorruptError, CheckpointMismatchError, UntrustedCheckpointError
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.plain_data import decode, encode
from xreplay.persistence.schema import Validator, entry_nbytes

__all__ = ["DEQUE_BUFFER", "KIND", "DequeBufferAdapter"]

KIND = "ding.deque_buffer"
PAYLOAD_VERSION = 2
_PICKLE_PAYLOAD = 1  # earlier xreplay versions: one pickle in the array "payload"
_RING = ("<i4", "<i8")


def _stateful(buffer: Any) -> list[tuple[int, str, Any]]:
    """Return ``(position, class name, middleware)`` of the buffer's middleware with ``state_dict``."""
    return [
        (i, type(mw).__name__, mw)
        for i, mw in enumerate(buffer._middleware)
        if callable(getattr(mw, "state_dict", None))
    ]


def _untrusted(where: Any, types: list[str]) -> UntrustedCheckpointError:
    """Return the error of a checkpoint that only unpickling can restore."""
    listed = ", ".join(types[:8]) + (" ..." if len(types) > 8 else "")
    return UntrustedCheckpointError(
        f"{where} holds Python objects that only unpickling can restore ({listed}); unpickling runs code chosen "
        f"by whoever wrote the checkpoint. If you trust its author, load it with trusted=True "
        f"(buffer.load_data(path, trusted=True) or xreplay.persistence.load(path, trusted=True)); otherwise keep "
        f"to arrays, tensors, numbers, strings, lists and dicts in the buffer",
        where,
    )


def _check_ring(v: Validator, capacity: int, state: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Check that ``order``, ``where``, ``head``, ``count``, ``free`` and ``fresh`` describe one consistent ring."""
    order, where = np.asarray(arrays["order"], dtype=np.int64), np.asarray(arrays["where"], dtype=np.int64)
    head, count = int(state["head"]), int(state["count"])
    ring = (head + np.arange(count)) % capacity  # ring positions of the stored records, oldest first
    live = order[ring]
    if ((live < 0) | (live >= capacity)).any():
        raise v.fail("arrays.order", f"must hold slots in [0, {capacity}) at the {count} stored positions")
    if not np.array_equal(where[live], ring) or int((where >= 0).sum()) != count:
        raise v.fail("arrays.where", "must give each stored slot's ring position and -1 for free slots")


def _check_free(v: Validator, capacity: int, state: dict[str, Any], payload: dict[str, Any], where: Any) -> None:
    """Check the free-slot list and the records against the ring."""
    free, items = payload.get("free"), payload.get("items")
    if not isinstance(free, list) or not all(type(s) is int and 0 <= s < capacity for s in free):
        raise v.fail("payload.free", f"must be a list of slots in [0, {capacity})")
    fresh = int(state["fresh"])
    if len(set(free)) != len(free) or (np.asarray(where)[free] >= 0).any() or any(s >= fresh for s in free):
        raise v.fail("payload.free", f"must list distinct slots below fresh={fresh} that hold no record")
    if (np.asarray(where)[fresh:] >= 0).any():
        raise v.fail("state.fresh", "must lie above every slot ever used")
    if not isinstance(items, list) or len(items) != capacity:
        raise v.fail("payload.items", f"must be a list of {capacity} slots")
    held = np.asarray(where) >= 0
    for slot, item in enumerate(items):
        if held[slot] != isinstance(item, BufferedData) or not (held[slot] or item is None):
            raise v.fail("payload.items", f"must hold a record exactly at the stored slots (slot {slot})")


def _validate(v: Validator) -> None:
    """Check a ``ding.deque_buffer`` checkpoint's metadata before any of its files is opened."""
    capacity = v.integer("structure.capacity", low=1, high=2**40)
    version = v.integer("state.payload_version", low=_PICKLE_PAYLOAD, high=PAYLOAD_VERSION)
    v.integer("state.count", low=0, high=capacity)
    v.integer("state.head", low=0, high=capacity - 1)
    v.integer("state.fresh", low=0, high=capacity)
    v.boolean("state.sliced")
    v.boolean("state.full_last_window")
    for i, name in enumerate(v.sequence("state.middleware", max_length=1024)):
        v.string(f"state.middleware[{i}]", name)
    v.array_shape("generation", (capacity,), "<i8")
    v.array_shape("order", (capacity,), _RING)
    v.array_shape("where", (capacity,), _RING)
    if version == _PICKLE_PAYLOAD:
        v.array_shape("payload", tuple(v.array_entry("payload")["shape"]), "|u1")
        return
    for i, name in enumerate(v.sequence("state.python_objects", max_length=2**20)):
        v.string(f"state.python_objects[{i}]", name)
    v.array_shape("payload.tree", tuple(v.shape("arrays.payload.tree.shape")[:1]), "|u1")
    v.array_shape("payload.data", tuple(v.shape("arrays.payload.data.shape")[:1]), "|u1")
    v.array_shape("payload.offsets", tuple(v.shape("arrays.payload.offsets.shape")[:1]), "<i8")


class DequeBufferAdapter:
    """Saves a ``DequeBuffer`` as ``(meta, arrays)``, checks one, and restores it, new or in place."""

    kind = KIND
    may_run_code = True  # only with trusted=True: see the module docstring

    def lock(self, buffer: Any) -> Any:
        """Return the buffer's lock, held by its pushes, samples and updates."""
        return buffer._lock

    def validate(self, v: Validator) -> None:
        """Check a checkpoint's metadata (see :func:`_validate`)."""
        _validate(v)

    def memory_needed(self, document: dict[str, Any], mmap: bool) -> int:
        """Return the bytes decoding allocates: about one copy of the payload."""
        return sum(entry_nbytes(e) for name, e in document["arrays"].items() if name.startswith("payload"))

    def state(self, buffer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the checkpoint ``(meta, arrays)`` of ``buffer``."""
        store = buffer._store
        ring = store.state()
        middleware = _stateful(buffer)
        payload = {
            "items": ring["items"],
            "free": ring["free"],
            "meta_index": dict(buffer.meta_index),
            "middleware": [(i, name, mw.state_dict()) for i, name, mw in middleware],
        }
        tree, segments, unsafe = encode(payload, record_type=BufferedData)
        offsets = np.cumsum([0, *(len(s) for s in segments)], dtype=np.int64)
        meta = {
            "structure": {"capacity": store.capacity},
            "state": {
                "payload_version": PAYLOAD_VERSION,
                "count": ring["count"],
                "head": ring["head"],
                "fresh": ring["fresh"],
                "sliced": bool(buffer.sliced),
                "full_last_window": bool(getattr(buffer, "full_last_window", False)),
                "middleware": [name for _, name, _ in middleware],
                "python_objects": sorted(unsafe),
            },
        }
        arrays = {
            "generation": ring["generation"],
            "order": ring["order"],
            "where": ring["where"],
            "payload.tree": np.frombuffer(tree, dtype=np.uint8),
            "payload.data": np.frombuffer(b"".join(segments), dtype=np.uint8),
            "payload.offsets": offsets,
        }
        return meta, arrays

    def _payload(self, meta: dict[str, Any], arrays: dict[str, Any], trusted: bool) -> dict[str, Any]:
        """Return the decoded payload, refusing pickled objects unless ``trusted``."""
        where, state = meta.get("path", "the checkpoint"), meta["state"]
        if state["payload_version"] == _PICKLE_PAYLOAD:
            if not trusted:
                raise _untrusted(where, ["a pickle written by an earlier xreplay version"])
            try:
                payload = pickle.loads(np.ascontiguousarray(arrays["payload"]).tobytes())
            except Exception as exc:  # checksum-valid but unreadable: written by an incompatible version
                raise CheckpointCorruptError(
                    f"{where}: the DequeBuffer payload cannot be unpickled: {exc!r}", where
                ) from exc
        else:
            if state["python_objects"] and not trusted:
                raise _untrusted(where, list(state["python_objects"]))
            payload = decode(
                arrays["payload.tree"],
                arrays["payload.data"],
                arrays["payload.offsets"],
                trusted,
                str(where),
                make_record,
            )
        if not isinstance(payload, dict) or not {"items", "free", "meta_index", "middleware"} <= set(payload):
            raise CheckpointCorruptError(f"{where}: the DequeBuffer payload lacks its records or state", where)
        return payload

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], into: Any = None, trusted: bool = False) -> Any:
        """Return the saved buffer: ``into`` with its contents replaced, or a new ``DequeBuffer``.

        Everything is decoded and checked before ``into`` changes.

        Raises:
            CheckpointMismatchError: ``into`` has another capacity, or a stateful
                middleware with no saved state at its position; ``into`` is unchanged.
            UntrustedCheckpointError: The records need unpickling and ``trusted`` is False.
            CheckpointCorruptError: The payload or the ring is inconsistent.
        """
        where = meta.get("path", "the checkpoint")
        v = Validator(where, meta)
        capacity, state = int(meta["structure"]["capacity"]), meta["state"]
        if into is not None and capacity != into._store.capacity:
            raise CheckpointMismatchError(
                f"{where} holds a DequeBuffer of size {capacity}; this buffer has size {into._store.capacity}",
                where,
            )
        _check_ring(v, capacity, state, arrays)
        payload = self._payload(meta, arrays, trusted)
        _check_free(v, capacity, state, payload, arrays["where"])
        if not isinstance(payload["meta_index"], dict) or not isinstance(payload["middleware"], list):
            raise v.fail("payload.meta_index", "must be a dict, and payload.middleware a list")
        saved = {}
        for entry in payload["middleware"]:
            if not isinstance(entry, (tuple, list)) or len(entry) != 3:
                raise v.fail("payload.middleware", "must hold (position, name, state) entries")
            saved[(entry[0], entry[1])] = entry[2]
        if into is None:
            into = DequeBuffer(capacity, sliced=state["sliced"], full_last_window=state["full_last_window"])
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

register_kind(DEQUE_BUFFER, classes=(DequeBuffer,))
