"""Numba kernel of :meth:`xreplay.storage.columns.ColumnStorage.gather` (optional accelerator).

After one ``take`` of a block's drawn rows (``[n, width]``, numpy's copy of whole rows overlaps their
cache misses), one call of :func:`split_fields` copies each field's columns out of them, field after
field, into one array: the numpy code does the same in one copy per field. The bytes are the same.

Importing this module imports numba and compiles the kernel (explicit signatures, cached on disk).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["split_fields"]

_WORDS = ("uint8", "uint16", "uint32", "uint64")  # a block's items seen as unsigned words of their size


@numba.njit([f"void({w}[:, ::1], int64[:, ::1], {w}[::1])" for w in _WORDS], cache=True, nogil=True)
def split_fields(rows: np.ndarray, fields: np.ndarray, out: np.ndarray) -> None:
    """Copy the columns ``[start, start + width)`` of ``rows`` for each ``(start, width)`` of ``fields`` into ``out``.

    Field ``f`` lands at ``out[n * s_f : n * (s_f + width_f)]`` as ``[n, width_f]`` (``s_f``: the widths of the
    fields before it), ``n`` the rows. Raises IndexError, writing nothing, if a field lies outside a row or
    ``out`` is too short.
    """
    n, width = rows.shape[0], rows.shape[1]
    total = 0
    for f in range(fields.shape[0]):  # every read and write in bounds (a wrong layout would corrupt memory)
        if fields[f, 0] < 0 or fields[f, 1] < 0 or fields[f, 0] + fields[f, 1] > width:
            raise IndexError("a field's columns lie outside the rows")
        total += fields[f, 1]
    if n * total > out.shape[0]:
        raise IndexError("the output is shorter than the fields' rows")
    src = rows.reshape(-1)
    un, uwidth = np.uint64(n), np.uint64(width)
    dest = np.uint64(0)
    for f in range(fields.shape[0]):  # unsigned positions (all >= 0): a tight copy loop, no negative-index wrap
        start, w = np.uint64(fields[f, 0]), np.uint64(fields[f, 1])
        for i in range(un):
            a, b = i * uwidth + start, dest + i * w
            for j in range(w):
                out[b + j] = src[a + j]
        dest += un * w
