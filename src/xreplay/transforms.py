"""Derived fields: values computed from a stored field instead of being stored.

A derivation names its ``source`` field and computes the derived values from
the source values at read time, so the derived field costs no storage.
"""

from __future__ import annotations

import dataclasses

import torch

from xreplay.errors import FieldValueError

__all__ = ["OneHot"]


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

    def compute(self, values: torch.Tensor, check: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the one-hot encoding of ``values`` along its last dimension.

        Args:
            values: Integer class indices; the last dimension is encoded.
            check: Verify the indices lie in ``[0, num_classes)`` (a host sync
                on CUDA); reads of validated storage skip it.
            mask: Optional bool tensor broadcastable to ``values``; where it is
                false the encoding is all zeros.

        Raises:
            FieldValueError: An index lies outside ``[0, num_classes)``.
        """
        index = values.long()
        if check and index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_classes):
            raise FieldValueError(
                f"one-hot source {self.source!r}: class indices must lie in "
                f"[0, {self.num_classes}), got min {int(index.min())} max {int(index.max())}"
            )
        # Row k of the table encodes class k; the extra last row (all zeros) encodes "absent".
        table = torch.eye(self.num_classes + 1, self.num_classes, dtype=self.dtype, device=values.device)
        absent = self.num_classes
        if not check:
            index = index.clamp(0, absent - 1)  # unchecked reads: masked-out steps may hold anything
        if mask is not None:
            index = index.masked_fill(mask.logical_not(), absent)
        rows = table.index_select(0, index.reshape(-1)).view(*index.shape, self.num_classes)
        if index.shape[-1:] == (1,):
            return rows.squeeze(-2)
        return rows.sum(-2).clamp_(max=1)  # several indices per row: multi-hot
