"""PyMARL's index parsing, item counting, safe-view check and value conversion."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["check_safe_view", "indexed_shape", "num_items", "parse_index", "to_field_tensor"]


def parse_index(items: Any) -> tuple[Any, ...]:
    """Turn a batch index or a ``(batch, time)`` pair into a tuple usable on stored tensors.

    A batch-only index gets ``slice(None)`` for time; Python ints become
    one-element slices so no dimension is dropped; everything else passes
    through unchanged.

    Raises:
        IndexError: The time index is a list (time must be contiguous).
    """
    if isinstance(items, (slice, int, list, np.ndarray)) or isinstance(items, torch.LongTensor):
        items = (items, slice(None))
    if isinstance(items[1], list):
        raise IndexError("Indexing across Time must be contiguous")
    return tuple(slice(i, i + 1) if isinstance(i, int) else i for i in items)


def indexed_shape(shape: torch.Size, index: Any) -> torch.Size | None:
    """Return ``tensor[index].shape`` for a tuple of slices without indexing, None for other indices."""
    if not isinstance(index, tuple) or len(index) > len(shape):
        return None
    dims = []
    for item, size in zip(index, shape, strict=False):
        if type(item) is not slice:
            return None
        dims.append(len(range(*item.indices(size))))
    return torch.Size((*dims, *shape[len(index) :]))


def num_items(index: Any, size: int) -> int | None:
    """Return how many entries ``index`` selects from ``size``, None when it cannot tell."""
    if isinstance(index, (list, np.ndarray)):
        return len(index)
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        return 1 + (stop - start - 1) // step
    return None


def check_safe_view(value: torch.Tensor, dest: torch.Size) -> None:
    """Raise ValueError unless ``value`` reshapes into ``dest`` by adding or dropping size-1 dims.

    The check walks both shapes from the last dimension, skipping size-1
    destination dimensions that do not match.
    """
    cursor = len(value.shape) - 1
    for size in reversed(dest):
        if value.shape[cursor] != size:
            if size != 1:
                raise ValueError(f"Unsafe reshape of {value.shape} to {dest}")
        else:
            cursor -= 1


def to_field_tensor(value: Any, dtype: Any, device: Any) -> torch.Tensor:
    """Copy ``value`` into a new tensor of ``dtype`` on ``device``, as ``torch.tensor`` does."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=dtype, copy=True)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        floating = dtype.is_floating_point if isinstance(dtype, torch.dtype) else dtype is float
        if floating:
            try:  # float targets: stacking first converts exactly as torch.tensor(list) does, without its warning
                return torch.from_numpy(np.array(value)).to(device=device, dtype=dtype)
            except (ValueError, TypeError):
                pass  # ragged or odd lists: let torch.tensor raise (or accept) exactly as PyMARL sees it
    elif not isinstance(value, list) or not value or not isinstance(value[0], list):
        return torch.tensor(value, dtype=dtype, device=device)
    with warnings.catch_warnings():
        # PyMARL's runners pass lists of ndarrays; torch warns that this is slow, and the
        # conversion must stay torch.tensor's (it decides which values raise and which wrap).
        warnings.filterwarnings("ignore", message="Creating a tensor from a list of numpy.ndarrays")
        return torch.tensor(value, dtype=dtype, device=device)
