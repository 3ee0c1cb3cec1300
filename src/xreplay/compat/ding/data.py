"""``BufferedData`` (what a DI-engine buffer stores and returns) and ``fastcopy``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay.compat.ding.indices import spell

__all__ = ["BufferedData", "fastcopy", "make_record"]


class _Literal:
    """Wraps an ``int`` assigned to ``index`` by a user, so it is not taken for a compact index code."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


@dataclasses.dataclass(eq=True, repr=True)
class BufferedData:
    """One stored record: the payload, its unique index string and its meta dict.

    A mutable dataclass compared field by field (no hash); samples are the
    stored objects themselves, so mutating a sample's ``data`` or ``meta``
    mutates the buffer (use ``clone_object`` to get copies). It has slots
    instead of an instance ``__dict__``, so attributes other than the three
    fields cannot be added. A record made by a buffer keeps its index as a
    compact integer code and spells the 32-character string out each time
    ``index`` is read (see :mod:`xreplay.compat.ding.indices`); pickles and
    copies always carry the string.

    Example:
        >>> BufferedData(data=1, index="a", meta={}) == BufferedData(1, "a", {})
        True

    """

    __slots__ = ("data", "_code", "meta", "__weakref__")

    data: Any
    index: str
    meta: dict

    def __reduce__(self) -> tuple:
        """Pickle as ``BufferedData(data, index, meta)`` with the index spelled out."""
        return (type(self), (self.data, self.index, self.meta))

    def __setstate__(self, state: Any) -> None:
        """Restore a pickle written by earlier xreplay versions (a ``[data, index, meta]`` list)."""
        self.data, index, self.meta = state
        _set_index(self, index)


def _get_index(record: BufferedData) -> Any:
    """Return the record's index: a compact code spelled out, or the object assigned."""
    code = record._code  # type: ignore[attr-defined]
    if code.__class__ is int:
        return spell(code)
    if code.__class__ is _Literal:
        return code.value
    return code


def _set_index(record: BufferedData, value: Any) -> None:
    """Store an assigned index as given (an ``int`` wrapped, so it stays an ``int`` when read)."""
    record._code = _Literal(value) if value.__class__ is int else value  # type: ignore[attr-defined]


BufferedData.index = property(_get_index, _set_index, doc="The record's unique index string.")  # type: ignore[assignment]
_new_record = object.__new__


def make_record(data: Any, code: Any, meta: Any) -> BufferedData:
    """Return a ``BufferedData`` whose index is the compact ``code`` (or a string), without ``__init__``."""
    record = _new_record(BufferedData)
    record.data = data
    record._code = code  # type: ignore[attr-defined]
    record.meta = meta
    return record


def _copy_list(x: list) -> list:
    return [_copy_one(e) for e in x]


def _copy_dict(x: dict) -> dict:
    return {k: _copy_one(v) for k, v in x.items()}


def _copy_buffered(x: BufferedData) -> BufferedData:
    return make_record(_copy_one(x.data), x._code, _copy_one(x.meta))  # type: ignore[attr-defined]


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
