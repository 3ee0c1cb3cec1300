"""What a transition write goes through before its copy: flattened fields, next observations split off."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.next_obs import NextObsStore
from xreplay.errors import UnknownFieldError
from xreplay.storage.nested import SEPARATOR, flatten

__all__ = ["OneItem", "flat_fields", "host_array", "split_next"]


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
    for value in data.values():
        if not isinstance(value, LEAVES) and isinstance(value, Mapping):
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
