"""Row layout: every field of one episode packed into one aligned byte row.

Storing an episode as one contiguous row makes a write one copy per field
into a single row and a sample one gather of whole rows; each field is a
typed, strided view into the rows. Offsets are 8-byte aligned so every view
can be reinterpreted as its storage dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import torch

from xreplay.scheme import AUTO, Scheme

__all__ = ["Column", "RowLayout"]

_ALIGN = 8


@dataclasses.dataclass(frozen=True)
class Column:
    """Where one field lives inside a row, and how it is stored.

    ``mask`` columns belong to derived fields: they hold, shaped like the
    source, the class index of each encoded row (or the derivation's
    ``absent`` marker for an all-zero row); the encoding itself is computed at
    read time.
    """

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int
    mask: bool = False
    auto: bool = False


def _element_size(dtype: torch.dtype) -> int:
    """Return the byte size of one element of ``dtype``."""
    return dtype.itemsize


class RowLayout:
    """The columns of a scheme packed into an aligned byte row.

    Args:
        scheme: The fields to lay out.
        max_seq_length: Steps per episode for per-step fields.
        dtypes: Storage dtypes that override the scheme's (used when an
            ``"auto"`` column widens or a derived column is materialised).
    """

    def __init__(
        self,
        scheme: Scheme,
        max_seq_length: int,
        dtypes: Mapping[str, torch.dtype] | None = None,
    ):
        """Compute column offsets for ``scheme``."""
        self.scheme = scheme
        self.max_seq_length = int(max_seq_length)
        self.overrides: dict[str, torch.dtype] = dict(dtypes or {})
        self.columns: dict[str, Column] = {}
        offset = 0
        for name, field in scheme.items():
            steps = (self.max_seq_length,) if field.per_step else ()
            derived = field.derived is not None and name not in self.overrides
            auto = field.storage_dtype == AUTO
            if derived:
                # Class indices shaped like the source; OneHot.absent marks an all-zero row.
                assert field.derived is not None
                dtype = field.derived.index_dtype()
                shape = (*steps, *scheme.item_shape(field.derived.source))
            else:
                dtype = self.overrides.get(name) or self._initial_dtype(name)
                shape = (*steps, *scheme.item_shape(name))
            nbytes = math.prod(shape) * _element_size(dtype)
            self.columns[name] = Column(name, dtype, shape, offset, nbytes, derived, auto)
            offset += -(-nbytes // _ALIGN) * _ALIGN
        self.row_bytes = max(offset, _ALIGN)
        self._recipes = {name: self._recipe(col) for name, col in self.columns.items()}

    def _initial_dtype(self, name: str) -> torch.dtype:
        """Return the storage dtype a column starts with."""
        field = self.scheme[name]
        if field.storage_dtype is None:
            return field.dtype
        if field.storage_dtype == AUTO:
            return torch.bool
        assert isinstance(field.storage_dtype, torch.dtype)
        return field.storage_dtype

    def with_dtype(self, name: str, dtype: torch.dtype) -> RowLayout:
        """Return a layout where column ``name`` is stored as ``dtype`` (widened or materialised)."""
        return RowLayout(self.scheme, self.max_seq_length, {**self.overrides, name: dtype})

    def view(self, rows: torch.Tensor, name: str) -> torch.Tensor:
        """Return column ``name`` of ``rows`` (uint8 ``[n, row_bytes]``) as a typed view."""
        return self.views(rows, (name,))[name]

    def views(self, rows: torch.Tensor, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Return columns of ``rows`` as typed strided views (all of them by default), in scheme order.

        One reinterpreting view per distinct dtype, then one ``as_strided`` per column.
        """
        n = rows.shape[0]
        typed: dict[torch.dtype, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for name in self.columns if names is None else names:
            dtype, shape, strides, offset = self._recipes[name]
            base = typed.get(dtype)
            if base is None:
                base = typed[dtype] = rows.view(dtype)
            out[name] = base.as_strided((n, *shape), strides, base.storage_offset() + offset)
        return out

    def _recipe(self, col: Column) -> tuple[torch.dtype, tuple[int, ...], tuple[int, ...], int]:
        """Return (dtype, shape, strides, element offset) of a column's view into rows."""
        size = _element_size(col.dtype)
        strides = [self.row_bytes // size]  # one row per episode
        inner = 1
        for dim in reversed(col.shape):  # the column itself is C-contiguous inside the row
            strides.insert(1, inner)
            inner *= dim
        return col.dtype, col.shape, tuple(strides), col.offset // size
