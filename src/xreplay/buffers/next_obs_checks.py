"""Checks of what a next-observation store takes: a write's next observations, and a saved state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import ArgumentError, FieldShapeError, SchemeError, UnknownFieldError
from xreplay.storage.columns import ColumnSpec, ColumnStorage
from xreplay.storage.conversion import check_value
from xreplay.storage.dtypes import numpy_dtype

__all__ = ["check_next_values", "check_side_rows", "check_stream_links"]


def check_side_rows(state: Mapping[str, Any], capacity: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Return ``(rows, newest, slot_row, free)`` of a store's state after checking they index each side row once.

    Raises:
        ArgumentError: A counter is out of range, or the slot index and the free rows do not share the side rows.
    """
    rows, newest = state.get("rows"), state.get("newest")
    if not isinstance(rows, int) or not isinstance(newest, int) or rows < 0 or not -1 <= newest < capacity:
        raise ArgumentError(f"next-observation state needs rows >= 0 and -1 <= newest < {capacity}")
    slot_row = np.array(state["slot_row"], dtype=np.int32)
    free = np.array(state["free"], dtype=np.int32)
    if slot_row.shape != (capacity,) or free.ndim != 1:
        raise ArgumentError(f"next-observation state 'slot_row' must have shape ({capacity},)")
    used = slot_row[slot_row >= 0]
    taken = np.concatenate([used, free]).astype(np.int64)
    if (
        slot_row.min(initial=0) < -1
        or taken.size != rows
        or np.unique(taken).size != rows
        or (rows and (taken.min() < 0 or taken.max() >= rows))
    ):
        raise ArgumentError(f"next-observation state: slot_row and free must share the {rows} side rows, each once")
    return rows, newest, slot_row, free


def check_stream_links(streams: Mapping[str, Any], capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(successor, stream_newest)`` of a store's stream tables after checking every link is a slot or -1.

    Raises:
        ArgumentError: A table has the wrong shape or a link outside ``[-1, capacity)``.
    """
    successor = np.array(streams["successor"], dtype=np.int32)
    stream_newest = np.array(streams["stream_newest"], dtype=np.int64)
    for name, links in (("successor", successor), ("stream_newest", stream_newest)):
        if links.ndim != 1 or (links.size and (links.min() < -1 or links.max() >= capacity)):
            raise ArgumentError(f"next-observation state {name!r} must hold -1 or slots in [0, {capacity})")
    if successor.shape != (capacity,):
        raise ArgumentError(f"next-observation state 'successor' must have shape ({capacity},)")
    return successor, stream_newest


def check_next_values(
    store: Any, nxt: Mapping[str, Any], specs: Mapping[str, ColumnSpec], batched: bool, batch: int = 1
) -> dict[str, np.ndarray]:
    """Return a write's next observations as host arrays ``[batch, *item]`` of their obs field's dtype.

    ``store`` is the :class:`~xreplay.buffers.next_obs.NextObsStore` they go to.

    Raises:
        UnknownFieldError: A next-observation field is missing or extra.
        FieldShapeError: A shape differs from its observation field's.
        FieldValueError: A dtype of another kind than the observation field's, or values it cannot hold.
    """
    if nxt.keys() != store.expected:
        raise UnknownFieldError(
            f"next-observation fields {sorted(nxt)} differ from those of the first write {sorted(store.expected)}"
        )
    out = {}
    for name, obs in store.pairs:
        spec = specs[obs]
        value = nxt[name]
        if type(value) is not np.ndarray:
            value = ColumnStorage._as_array(name, value)
            value = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if batched and not value.shape:
            raise FieldShapeError(f"field {name!r}: expected a batch of items of shape {spec.shape}, received a scalar")
        item = value.shape[1:] if batched else value.shape
        if item != spec.shape:
            raise FieldShapeError(
                f"field {name!r}: expected item shape {spec.shape} (that of {obs!r}), received {tuple(item)}"
            )
        if batched and value.shape[0] != batch:
            raise FieldShapeError(f"field {name!r}: batch of {value.shape[0]} items, other fields have {batch}")
        host_dtype = store.dtypes.get(obs)  # (not ``or``: a numpy dtype without fields is falsy)
        if host_dtype is None:
            host_dtype = numpy_dtype(spec.dtype)
            if host_dtype is None:
                raise SchemeError(f"field {obs!r}: dtype {spec.dtype} has no numpy equivalent")
        if value.dtype != host_dtype:
            check_value(name, value, spec.dtype)
            value = value.astype(host_dtype)
        out[name] = value if batched else value[None]
    for _name, obs in store.pairs:
        store.dtypes.setdefault(obs, numpy_dtype(specs[obs].dtype))  # type: ignore[arg-type]
    return out
