"""EpisodeBatches: how an episode buffer checks and converts a batch of whole episodes before writing it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.validation import as_field_tensor, check_one_hot_sources
from xreplay.errors import FieldShapeError, FieldValueError
from xreplay.scheme import Scheme
from xreplay.storage.conversion import as_number_array, as_plain_tensor
from xreplay.storage.dtypes import dtype_range
from xreplay.storage.tensor import TensorStorage

__all__ = ["EpisodeBatches"]


class EpisodeBatches:
    """The checks and conversions of :meth:`EpisodeBuffer.add <xreplay.EpisodeBuffer.add>`, nothing written.

    Args:
        scheme: The fields of an episode.
        storage: The storage the episodes go to (its layout decides which checks a column implies).
        max_seq_length: Steps per episode.
    """

    def __init__(self, scheme: Scheme, storage: TensorStorage, max_seq_length: int):
        """Look up the static facts about the fields once instead of on every write."""
        self.scheme, self.storage, self.max_seq_length = scheme, storage, max_seq_length
        self.per_step = {name: field.per_step for name, field in scheme.items()}
        self.derived = {name: field.derived for name, field in scheme.items() if field.derived is not None}
        self._steps = torch.arange(max_seq_length)
        self._full: dict[tuple[int, int], torch.Tensor] = {}  # lengths of batches of full episodes
        self._shapes: dict[tuple[int, int], dict[str, torch.Size]] = {}  # expected shapes per (n, t)

    def convert(self, episodes: Mapping[str, Any], n: int, t: int) -> dict[str, torch.Tensor]:
        """Return every field as a tensor checked against its expected shape and declared dtype."""
        shapes = self._shapes.get((n, t))
        if shapes is None:
            if len(self._shapes) > 64:
                self._shapes.clear()  # many batch sizes: keep the cache small
            shapes = self._shapes[(n, t)] = {
                name: torch.Size(((n, t) if field.per_step else (n,)) + self.scheme.item_shape(name))
                for name, field in self.scheme.items()
            }
        values = {}
        for name, value in episodes.items():
            field = self.scheme[name]
            if (
                isinstance(value, torch.Tensor)
                and value.shape == shapes[name]
                and value.dtype == field.dtype
                and value.layout == torch.strided
                and not value.is_meta
            ):
                values[name] = value  # the common case: nothing to convert or check here
            else:
                values[name] = as_field_tensor(
                    self.scheme, name, value, tuple(shapes[name][: 2 if field.per_step else 1])
                )
        return values

    def check_derived_sources(
        self, values: Mapping[str, torch.Tensor], ranges: dict[str, tuple[int, int] | None]
    ) -> set[str]:
        """Check that sources of derived fields hold valid class indices.

        Returns:
            The sources whose storage check this implies (strict columns holding every class index),
            which need no second check.
        """
        check_one_hot_sources(self.derived.values(), values)
        covered = set()
        for derived in self.derived.values():
            name = derived.source
            column = self.storage.layout.columns[name]
            held = dtype_range(column.dtype)
            if not column.auto and held is not None and held[0] <= 0 and derived.num_classes - 1 <= held[1]:
                covered.add(name)
        return covered

    def dims(self, episodes: Mapping[str, Any]) -> tuple[int, int]:
        """Return (episodes, steps) of a batch from its first fields, checking the limit."""
        n = t = None
        for name, value in episodes.items():
            if isinstance(value, torch.Tensor):
                shape = tuple(value.shape)
            else:
                try:
                    shape = tuple(np.shape(value))
                except ValueError:  # ragged nested lists: as_field_tensor names the problem
                    shape = tuple(as_field_tensor(self.scheme, name, value, ()).shape)
            if not shape:
                if not isinstance(value, torch.Tensor):
                    as_number_array(name, value)  # text, None or objects: say so rather than "a scalar"
                raise FieldShapeError(f"field {name!r}: expected a batch of episodes, received a scalar")
            if n is None:
                n = shape[0]
            if self.per_step[name]:
                if len(shape) < 2:
                    raise FieldShapeError(f"field {name!r}: expected shape (n, steps, ...), received {shape}")
                t = shape[1]
                break  # other fields are checked against (n, t) when converted
        t = self.max_seq_length if t is None else t
        if t > self.max_seq_length:
            raise FieldShapeError(f"episodes have {t} steps but max_seq_length is {self.max_seq_length}")
        return int(n or 0), int(t)

    def lengths(self, lengths: Any, n: int, t: int) -> torch.Tensor:
        """Return validated episode lengths as an int32 CPU tensor."""
        if lengths is None:
            full = self._full.get((n, t))
            if full is None:
                if len(self._full) > 64:
                    self._full.clear()
                full = self._full[(n, t)] = torch.full((n,), t, dtype=torch.int32)
            return full
        if isinstance(lengths, torch.Tensor):
            length = as_plain_tensor("lengths", lengths).cpu().reshape(-1)
        else:
            length = torch.from_numpy(as_number_array("lengths", lengths).reshape(-1))
        if length.shape[0] != n:
            raise FieldShapeError(f"lengths: expected {n} values, received {length.shape[0]}")
        if length.is_floating_point() or length.dtype == torch.bool:
            raise FieldValueError(f"lengths: expected integers in [0, {t}], received dtype {length.dtype}")
        if n and (int(length.min()) < 0 or int(length.max()) > t):
            raise FieldValueError(f"lengths: expected integers in [0, {t}], received {length.tolist()}")
        return length.to(torch.int32)

    def derived_indices(
        self, values: Mapping[str, torch.Tensor], lengths: torch.Tensor, t: int, full: bool
    ) -> dict[str, torch.Tensor]:
        """Return the class indices stored for each derived field: the source's, absent past each length."""
        out = {}
        for name, derived in self.derived.items():
            if not self.storage.layout.columns[name].mask:
                continue  # materialised: not writable through add (it is derived)
            source = values[derived.source]
            if self.per_step[name] and not full and not bool((lengths.numpy() == t).all()):
                past = self._steps[:t][None, :] >= lengths[:, None]  # steps beyond each episode
                source = source.masked_fill(past.view(*past.shape, *([1] * (source.dim() - 2))), derived.absent)
            out[name] = source
        return out
