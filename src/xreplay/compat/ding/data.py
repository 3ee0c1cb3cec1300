"""``BufferedData`` (what a DI-engine buffer stores and returns) and ``fastcopy``."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["BufferedData", "fastcopy"]

# Slots, and a weakref slot where dataclasses can add one (Python >= 3.11), as a plain dataclass allows weakrefs.
_SLOTS: dict = {"slots": True, "weakref_slot": True} if sys.version_info >= (3, 11) else {"slots": True}


@dataclasses.dataclass(**_SLOTS)
class BufferedData:
    """One stored record: the payload, its unique index string and its meta dict.

    A mutable dataclass compared field by field (no hash); samples are the
    stored objects themselves, so mutating a sample's ``data`` or ``meta``
    mutates the buffer (use ``clone_object`` to get copies). It has slots
    instead of an instance ``__dict__`` (40 bytes less per stored record), so
    attributes other than the three fields cannot be added.

    Example:
        >>> BufferedData(data=1, index="a", meta={}) == BufferedData(1, "a", {})
        True

    """

    data: Any
    index: str
    meta: dict


def _copy_list(x: list) -> list:
    return [_copy_one(e) for e in x]


def _copy_dict(x: dict) -> dict:
    return {k: _copy_one(v) for k, v in x.items()}


def _copy_buffered(x: BufferedData) -> BufferedData:
    return BufferedData(_copy_one(x.data), x.index, _copy_one(x.meta))


_COPIERS: dict[type, Callable[[Any], Any]] = {
    list: _copy_list,
    dict: _copy_dict,
    torch.Tensor: lambda x: x.clone(),
    np.ndarray: np.copy,
    BufferedData: _copy_buffered,
}


def _copy_one(x: Any) -> Any:
    copier = _COPIERS.get(type(x))
    return x if copier is None else copier(x)


def fastcopy(x: Any) -> Any:
    """Return a cheap deep copy that descends only into exact ``list``/``dict``/tensor/array/``BufferedData``.

    Dispatch is on the exact type: tuples, dict subclasses, tensor
    subclasses, user classes and scalars are returned as the same object.

    Args:
        x: The object to copy.

    Returns:
        The copy (or ``x`` itself for types that are not copied).

    """
    return _copy_one(x)
