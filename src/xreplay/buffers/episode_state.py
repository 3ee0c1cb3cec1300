"""Checks an EpisodeBuffer runs on what it is given: a storage to adopt, and a state to load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.errors import ArgumentError, SchemeError
from xreplay.scheme import Scheme
from xreplay.storage.resources import check_allocation
from xreplay.storage.tensor import TensorStorage

__all__ = ["check_episode_state", "check_sample_memory", "check_storage"]


def check_storage(
    storage: TensorStorage, scheme: Scheme, capacity: int, max_seq_length: int, row_order: str | None = None
) -> None:
    """Raise SchemeError unless ``storage`` holds ``scheme`` with ``capacity`` x ``max_seq_length``.

    Raises ArgumentError when ``row_order`` is given and ``storage`` keeps its rows in another order.
    """
    if row_order is not None and storage.layout.order != row_order:
        raise ArgumentError(
            f"row_order {row_order!r} differs from the order of the given storage ({storage.layout.order!r}); "
            f"drop row_order or build the storage with row_order={row_order!r}"
        )
    same = dict(storage.scheme) == dict(scheme) and storage.scheme.groups == scheme.groups
    if not same or storage.capacity != capacity or storage.max_seq_length != max_seq_length:
        raise SchemeError(
            f"storage holds {storage.capacity} x {storage.max_seq_length} steps of {list(storage.scheme)}, "
            f"the buffer wants {capacity} x {max_seq_length} of {list(scheme)}; build the storage from the same scheme"
        )


def check_episode_state(state: Mapping[str, Any], capacity: int, max_seq_length: int) -> np.ndarray:
    """Return the episode lengths of ``state`` once its keys and lengths fit a buffer of this shape.

    Raises:
        ArgumentError: A key is missing, or the lengths are not ``capacity`` integers in ``[0, max_seq_length]``.
    """
    missing = [key for key in ("writer", "rng", "sampler", "lengths") if key not in state]
    if missing:
        raise ArgumentError(f"episode buffer state lacks {missing}; expected the keys of state_dict()")
    lengths = np.asarray(state["lengths"])
    if lengths.shape != (capacity,) or lengths.dtype.kind not in "iu":
        raise ArgumentError(
            f"episode buffer state 'lengths': expected {capacity} integers, received {lengths.dtype} {lengths.shape}"
        )
    if capacity and (int(lengths.min()) < 0 or int(lengths.max()) > max_seq_length):
        slot = int(np.flatnonzero((lengths < 0) | (lengths > max_seq_length))[0])
        raise ArgumentError(
            f"episode buffer state 'lengths': slot {slot} holds {int(lengths[slot])}, expected [0, {max_seq_length}]"
        )
    return lengths


def check_sample_memory(storage: TensorStorage, n: int) -> None:
    """Raise CapacityError before sampling ``n`` episodes that would not fit (rows plus decoded fields)."""
    row = storage.layout.row_bytes
    check_allocation(
        2 * n * row,
        storage.device,
        lambda: f"a sample of {n} episodes x {row} bytes (gathered and decoded)",
        "sample fewer episodes",
    )
