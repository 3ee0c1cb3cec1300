"""Where the bytes live: storages and their row layout."""

from xreplay.storage.layout import Column, RowLayout
from xreplay.storage.memmap import MemmapStorage
from xreplay.storage.tensor import TensorStorage

__all__ = ["Column", "MemmapStorage", "RowLayout", "TensorStorage"]
