"""Block: the CPU fields of one dtype side by side in the rows of one array, and their gather.

A gather of ``n`` rows takes each block's rows once (a few adjacent cache lines
per row instead of one or two per field), then copies every field out of them
into its own contiguous ``[n, *shape]`` array, one pass over whole items per field
(a kernel that split them into one shared allocation was 1.3 us faster at 256 rows
of S2, but a kept field then held every other field's memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np
import torch

__all__ = ["Block", "make_block"]


@dataclasses.dataclass(frozen=True)
class Block:
    """CPU fields of one dtype stored side by side in the rows of one ``[capacity, width]`` array."""

    array: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    spans: tuple[tuple[int, int], ...]  # (first column, columns) of each field
    record: np.dtype | None  # a row as one opaque (void) item per field, None if a field is empty

    def gather(self, indices: np.ndarray, names: Collection[str] | None, out: dict[str, torch.Tensor]) -> None:
        """Put into ``out`` this block's fields (those in ``names``, all when None) at rows ``indices``.

        Each field is its own new array: a field a caller keeps holds no other field's memory.
        """
        rows = self.array.take(indices, axis=0)  # [n, width]: a few adjacent cache lines per row
        n = rows.shape[0]
        if len(self.names) == 1:
            out[self.names[0]] = torch.from_numpy(rows.reshape(n, *self.shapes[0]))
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
    return Block(array, tuple(names), tuple(shapes), spans, _record(array.dtype, names, starts, widths))


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
