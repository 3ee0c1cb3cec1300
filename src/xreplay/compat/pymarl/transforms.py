"""PyMARL's preprocess transforms: ``Transform`` and ``OneHot``."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["OneHot", "Transform"]


class Transform:
    """Base class of PyMARL preprocess transforms; subclasses implement both methods."""

    def transform(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return the transformed tensor."""
        raise NotImplementedError

    def infer_output_info(self, vshape_in: Any, dtype_in: Any) -> tuple[Any, Any]:
        """Return the ``(vshape, dtype)`` of the output for an input of ``(vshape_in, dtype_in)``."""
        raise NotImplementedError


class OneHot(Transform):
    """One-hot encode the last dimension into ``out_dim`` classes; the result is float32.

    Example:
        >>> OneHot(3).transform(torch.tensor([[1]]))
        tensor([[0., 1., 0.]])
    """

    def __init__(self, out_dim: int):
        """Encode into ``out_dim`` classes."""
        self.out_dim = out_dim

    def transform(self, tensor: torch.Tensor) -> torch.Tensor:
        """Scatter ones at ``tensor.long()`` along a new last dimension of size ``out_dim``."""
        onehot = tensor.new_zeros(*tensor.shape[:-1], self.out_dim)
        onehot.scatter_(-1, tensor.long(), 1)
        return onehot.float()

    def infer_output_info(self, vshape_in: Any, dtype_in: Any) -> tuple[tuple[int], torch.dtype]:
        """Return ``((out_dim,), torch.float32)`` whatever the input."""
        return (self.out_dim,), torch.float32
