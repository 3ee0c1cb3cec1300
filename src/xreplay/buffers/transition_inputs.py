"""What a transition write goes through before its copy: flattened fields, next observations split off."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.next_obs import NextObsStore
from xreplay.buffers.next_obs_checks import check_next_values
from xreplay.errors import UnknownFieldError
from xreplay.storage.columns import ColumnStorage
from xreplay.storage.nested import SEPARATOR, flatten
from xreplay.storage.resources import CHECK_ABOVE, check_allocation

__all__ = ["OneItem", "flat_fields", "host_array", "check_sample_memory", "split_next", "validate_write"]


class OneItem(Mapping[str, Any]):
    """The values of one unbatched write, seen as a batch of one (read lazily by samplers that need fields)."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = values

    def __getitem__(self, name: str) -> Any:
        return self._values[name][None]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


LEAVES = (np.ndarray, torch.Tensor, float, int, np.generic)


def host_array(value: Any) -> np.ndarray:
    """Return ``value`` (array or tensor) as a numpy array on the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def flat_fields(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``data`` flattened when it holds nested mappings."""
    for value in data.values():  # a numpy array (the common case) is a leaf without the isinstance checks
        if type(value) is not np.ndarray and not isinstance(value, LEAVES) and isinstance(value, Mapping):
            return flatten(data)
    return data


def split_next(
    flat: Mapping[str, Any],
    next_obs: str,
    next_obs_from: str | None,
    store: NextObsStore | None,
    capacity: int,
    streams: bool,
) -> tuple[Mapping[str, Any], dict[str, Any] | None, NextObsStore | None]:
    """Return ``flat`` without the next-observation fields, those fields and their store (None, None without).

    On the first write the store is a new one, which the caller adopts once the whole write is checked.
    """
    if next_obs_from is None:
        return flat, None, None
    prefix = next_obs + SEPARATOR
    nxt = {k: v for k, v in flat.items() if k == next_obs or k.startswith(prefix)}
    if store is None:
        if not nxt:
            raise UnknownFieldError(
                f"next_obs_from={next_obs_from!r} needs a field {next_obs!r}; the write has {list(flat)}"
            )
        pairs = [(k, next_obs_from + k[len(next_obs) :]) for k in nxt]
        missing = [o for _k, o in pairs if o not in flat]
        if missing:
            raise UnknownFieldError(
                f"fields {missing} are missing: next-observation fields {list(nxt)} are stored as them"
            )
        store = NextObsStore(capacity, pairs, streams=streams)
    return {k: v for k, v in flat.items() if k not in nxt}, nxt, store


def validate_write(
    storage: ColumnStorage,
    data: Mapping[str, Any],
    batched: bool,
    next_obs: tuple[str, str | None, NextObsStore | None],
    stream: str | None,
) -> tuple[dict[str, np.ndarray | torch.Tensor], dict[str, np.ndarray] | None, np.ndarray | None, NextObsStore | None]:
    """Check a whole write, then (on the first write only) allocate the columns and the next-observation store.

    ``next_obs`` is the buffer's ``(next_obs, next_obs_from, store)``. Returns the values, the next
    observations (None without ``next_obs_from``), the stream ids (None without ``stream``) and the
    store to keep. Nothing changes unless every check passes.
    """
    name, source, store = next_obs
    flat, nxt, store = split_next(flat_fields(data), name, source, store, storage.capacity, stream is not None)
    ids = None
    values, specs = storage.validate(flat, batched)
    if nxt is not None:
        assert store is not None
        n = int(next(iter(values.values())).shape[0]) if batched and values else 1
        nxt = check_next_values(store, nxt, specs or storage.specs, batched, n)
        if stream is not None:
            if stream not in values:
                raise UnknownFieldError(f"stream={stream!r} needs a field {stream!r} in every write")
            ids = store.check_streams(stream, values[stream], n)
    if specs is not None:
        storage.allocate(specs)
    return values, nxt, ids, store


def check_sample_memory(storage: ColumnStorage, n: int, steps: int) -> None:
    """Refuse a sample of ``n`` items (of ``steps`` steps each) that would not fit in the memory this process may use.

    Raises:
        CapacityError: It would not fit.
    """
    # Indices, generations, weights and masses (about 40 bytes), the gathered rows and their per-field copies.
    row = storage.row_bytes()
    if n * steps * (2 * row + 40) > CHECK_ABOVE:
        items = f"{n} sequences x {steps} steps" if steps > 1 else f"{n} transitions"
        what = f"a sample of {items} x {row} bytes"
        check_allocation(n * steps * (2 * row + 40), storage.device, what, "sample fewer transitions")
