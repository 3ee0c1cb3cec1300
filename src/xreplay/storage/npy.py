"""Standard ``.npy`` headers for files whose data starts at a page boundary, and the record dtype of a row layout.

numpy's ``.npy`` format is a header (magic, version, a Python-literal dict naming
``descr``, ``fortran_order`` and ``shape``, padded with spaces and a newline)
followed by the raw C-order bytes. :func:`npy_header` pads the header to a
multiple of :data:`DATA_ALIGN` bytes, so the data starts at a page boundary and
a file can be memory-mapped at the data without copying, by numpy
(``numpy.load(path, mmap_mode="r")``) and by xreplay alike. :func:`record_dtype`
describes one packed episode row of a :class:`~xreplay.storage.layout.RowLayout`
as a numpy structured dtype, so ``numpy.load(rows_file)["obs"]`` is field
``obs`` of every slot.

Example:
    >>> import torch
    >>> from xreplay.scheme import Field, Scheme
    >>> layout = RowLayout(Scheme({"obs": Field((3,)), "won": Field((1,), per_step=False)}), max_seq_length=2)
    >>> record_dtype(layout).descr
    [('obs', '<f4', (2, 3)), ('won', '<f4', (1,)), ('', '|V4')]
    >>> len(npy_header(record_dtype(layout), (8,)))
    4096
"""

from __future__ import annotations

import functools
import struct
from typing import Any

import numpy as np

from xreplay.storage.dtypes import numpy_dtype
from xreplay.storage.layout import Column, RowLayout

__all__ = ["DATA_ALIGN", "MAGIC", "npy_header", "record_dtype"]

DATA_ALIGN = 4096
"""Headers are padded to a multiple of this many bytes (a memory page), so the data starts page-aligned."""

MAGIC = b"\x93NUMPY"
"""The first bytes of every ``.npy`` file."""

_RAW_16_BIT = np.dtype("<u2")  # numpy has no bfloat16: such columns appear as their raw 16-bit patterns


def record_dtype(layout: RowLayout) -> np.dtype:
    """Return the numpy structured dtype of one row of ``layout``: every column at its offset, itemsize ``row_bytes``.

    In a ``"field"`` row each field has the column's stored dtype and shape (``[max_seq_length,
    *item]`` for per-step fields, ``[*item]`` for per-episode ones). A ``"step"`` row has two
    fields: ``steps``, ``max_seq_length`` records of one step (a field ``[*item]`` per per-step
    field, itemsize :attr:`~xreplay.storage.layout.RowLayout.step_bytes`), and ``episode``, one
    record of the per-episode fields (each field absent when it would be empty). One-hot (derived)
    columns hold class indices, with the encoding's ``absent`` marker for an all-zero row; bfloat16
    columns appear as uint16 bit patterns.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> scheme = Scheme({"obs": Field((3,)), "won": Field((1,), per_step=False)})
        >>> rows = np.zeros(4, record_dtype(RowLayout(scheme, max_seq_length=2, order="step")))
        >>> rows["steps"]["obs"].shape, rows["episode"]["won"].shape
        ((4, 2, 3), (4, 1))
    """
    if layout.order == "field":
        return _struct(layout, layout.columns, layout.row_bytes)
    per_step = {n: c for n, c in layout.columns.items() if layout.scheme[n].per_step}
    per_episode = {n: c for n, c in layout.columns.items() if not layout.scheme[n].per_step}
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    if per_step:
        names.append("steps")
        formats.append((_struct(layout, per_step, layout.step_bytes), (layout.max_seq_length,)))
        offsets.append(0)
    if per_episode:
        first = min(c.offset for c in per_episode.values())
        size = max(c.offset + c.nbytes for c in per_episode.values()) - first
        names.append("episode")
        formats.append(_struct(layout, per_episode, size, first))
        offsets.append(first)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": layout.row_bytes})


def _struct(layout: RowLayout, columns: dict[str, Column], itemsize: int, start: int = 0) -> np.dtype:
    """Return the structured dtype of ``columns`` at their offsets past ``start`` (each field its item per step)."""
    names, formats, offsets = [], [], []
    for name, column in columns.items():
        base = numpy_dtype(column.dtype) or _RAW_16_BIT
        shape = column.shape[1:] if layout.order == "step" and layout.scheme[name].per_step else column.shape
        names.append(name)
        formats.append((base, shape) if shape else base)
        offsets.append(column.offset - start)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


def _descr(dtype: np.dtype) -> str:
    """Return the header's ``descr`` text of ``dtype``, spelled by xreplay (the same bytes under any numpy).

    A plain dtype is its ``str`` (``'<f4'``); a record is numpy's list form: one ``(name, type[, shape])``
    per field in offset order, and ``('', '|V<n>')`` for each gap and for trailing padding; a field that
    is itself a record has its own list as its type.
    """
    if dtype.fields is None:
        return repr(dtype.str)
    return _fields(dtype)


def _fields(dtype: np.dtype) -> str:
    """Return the list form of the record ``dtype`` (see :func:`_descr`)."""
    parts, position = [], 0
    assert dtype.fields is not None
    for name, (field, offset, *_title) in sorted(dtype.fields.items(), key=lambda item: item[1][1]):
        if offset > position:  # alignment padding before this field
            parts.append(repr(("", f"|V{offset - position}")))
        base, shape = field.subdtype if field.subdtype is not None else (field, ())
        kind = _fields(base) if base.fields is not None else repr(base.str)
        dims = ", " + repr(tuple(int(d) for d in shape)) if shape else ""
        parts.append(f"({name!r}, {kind}{dims})")
        position = offset + field.itemsize
    if dtype.itemsize > position:  # padding at the end of the record
        parts.append(repr(("", f"|V{dtype.itemsize - position}")))
    return "[" + ", ".join(parts) + "]"


@functools.lru_cache(maxsize=256)  # a pure function of its arguments; loads ask for the same headers again
def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """Return the ``.npy`` header of a C-order array of ``dtype`` and ``shape``, padded to :data:`DATA_ALIGN` bytes.

    Format version 1.0 (what numpy writes) when the header fits its 2-byte length, else 2.0;
    3.0 (UTF-8) when a field name is not Latin-1. The text depends on ``dtype`` and ``shape`` only
    (not on the numpy version), so a load can compare a file's header byte for byte.
    """
    text = "{'descr': %s, 'fortran_order': False, 'shape': %r, }" % (  # noqa: UP031
        _descr(np.dtype(dtype)),
        tuple(int(d) for d in shape),
    )
    try:
        body, version = text.encode("latin1"), 1
    except UnicodeEncodeError:
        body, version = text.encode("utf-8"), 3
    prefix = 10 if version == 1 else 12  # magic (6), version (2), header length (2, or 4 from version 2.0)
    total = -(-(prefix + len(body) + 1) // DATA_ALIGN) * DATA_ALIGN  # round up to whole pages, newline included
    if version == 1 and total - prefix > 0xFFFF:
        version, prefix = 2, 12
        total = -(-(prefix + len(body) + 1) // DATA_ALIGN) * DATA_ALIGN
    length = struct.pack("<H" if version == 1 else "<I", total - prefix)
    return MAGIC + bytes([version, 0]) + length + body + b" " * (total - prefix - len(body) - 1) + b"\n"
