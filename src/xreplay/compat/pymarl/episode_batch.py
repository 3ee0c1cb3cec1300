"""PyMARL's ``EpisodeBatch`` over xreplay's packed episode storage."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from xreplay.compat.pymarl.fields import StoredFields, core_scheme, expand_scheme, field_dicts
from xreplay.compat.pymarl.indexing import (
    check_safe_view,
    index_error,
    indexed_shape,
    num_items,
    parse_index,
    read_back,
    to_field_tensor,
)
from xreplay.errors import (
    FieldShapeRuntimeError,
    FieldValueRuntimeError,
    IndexOutOfRangeError,
    UnknownFieldError,
    UnknownFieldValueError,
)
from xreplay.storage.resources import check_allocation
from xreplay.storage.tensor import TensorStorage

__all__ = ["EpisodeBatch", "set_compact_default"]

_COMPACT_DEFAULT = False

# One pending write: (field, index, value); value 1 marks ``filled``.
_Write = tuple[str, Any, Any]


def _transform(name: str, value: torch.Tensor, transforms: list[Any]) -> torch.Tensor:
    """Apply a field's preprocess transforms (PyMARL's ``OneHot``...) to ``value``.

    Raises:
        FieldValueRuntimeError: A transform fails (e.g. a one-hot class out of range; a RuntimeError, as upstream).
    """
    for transform in transforms:
        try:
            value = transform.transform(value)
        except RuntimeError as exc:
            raise FieldValueRuntimeError(
                f"field {name!r}: preprocess {type(transform).__name__} failed: {exc}"
            ) from None
    return value


def set_compact_default(compact: bool) -> None:
    """Make new ``EpisodeBatch``/``ReplayBuffer`` objects use compact storage unless told otherwise."""
    global _COMPACT_DEFAULT
    _COMPACT_DEFAULT = bool(compact)


class EpisodeBatch:
    """A batch of episodes with PyMARL's API: ``scheme``, ``groups``, ``data.transition_data``...

    Fields are preallocated as ``[batch_size, max_seq_length, *shape]``
    (per-step) or ``[batch_size, *shape]`` (``episode_const``), written with
    :meth:`update` and read by key or by batch/time index.

    Example:
        >>> b = EpisodeBatch({"reward": {"vshape": (1,)}}, {}, 2, 3)
        >>> b.update({"reward": [[1.0]]}, bs=0, ts=1)
        >>> b["filled"][0, :, 0].tolist(), b.max_t_filled().tolist()
        ([0, 1, 0], [1])
    """

    def __init__(
        self,
        scheme: dict[str, Any],
        groups: Any,
        batch_size: int,
        max_seq_length: int,
        data: Any = None,
        preprocess: dict[str, Any] | None = None,
        device: Any = "cpu",
        *,
        compact: bool | None = None,
    ):
        """Allocate the fields of ``scheme``, or adopt ``data`` as is."""
        self.scheme = scheme.copy()
        self.groups = groups
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.preprocess = {} if preprocess is None else preprocess
        self.device = device
        self._storage: TensorStorage | None = None
        self._compact = False
        self._untracked_writes = 0  # updates outside insert_episode_batch: the next save must be full
        if data is not None:
            self.data = data
        else:
            self._compact = _COMPACT_DEFAULT if compact is None else bool(compact)
            self.data = SimpleNamespace()
            self._setup_data(self.scheme, self.groups, batch_size, max_seq_length, self.preprocess)

    def _setup_data(
        self, scheme: dict[str, Any], groups: Any, batch_size: int, max_seq_length: int, preprocess: dict
    ) -> None:
        """Expand ``scheme`` with preprocess outputs and ``filled``, then allocate packed storage."""
        expand_scheme(scheme, groups, preprocess)
        core = core_scheme(scheme, groups, preprocess, self._compact)
        self._attach(TensorStorage(core, batch_size, max_seq_length, self.device))

    def _attach(self, storage: TensorStorage) -> None:
        """Use ``storage`` as this batch's fields."""
        self._storage = storage
        self.data.transition_data, self.data.episode_data = field_dicts(storage, self._compact)

    # -- writes ---------------------------------------------------------------

    def update(
        self, data: Mapping[str, Any], bs: Any = slice(None), ts: Any = slice(None), mark_filled: bool = True
    ) -> None:
        """Write ``data`` at batch index ``bs`` and time index ``ts``.

        Every value is converted and checked before anything is written, so a
        rejected update leaves the batch unchanged.
        """
        self._apply(self._plan_update(data, bs, ts, mark_filled))
        self._untracked_writes += 1

    def _plan_update(self, data: Mapping[str, Any], bs: Any, ts: Any, mark_filled: bool) -> list[_Write]:
        """Convert and check every value of an update; return the writes in PyMARL's order."""
        slices = parse_index((bs, ts))
        writes: list[_Write] = []
        for k, v in data.items():
            if k in self.data.transition_data:
                if mark_filled:
                    self._dest_shape("filled", slices)  # an invalid index fails here, before any conversion
                    writes.append(("filled", slices, 1))
                    mark_filled = False
                index = slices
            elif k in self.data.episode_data:
                index = slices[0]
            else:
                raise UnknownFieldError(
                    f"{k} not found in transition or episode data; this batch holds "
                    f"{list(self.data.transition_data) + list(self.data.episode_data)}"
                )
            value = to_field_tensor(k, v, self.scheme[k].get("dtype", torch.float32), self.device)
            value = check_safe_view(k, value, self._dest_shape(k, index))
            writes.append((k, index, value))
            if k in self.preprocess:
                new_k, transforms = self.preprocess[k]
                value = _transform(k, read_back(index, value, self._region(k)), transforms)
                writes.append((new_k, index, check_safe_view(new_k, value, self._dest_shape(new_k, index))))
        return writes

    def _dest_shape(self, key: str, index: Any) -> torch.Size:
        """Return the shape of field ``key`` at ``index`` without decoding compact storage.

        Raises:
            IndexOutOfRangeError: ``index`` selects outside the field (an IndexError, as upstream).
            InvalidIndexError: ``index`` has a type torch cannot index with (an IndexError, as upstream).
            ArgumentError: torch raised another error for ``index`` (a TypeError and ValueError; a RuntimeError
                becomes FieldShapeRuntimeError).
        """
        fields = self.data.transition_data if key in self.data.transition_data else self.data.episode_data
        try:
            if isinstance(fields, StoredFields):
                full = torch.Size((fields.storage.capacity, *self._field_shape(key)))
                shape = indexed_shape(full, index)
                return shape if shape is not None else torch.empty((), dtype=torch.bool).expand(full)[index].shape
            return fields[key][index].shape
        except (IndexError, TypeError, ValueError, RuntimeError) as exc:
            raise index_error(f"field {key!r}", index, (self.batch_size, *self._field_shape(key)), exc) from None

    def _region(self, key: str) -> tuple[int, ...]:
        """Return the shape of field ``key`` over every episode of this batch."""
        if self._storage is None:
            fields = self.data.transition_data if key in self.data.transition_data else self.data.episode_data
            return tuple(fields[key].shape)
        return (self.batch_size, *self._field_shape(key))

    def _field_shape(self, key: str) -> tuple[int, ...]:
        """Return the per-episode shape of field ``key`` in this batch's storage."""
        assert self._storage is not None
        steps = (self.max_seq_length,) if self._storage.scheme[key].per_step else ()
        return (*steps, *self._storage.scheme.item_shape(key))

    def _apply(self, writes: list[_Write]) -> None:
        """Perform planned writes in order."""
        for key, index, value in writes:
            if self._compact:
                self._write_compact(key, index, value)
            else:
                fields = self.data.transition_data if key in self.data.transition_data else self.data.episode_data
                fields[key][index] = value

    def _write_compact(self, key: str, index: Any, value: Any) -> None:
        """Encode one write into compact storage, widening or materialising columns as needed."""
        storage = self._storage
        assert storage is not None
        if not isinstance(value, torch.Tensor):
            value = torch.full(self._dest_shape(key, index), value, dtype=storage.scheme[key].dtype)
        if storage.layout.columns[key].mask:
            indices = storage.encode_derived(key, value)
            if indices is None:
                storage.relayout({key: storage.scheme[key].dtype})  # not one-hot: store the values themselves
            else:
                column = storage.columns[key]
                column[index] = indices.to(column.dtype)
                return
        storage.relayout(storage.plan_dtypes({key: value}))
        column = storage.columns[key]
        column[index] = value.to(column.dtype)  # checked to fit; index-put needs equal dtypes

    # -- reads ----------------------------------------------------------------

    def __getitem__(self, item: Any) -> Any:
        """Return a field by name, a batch restricted to a tuple of names, or an indexed batch."""
        if isinstance(item, str):
            if item in self.data.episode_data:
                return self.data.episode_data[item]
            if item in self.data.transition_data:
                return self.data.transition_data[item]
            raise UnknownFieldValueError(
                f"unknown field {item!r}; this batch holds "
                f"{list(self.data.transition_data) + list(self.data.episode_data)}"
            )
        if isinstance(item, tuple) and all(isinstance(it, str) for it in item):
            return self._select_keys(item)
        rows = self._as_row_index(item)
        if rows is not None:
            return self.gather(rows)
        index = parse_index(item)
        if self._compact and isinstance(index[0], slice) and (index[0].step is None or index[0].step > 0):
            # Decode only the selected rows of compact storage, then index time.
            part = self.gather(np.arange(*index[0].indices(self.batch_size), dtype=np.int64))
            result = part[(slice(None), index[1])]
            result.batch_size = num_items(index[0], self.batch_size)
            return result
        try:
            transition = {k: v[index] for k, v in self.data.transition_data.items()}
            episode = {k: v[index[0]] for k, v in self.data.episode_data.items()}
        except (IndexError, TypeError, ValueError, RuntimeError) as exc:  # torch's refusal, typed (upstream's class)
            raise index_error("this batch", item, (self.batch_size, self.max_seq_length), exc) from None
        return self._derived(
            transition,
            episode,
            num_items(index[0], self.batch_size),
            num_items(index[1], self.max_seq_length),
        )

    def _select_keys(self, keys: tuple[str, ...]) -> EpisodeBatch:
        """Return a batch holding only ``keys``, sharing their tensors."""
        transition, episode = {}, {}
        for key in keys:
            if key in self.data.transition_data:
                transition[key] = self.data.transition_data[key]
            elif key in self.data.episode_data:
                episode[key] = self.data.episode_data[key]
            else:
                raise UnknownFieldError(f"Unrecognised key {key}; this batch holds {list(self.scheme)}")
        scheme = {key: self.scheme[key] for key in keys}
        groups = {
            self.scheme[key]["group"]: self.groups[self.scheme[key]["group"]]
            for key in keys
            if "group" in self.scheme[key]
        }
        data = SimpleNamespace(transition_data=transition, episode_data=episode)
        return EpisodeBatch(scheme, groups, self.batch_size, self.max_seq_length, data=data, device=self.device)

    def _as_row_index(self, item: Any) -> np.ndarray | None:
        """Return ``item`` as in-range int64 rows when it is a plain batch-only integer index."""
        if self._storage is None:
            return None
        if isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype.kind in "iu":
            rows = item.astype(np.int64, copy=False)
        elif isinstance(item, list) and item and all(type(i) is int for i in item):
            rows = np.asarray(item, dtype=np.int64)
        else:
            return None
        size = self.batch_size
        if rows.size and (rows.min() < -size or rows.max() >= size):
            return None  # let torch raise its usual IndexError
        return np.where(rows < 0, rows + size, rows)

    def gather(self, rows: np.ndarray) -> EpisodeBatch:
        """Return a copy of the episodes at ``rows`` (in-range ints): one gather of whole rows (compact: of each field).

        Raises:
            CapacityError: The copy (decoded when compact) would not fit in the memory this process may use.
        """
        assert self._storage is not None
        row = self._storage.layout.row_bytes
        check_allocation(
            (2 if self._compact else 1) * len(rows) * row,
            self._storage.device,
            lambda: f"a copy of {len(rows)} episodes x {row} bytes",
            "sample fewer episodes",
        )
        index = torch.from_numpy(rows)
        if self._storage.device.type != "cpu":
            index = index.to(self._storage.device, non_blocking=True)
        if self._compact:
            if self._storage.device.type == "cpu":
                fields = self._storage.gather_fields(index)  # each field straight into its output, decoded
            else:  # one kernel for all rows (per-field gathers are unmeasured on GPUs)
                fields = self._storage.decode(self._storage.gather(index))
            steps = {k for k in fields if self._storage.scheme[k].per_step}
            transition = {k: v for k, v in fields.items() if k in steps}
            episode = {k: v for k, v in fields.items() if k not in steps}
            return self._derived(transition, episode, len(rows), self.max_seq_length)
        batch = self._derived({}, {}, len(rows), self.max_seq_length)
        gathered = self._storage.gather(index)  # whole rows: the copy keeps this batch's layout
        batch._attach(TensorStorage.wrap(self._storage.scheme, self._storage.layout, gathered))
        return batch

    def _derived(self, transition: dict, episode: dict, batch_size: Any, max_seq_length: Any) -> EpisodeBatch:
        """Return a new batch over the given tensors, sharing this batch's scheme contents and groups."""
        data = SimpleNamespace(transition_data=transition, episode_data=episode)
        return EpisodeBatch(self.scheme, self.groups, batch_size, max_seq_length, data=data, device=self.device)

    def max_t_filled(self) -> torch.Tensor:
        """Return the largest number of filled steps of any episode, as a 1-element int64 tensor.

        Raises:
            UnknownFieldError: The batch has no ``filled`` field (a KeyError, as upstream).
            IndexOutOfRangeError: The batch holds no episode or no step (an IndexError, as upstream).
            FieldShapeRuntimeError: ``filled`` has no step dimension left (a RuntimeError, as upstream).
        """
        if "filled" not in self.data.transition_data:
            raise UnknownFieldError(
                f"max_t_filled needs the 'filled' field; this batch holds {list(self.data.transition_data)}"
            )
        filled = self.data.transition_data["filled"]
        try:
            return torch.sum(filled, 1).max(0)[0]
        except IndexError as exc:
            raise IndexOutOfRangeError(f"max_t_filled of 'filled' of shape {tuple(filled.shape)}: {exc}") from None
        except RuntimeError as exc:
            raise FieldShapeRuntimeError(f"max_t_filled of 'filled' of shape {tuple(filled.shape)}: {exc}") from None

    def to(self, device: Any) -> None:
        """Move every field to ``device`` in place (one copy of the rows when the batch owns storage)."""
        if self._storage is not None:
            self._attach(self._storage.to(device))
        else:
            for fields in (self.data.transition_data, self.data.episode_data):
                for k, v in fields.items():
                    fields[k] = v.to(device)
        self.device = device

    def extend(self, scheme: dict[str, Any], groups: Any = None) -> None:
        """Add the fields of ``scheme`` (PyMARL entries) to this batch, zero-filled.

        PyMARL's version always raises TypeError; this one adds the fields.
        """
        groups = self.groups if groups is None else groups
        new = {k: v for k, v in scheme.items() if k not in self.scheme}
        for key, info in new.items():
            assert "vshape" in info, f"Scheme must define vshape for {key}"
            group = info.get("group", False)
            if group:
                assert group in groups, f"Group {group} must have its number of members defined in _groups_"
        if self._storage is None:
            probe = EpisodeBatch(dict(new), groups, self.batch_size, self.max_seq_length, device=self.device)
            for k in new:
                target = self.data.transition_data if k in probe.data.transition_data else self.data.episode_data
                target[k] = probe[k]
            self.scheme.update(new)
            return
        old = self._storage
        merged = {**self.scheme, **new}
        storage = TensorStorage(
            core_scheme(merged, groups, self.preprocess, self._compact), old.capacity, self.max_seq_length, self.device
        )
        storage.relayout(old.layout.overrides)  # same widened / materialised columns as before
        for name in old.scheme:
            storage.columns[name].copy_(old.columns[name])
        self.scheme, self.groups = merged, groups
        self._attach(storage)

    def __repr__(self) -> str:
        """Describe the batch as PyMARL does."""
        return (
            f"EpisodeBatch. Batch Size:{self.batch_size} Max_seq_len:{self.max_seq_length} "
            f"Keys:{self.scheme.keys()} Groups:{self.groups.keys()}"
        )
