"""Row layout: every field of one episode packed into one aligned byte row.

Storing an episode as one contiguous row makes a write one copy per field
into a single row and a sample one gather of whole rows; each field is a
typed, strided view into the rows. Offsets are 8-byte aligned so every view
can be reinterpreted as its storage dtype.

A row comes in one of two orders (:data:`ROW_ORDERS`):

* ``"field"`` (the default): each field's steps together, ``[field 1: T steps][field 2: T steps]...``,
  per-episode fields in scheme order among them. A field of an episode is one byte range: whole
  episodes and sequences read fast.
* ``"step"``: each step's fields together, ``[step 0: every per-step field][step 1: ...]...``, then
  the per-episode fields. Each step is a multiple of 8 bytes and each field sits at its natural
  alignment inside it, so one transition (a step and the next step's observation) is one byte
  range: transition samples of episode storage (hindsight relabelling) read fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import torch

from xreplay.errors import ArgumentError
from xreplay.scheme import AUTO, Scheme

__all__ = ["ROW_ORDERS", "Column", "RowLayout"]

ROW_ORDERS = ("field", "step")
"""The orders a row can hold its fields in (see the module docstring)."""

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
    step_stride: int = 0
    """Bytes from one step of a per-step column to the next (0 for per-episode columns)."""


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
        order: ``"field"`` or ``"step"`` (see :data:`ROW_ORDERS` and the module docstring).

    Raises:
        ArgumentError: ``order`` is not one of :data:`ROW_ORDERS`.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> scheme = Scheme({"obs": Field((3,)), "done": Field((), torch.bool)})
        >>> [(c.offset, c.step_stride) for c in RowLayout(scheme, 4).columns.values()]
        [(0, 12), (48, 1)]
        >>> layout = RowLayout(scheme, 4, order="step")
        >>> [(c.offset, c.step_stride) for c in layout.columns.values()], layout.step_bytes
        ([(0, 16), (12, 16)], 16)
    """

    def __init__(
        self,
        scheme: Scheme,
        max_seq_length: int,
        dtypes: Mapping[str, torch.dtype] | None = None,
        order: str = "field",
    ):
        """Compute column offsets for ``scheme``."""
        if order not in ROW_ORDERS:
            raise ArgumentError(f"row order must be one of {ROW_ORDERS}, received {order!r}")
        self.scheme = scheme
        self.max_seq_length = int(max_seq_length)
        self.overrides: dict[str, torch.dtype] = dict(dtypes or {})
        self.order = order
        specs = {name: self._spec(name) for name in scheme}
        self.step_bytes = 0
        """Bytes of one step's per-step fields in a ``"step"`` row (0 in a ``"field"`` row)."""
        if order == "field":
            self.columns, offset = self._field_major(specs)
        else:
            self.columns, offset = self._step_major(specs)
        self.row_bytes = max(offset, _ALIGN)
        self._recipes = {name: self._recipe(col) for name, col in self.columns.items()}

    def _spec(self, name: str) -> tuple[torch.dtype, tuple[int, ...], bool, bool]:
        """Return (storage dtype, item shape, mask, auto) of column ``name``."""
        field = self.scheme[name]
        auto = field.storage_dtype == AUTO
        if field.derived is not None and name not in self.overrides:
            # Class indices shaped like the source; OneHot.absent marks an all-zero row.
            return field.derived.index_dtype(), self.scheme.item_shape(field.derived.source), True, auto
        return self.overrides.get(name) or self._initial_dtype(name), self.scheme.item_shape(name), False, auto

    def _field_major(self, specs: Mapping[str, tuple]) -> tuple[dict[str, Column], int]:
        """Return the columns of a ``"field"`` row (each field's steps together) and the bytes they take."""
        columns: dict[str, Column] = {}
        offset = 0
        for name, (dtype, item, mask, auto) in specs.items():
            per_step = self.scheme[name].per_step
            shape = (self.max_seq_length, *item) if per_step else item
            size = _element_size(dtype)
            nbytes = math.prod(shape) * size
            stride = math.prod(item) * size if per_step else 0
            columns[name] = Column(name, dtype, shape, offset, nbytes, mask, auto, stride)
            offset += -(-nbytes // _ALIGN) * _ALIGN
        return columns, offset

    def _step_major(self, specs: Mapping[str, tuple]) -> tuple[dict[str, Column], int]:
        """Return the columns of a ``"step"`` row (each step's fields together) and the bytes they take."""
        unit = max([_ALIGN, *(_element_size(spec[0]) for spec in specs.values())])  # every view's element divides it
        inner: dict[str, int] = {}
        position = 0
        for name, (dtype, item, _mask, _auto) in specs.items():  # per-step fields inside one step
            if self.scheme[name].per_step:
                size = _element_size(dtype)
                position = -(-position // size) * size  # natural alignment of the field
                inner[name] = position
                position += math.prod(item) * size
        step = self.step_bytes = -(-position // unit) * unit
        offset = step * self.max_seq_length  # per-episode fields after the last step
        columns: dict[str, Column] = {}
        for name, (dtype, item, mask, auto) in specs.items():
            size = _element_size(dtype)
            if name in inner:
                shape = (self.max_seq_length, *item)
                columns[name] = Column(name, dtype, shape, inner[name], math.prod(shape) * size, mask, auto, step)
        for name, (dtype, item, mask, auto) in specs.items():
            if name not in inner:
                offset = -(-offset // unit) * unit
                nbytes = math.prod(item) * _element_size(dtype)
                columns[name] = Column(name, dtype, item, offset, nbytes, mask, auto, 0)
                offset += nbytes
        return {name: columns[name] for name in specs}, -(-offset // unit) * unit

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
        return RowLayout(self.scheme, self.max_seq_length, {**self.overrides, name: dtype}, self.order)

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
        per_step = self.scheme[col.name].per_step
        item = col.shape[1:] if per_step else col.shape
        strides: list[int] = []
        inner = 1
        for dim in reversed(item):  # each item is C-contiguous inside the row
            strides.insert(0, inner)
            inner *= dim
        if per_step:
            strides.insert(0, col.step_stride // size)  # from one step to the next
        strides.insert(0, self.row_bytes // size)  # one row per episode
        return col.dtype, col.shape, tuple(strides), col.offset // size
