"""FieldBatch: the read-only mapping of field name to tensor that every sample is."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

__all__ = ["FieldBatch"]


class FieldBatch(Mapping[str, torch.Tensor]):
    """A read-only mapping of field names to tensors; samples add their metadata as attributes.

    Example:
        >>> batch = FieldBatch({"obs": torch.zeros(2, 3)})
        >>> list(batch), batch["obs"].shape
        (['obs'], torch.Size([2, 3]))
    """

    def __init__(self, fields: dict[str, torch.Tensor]):
        """Hold ``fields`` (not copied)."""
        self._fields = fields

    def __getitem__(self, name: str) -> torch.Tensor:
        """Return field ``name``."""
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        """Iterate over field names."""
        return iter(self._fields)

    def __len__(self) -> int:
        """Return the number of fields."""
        return len(self._fields)
