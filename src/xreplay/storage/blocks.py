"""Block: the CPU fields of one dtype side by side in the rows of one array, and their gather.

A gather of ``n`` rows takes each block's rows once (a few adjacent cache lines
per row instead of one or two per field), then copies every field out of them
into its own contiguous ``[n, *shape]`` array: with numba by one kernel call
(:mod:`xreplay.storage._gather_numba`), else by numpy, one copy per field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from xreplay.accel import kernels

__all__ = ["Block", "make_block"]


@dataclasses.dataclass(frozen=True)
class Block:
    """CPU fields of one dtype stored side by side in the rows of one ``[capacity, width]`` array."""

    array: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    spans: tuple[tuple[int, int], ...]  # (first column, columns) of each field
    record: np.dtype | None  # a row as one opaque (void) item per field, None if a field is empty
    fields: np.ndarray  # ``spans`` as an int64 ``[k, 2]`` array (the split kernel's layout)
    word: np.dtype  # the unsigned integer dtype of the items' size (the split kernel copies words)

    def gather(self, indices: np.ndarray, names: Collection[str] | None, out: dict[str, torch.Tensor]) -> None:
        """Put into ``out`` this block's fields (those in ``names``, all when None) at rows ``indices``.

        With numba and every field wanted, the fields share one new allocation, side by side (never
        overlapping); otherwise each field is its own array.
        """
        rows = self.array.take(indices, axis=0)  # [n, width]: a few adjacent cache lines per row
        n = rows.shape[0]
        if len(self.names) == 1:
            out[self.names[0]] = torch.from_numpy(rows.reshape(n, *self.shapes[0]))
            return
        split = _split_kernel() if names is None and rows.dtype.itemsize in (1, 2, 4, 8) else None
        if split is not None:  # one kernel call copies every field out of the rows, field after field
            parts = np.empty(rows.size, dtype=rows.dtype)
            split(rows.view(self.word), self.fields, parts.view(self.word))
            for name, shape, (start, width) in zip(self.names, self.shapes, self.spans, strict=True):
                out[name] = torch.from_numpy(parts[n * start : n * (start + width)].reshape(n, *shape))
            return
        items = None if self.record is None else rows.view(self.record).reshape(n)  # [n] rows of items
        for name, shape, (start, width) in zip(self.names, self.shapes, self.spans, strict=True):
            if names is None or name in names:
                if items is None:
                    part = np.ascontiguousarray(rows[:, start : start + width])
                else:  # one pass over whole items, then seen as the field's dtype again
                    part = np.ascontiguousarray(items[name]).view(rows.dtype)
                out[name] = torch.from_numpy(part.reshape(n, *shape))


def make_block(array: np.ndarray, names: list[str], shapes: list[tuple[int, ...]], widths: list[int]) -> Block:
    """Return the block of ``array`` ([capacity, sum(widths)]) holding fields ``names`` in that order."""
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64).tolist()
    spans = tuple(zip(starts, widths, strict=True))
    fields = np.array(spans, dtype=np.int64).reshape(-1, 2)
    record = _record(array.dtype, names, starts, widths)
    word = np.dtype(f"u{array.dtype.itemsize}") if array.dtype.itemsize in (1, 2, 4, 8) else array.dtype
    return Block(array, tuple(names), tuple(shapes), spans, record, fields, word)


def _record(dtype: np.dtype, names: list[str], starts: list[int], widths: list[int]) -> np.dtype | None:
    """Return the dtype that views a block's row as one opaque item per field (None when a field has no columns).

    A field of gathered rows seen through it is a 1-D array of whole items, which numpy copies to a
    contiguous array in one pass (a ``[n, width]`` column slice is copied one short row at a time).
    """
    if not all(widths):
        return None
    size = dtype.itemsize
    formats = [np.dtype((np.void, size * width)) for width in widths]
    offsets = [size * start for start in starts]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size * sum(widths)})


def _split_kernel() -> Any:
    """Return the numba kernel that splits gathered rows into fields, or None (then numpy copies each field)."""
    module = kernels("xreplay.storage._gather_numba", "numpy")
    return None if module is None else module.split_fields
