"""What a transition read goes through: the checks of a user's indices and names, and the gather itself."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from xreplay.buffers.next_obs import NextObsStore
from xreplay.buffers.validation import as_slots
from xreplay.errors import ArgumentError
from xreplay.storage.columns import ColumnStorage
from xreplay.storage.resources import CHECK_ABOVE, check_allocation

__all__ = ["check_gather", "gather_fields"]


def check_gather(
    indices: Any, names: Collection[str] | None, storage: ColumnStorage, derived: tuple[str, ...]
) -> np.ndarray:
    """Return ``indices`` as int64 slots once they, ``names`` and the gather's memory are checked.

    Raises:
        ArgumentError: An index is not an integer, or ``names`` holds an unknown field.
        IndexOutOfRangeError: An index is outside ``[0, capacity)``.
        CapacityError: The gather would not fit in the memory this process may use.
    """
    host = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
    if host.dtype != np.int64 or host.size == 0 or not host.view(np.uint64).max() < storage.capacity:
        shape = host.shape
        host = as_slots(host, storage.capacity, "transition index", "slots").reshape(shape)
    row = storage.row_bytes()
    if host.size * 2 * row > CHECK_ABOVE:
        what = f"a gather of {host.size} transitions x {row} bytes"
        check_allocation(host.size * 2 * row, storage.device, what, "gather fewer transitions")
    if names is not None:
        known = set(storage.specs) | set(derived)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ArgumentError(f"unknown fields {unknown}; this buffer stores {sorted(known)}")
    return host


def gather_fields(
    storage: ColumnStorage, store: NextObsStore | None, indices: np.ndarray, names: Collection[str] | None = None
) -> dict[str, torch.Tensor]:
    """Return the fields (or ``names``) of checked slots ``indices``, next observations read from ``store``."""
    derived = () if store is None else tuple(name for name, _obs in store.pairs)
    if names is None:
        fields = storage.gather(indices)
        if store is not None:
            fields.update(store.read(storage, indices))
        return fields
    stored = [name for name in names if name not in derived]
    fields = storage.gather(indices, stored) if stored else {}
    if store is not None and any(name in derived for name in names):
        fields.update(store.read(storage, indices))
    return {name: fields[name] for name in names}
