"""Derived fields: values computed from a stored field instead of being stored.

A derivation names its ``source`` field and computes the derived values from
the source values at read time, so the derived field costs no storage.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from xreplay.errors import FieldValueError

__all__ = ["OneHot"]


_TABLES: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _table(num_classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Return the cached lookup table: row k encodes class k, the extra last row (all zeros) 'absent'."""
    key = (num_classes, dtype, device)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = torch.eye(num_classes + 1, num_classes, dtype=dtype, device=device)
    return table


@dataclasses.dataclass(frozen=True)
class OneHot:
    """One-hot encoding of an integer field, computed at read time.

    The source's last dimension holds class indices (usually size 1); the
    result replaces it with ``num_classes`` entries. A last dimension larger
    than 1 gives a multi-hot vector, as PyMARL's transform does.

    Example:
        >>> OneHot("actions", 3).compute(torch.tensor([[2], [0]]))
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """

    source: str
    num_classes: int
    dtype: torch.dtype = torch.float32

    def compute(self, values: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Return the one-hot encoding of ``values`` along its last dimension.

        Args:
            values: Integer class indices; the last dimension is encoded.
            check: Verify the indices lie in ``[0, num_classes)`` (a host sync
                on CUDA); reads of validated storage skip it.

        Raises:
            FieldValueError: An index lies outside ``[0, num_classes)``.
        """
        index = values.long()
        if check and index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_classes):
            raise FieldValueError(
                f"one-hot source {self.source!r}: class indices must lie in "
                f"[0, {self.num_classes}), got min {int(index.min())} max {int(index.max())}"
            )
        if not check:
            index = index.clamp(0, self.num_classes - 1)  # unchecked reads must not index out of the table
        return self.decode(index)

    @property
    def absent(self) -> int:
        """Return the index that encodes an all-zero row."""
        return self.num_classes

    def index_dtype(self) -> torch.dtype:
        """Return the narrowest dtype that holds every class index and the absent marker."""
        for dtype in (torch.uint8, torch.int16, torch.int32):
            if self.num_classes <= torch.iinfo(dtype).max:
                return dtype
        return torch.int64

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Return the encoding of stored class ``indices`` (``absent`` gives an all-zero row).

        The last dimension of ``indices`` is replaced by ``num_classes``; when it
        holds several indices the rows are combined into a multi-hot vector.
        """
        table = _table(self.num_classes, self.dtype, indices.device)
        rows = torch.nn.functional.embedding(indices if indices.dtype == torch.int64 else indices.long(), table)
        if indices.shape[-1:] == (1,):
            return rows.squeeze(-2)
        return rows.sum(-2).clamp_(max=1)

    def encode(self, values: torch.Tensor) -> torch.Tensor | None:
        """Return the class index of each one-hot row of ``values`` (``absent`` for all-zero rows).

        Returns None when some row is neither one-hot nor all zeros; such
        values cannot be held as indices.
        """
        if values.device.type == "cpu" and values.dtype != torch.bfloat16:
            return self._encode_numpy(values)
        rows = values.reshape(-1, self.num_classes)
        ones = rows == 1
        valid = (ones | (rows == 0)).all(dim=1) & (ones.sum(dim=1) <= 1)
        if not bool(valid.all()):
            return None
        index = torch.where(ones.any(dim=1), ones.to(torch.uint8).argmax(dim=1), self.absent)
        return index.view(*values.shape[:-1], 1)

    def _encode_numpy(self, values: torch.Tensor) -> torch.Tensor | None:
        """Encode CPU values with numpy, whose calls cost less on small arrays."""
        rows = values.detach().numpy().reshape(-1, self.num_classes)
        index = rows.argmax(axis=1)
        index[~rows.any(axis=1)] = self.absent
        table = np.eye(self.num_classes + 1, self.num_classes, dtype=rows.dtype)
        if not np.array_equal(table[index], rows):  # some row is neither one-hot nor zero
            return None
        return torch.from_numpy(index).view(*values.shape[:-1], 1)
