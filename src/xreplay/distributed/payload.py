"""What a client's writes carry: a user's batch (arrays, tensors, nested mappings) as numpy arrays.

Only numpy arrays cross to a shard (Ray's object store maps them without copying); tensors
become arrays here, on the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["batch_rows", "to_numpy", "with_batch_dim"]


def to_numpy(data: Any) -> Any:
    """Return ``data`` with every tensor leaf (nested mappings allowed) as a numpy array."""
    if isinstance(data, Mapping):
        return {key: to_numpy(value) for key, value in data.items()}
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    return np.asarray(data)


def batch_rows(data: Mapping[str, Any]) -> int:
    """Return the leading dimension of the first leaf of a batch."""
    for value in data.values():
        return batch_rows(value) if isinstance(value, Mapping) else int(np.shape(value)[0]) if np.ndim(value) else 1
    return 0


def with_batch_dim(value: Any) -> Any:
    """Return a single transition's value with a batch dimension of 1."""
    if isinstance(value, Mapping):
        return {k: with_batch_dim(v) for k, v in value.items()}
    return value[None] if isinstance(value, torch.Tensor) else np.asarray(value)[None]
