"""Episode rows in shared memory: a scheme's fields packed into one byte row per episode, plus its length.

The row layout is :class:`~xreplay.storage.layout.RowLayout`'s, the one
:class:`~xreplay.buffers.EpisodeBuffer` stores: per-step fields
``[max_seq_length, *item]``, per-episode fields ``[*item]``, per-agent groups
in front of the item shape (the PyMARL layout), one-hot fields kept as class
indices and expanded at read time. A shared row cannot widen later, so
``storage_dtype="auto"`` fields are stored in their declared dtype; explicit
narrower storage dtypes are kept and checked.

Writes are checked with the local buffer's functions (unknown, derived or
missing keys, shapes, values that a dtype cannot hold, lengths) in the
writer's process before any slot is reserved.

Example:
    >>> from xreplay.scheme import Field, Scheme
    >>> fields = EpisodeFields(Scheme({"reward": Field((1,))}), max_seq_length=5)
    >>> values, lengths, n, t = fields.check({"reward": torch.ones(2, 3, 1)}, [3, 2])
    >>> n, t, lengths.tolist(), fields.arrays()
    (2, 3, [3, 2], [('rows', 'uint8', (24,)), ('lengths', 'int32', ())])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.validation import as_field_tensor, check_keys
from xreplay.errors import FieldShapeError, FieldValueError, SchemeError
from xreplay.scheme import AUTO, Scheme
from xreplay.shared.slots import Run
from xreplay.storage.dtypes import check_fits, exceeds, value_range
from xreplay.storage.layout import RowLayout
from xreplay.storage.tensor import TensorStorage

__all__ = ["EpisodeFields"]


class EpisodeFields:
    """The row layout of a shared episode buffer and the copies between writes, shared rows and samples.

    Args:
        scheme: The fields of an episode.
        max_seq_length: Steps per episode.
    """

    def __init__(self, scheme: Scheme, max_seq_length: int):
        """Lay the scheme out in one row (``"auto"`` fields in their declared dtype)."""
        if max_seq_length < 1:
            raise SchemeError(f"max_seq_length must be >= 1, got {max_seq_length}")
        self.scheme = scheme
        self.max_seq_length = int(max_seq_length)
        fixed = {n: f.dtype for n, f in scheme.items() if f.storage_dtype == AUTO and f.derived is None}
        self.layout = RowLayout(scheme, self.max_seq_length, fixed)
        self._per_step = {name: field.per_step for name, field in scheme.items()}
        self._derived = {name: field.derived for name, field in scheme.items() if field.derived is not None}
        empty = torch.zeros((1, self.layout.row_bytes), dtype=torch.uint8)
        self._decoder = TensorStorage.wrap(scheme, self.layout, empty)  # decodes gathered rows
        self._rows: tuple[int, torch.Tensor] | None = None

    def arrays(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """Return the data arrays of the segment: the rows and the lengths."""
        return [("rows", "uint8", (self.layout.row_bytes,)), ("lengths", "int32", ())]

    def describe(self) -> dict[str, Any]:
        """Return the fields as JSON-able data (for the segment header)."""
        return {
            "max_seq_length": self.max_seq_length,
            "fields": {n: [str(c.dtype).removeprefix("torch."), list(c.shape)] for n, c in self.layout.columns.items()},
        }

    def __getstate__(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "max_seq_length": self.max_seq_length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["scheme"], state["max_seq_length"])  # type: ignore[misc]

    # -- writes ---------------------------------------------------------------

    def check(
        self, episodes: Mapping[str, Any], lengths: Any = None
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, int, int]:
        """Return a write's values as tensors, its lengths (int32), episode count and steps, after every check.

        Raises:
            UnknownFieldError: A key is unknown or derived, or a field is missing.
            FieldShapeError: A value or ``lengths`` has the wrong shape, or more steps than ``max_seq_length``.
            FieldValueError: A value cannot be held by its field (or by its storage dtype).
        """
        check_keys(self.scheme, episodes.keys(), required=True)
        n, t = self._batch_dims(episodes)
        values = {}
        for name, value in episodes.items():
            leading = (n, t) if self._per_step[name] else (n,)
            values[name] = as_field_tensor(self.scheme, name, value, leading)
        length = self._check_lengths(lengths, n, t)
        for derived in self._derived.values():
            source = values[derived.source]
            if exceeds(source, derived.num_classes - 1) or (source.numel() and int(source.min()) < 0):
                found = value_range(source)
                raise FieldValueError(
                    f"field {derived.source!r}: one-hot classes must lie in [0, {derived.num_classes}), "
                    f"received values in [{found[0] if found else '?'}, {found[1] if found else '?'}]"
                )
        for name, column in self.layout.columns.items():
            if not column.mask and name in values and column.dtype != values[name].dtype:
                check_fits(name, values[name], column.dtype)
        return values, length, n, t

    def _batch_dims(self, episodes: Mapping[str, Any]) -> tuple[int, int]:
        """Return (episodes, steps) of a batch from its shapes, checking the step limit."""
        n = t = None
        for name, value in episodes.items():
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(np.shape(value))
            if not shape:
                raise FieldShapeError(f"field {name!r}: expected a batch of episodes, received a scalar")
            n = shape[0] if n is None else n
            if self._per_step[name]:
                if len(shape) < 2:
                    raise FieldShapeError(f"field {name!r}: expected shape (n, steps, ...), received {shape}")
                t = shape[1]
                break
        t = self.max_seq_length if t is None else t
        if t > self.max_seq_length:
            raise FieldShapeError(f"episodes have {t} steps but max_seq_length is {self.max_seq_length}")
        return int(n or 0), int(t)

    def _check_lengths(self, lengths: Any, n: int, t: int) -> np.ndarray:
        """Return the episodes' lengths as int32 (all ``t`` by default)."""
        if lengths is None:
            return np.full(n, t, dtype=np.int32)
        length = torch.as_tensor(lengths).reshape(-1)
        if length.shape[0] != n:
            raise FieldShapeError(f"lengths: expected {n} values, received {length.shape[0]}")
        if length.is_floating_point() or (n and (int(length.min()) < 0 or int(length.max()) > t)):
            raise FieldValueError(f"lengths: expected integers in [0, {t}], received {length.tolist()}")
        return length.numpy().astype(np.int32)

    def copy(self, views: Mapping[str, np.ndarray], runs: list[Run], checked: tuple[Any, ...]) -> None:
        """Copy the checked episodes ``[item, item + length)`` into the rows of every run's slots."""
        values, lengths, _n, t = checked
        rows = self._shared_rows(views)
        limit = self.max_seq_length
        for slot, item, count, _lap in runs:
            columns = self.layout.views(rows[slot : slot + count])
            steps = torch.arange(t)[None, :] >= torch.from_numpy(lengths[item : item + count]).long()[:, None]
            for name, column in columns.items():
                layout_column = self.layout.columns[name]
                derived = self._derived.get(name) if layout_column.mask else None
                source = values[derived.source if derived is not None else name][item : item + count]
                absent = derived.absent if derived is not None else 0
                if derived is not None and self._per_step[name]:
                    source = source.masked_fill(steps.view(*steps.shape, *([1] * (source.dim() - 2))), absent)
                if self._per_step[name] and t < limit:
                    column[:, :t] = source
                    column[:, t:] = absent  # no stale steps past the new episode
                else:
                    column[...] = source
            views["lengths"][slot : slot + count] = lengths[item : item + count]

    def _shared_rows(self, views: Mapping[str, np.ndarray]) -> torch.Tensor:
        """Return the shared rows as a tensor (cached per mapping)."""
        cached = self._rows
        if cached is None or cached[0] != id(views):
            cached = self._rows = (id(views), torch.from_numpy(views["rows"]))
        return cached[1]

    # -- reads ----------------------------------------------------------------

    def decode(self, rows: np.ndarray, lengths: np.ndarray, truncate: bool) -> tuple[dict[str, torch.Tensor], int]:
        """Return gathered rows as fields in their declared dtypes plus ``filled``, and the steps kept."""
        steps = int(lengths.max()) if truncate and lengths.size else self.max_seq_length
        fields = self._decoder.decode(torch.from_numpy(rows), steps=steps)
        span = torch.arange(steps)
        fields["filled"] = (torch.from_numpy(lengths)[:, None] > span).unsqueeze(-1)
        return fields, steps
