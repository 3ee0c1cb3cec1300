"""ColumnStorage: one preallocated tensor per field, rows are items, fields inferred from the first write."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import (
    ArgumentError,
    FieldShapeError,
    SchemeError,
    UnknownFieldError,
)
from xreplay.storage.blocks import Block, make_block
from xreplay.storage.conversion import as_number_array, as_plain_tensor, check_float_cast, check_value
from xreplay.storage.dtypes import numpy_dtype
from xreplay.storage.resources import as_count, as_device, check_allocation, check_index_range
from xreplay.writers import SlotPlan

__all__ = ["ColumnSpec", "ColumnStorage"]


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One field: item shape and dtype."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class ColumnStorage:
    """Preallocated ``[capacity, *shape]`` tensors, one per field.

    The first write fixes the fields, their item shapes and dtypes (Python
    floats become float32, Python ints int64). Later writes must match:
    the same keys, the same item shapes and the same kind of dtype (bool,
    integer or floating; floats are cast to the field's precision, and
    integers of another dtype must lie in the field's range).
    On CPU the fields of one dtype share the rows of one numpy array (a
    sampled row is then a few adjacent cache lines, and numpy backs large
    arrays with transparent huge pages where enabled); each field's tensor is
    a strided view of it, also kept as a numpy view for cheap small writes.

    Example:
        >>> s = ColumnStorage(4)
        >>> values = s.prepare({"obs": np.zeros((2, 3), np.float32)}, batched=True)
        >>> s.write(slice(0, 2), values, slice(0, 2))
        >>> s.columns["obs"].shape
        torch.Size([4, 3])
    """

    def __init__(self, capacity: int, device: str | torch.device = "cpu"):
        """Hold ``capacity`` rows; columns are allocated on the first write.

        Raises:
            ArgumentError: ``capacity`` is not an int >= 1 or ``device`` is not usable.
        """
        self.capacity = as_count(capacity, "capacity", minimum=1)
        self.device = as_device(device)
        self.specs: dict[str, ColumnSpec] = {}
        self.columns: dict[str, torch.Tensor] = {}
        self._host: dict[str, np.ndarray] = {}  # numpy views of CPU columns
        self._blocks: list[Block] = []  # CPU fields grouped by dtype, side by side in one array each
        self._np_dtypes: dict[str, np.dtype | None] = {}  # numpy dtype per field (None: numpy has none)
        self._row_bytes = 0  # bytes of one item of every field
        self._batches: dict[int, tuple[tuple[Any, ...], ...]] = {}  # batch size -> what such a write looks like
        self._lookups = False  # whether writes may be looked up (decided last when the columns are allocated)

    def prepare(self, flat: Mapping[str, Any], batched: bool) -> dict[str, np.ndarray | torch.Tensor]:
        """Convert and check every value of a write, then allocate the columns on the first; change nothing else.

        Args:
            flat: Field name -> value (already flattened).
            batched: Whether values carry a leading batch dimension.

        Returns:
            The values as arrays (or tensors) of the stored item shapes.

        Raises:
            UnknownFieldError: A field is missing or extra.
            FieldShapeError: An item shape or the batch sizes differ.
            FieldValueError: A dtype of another kind than the field's, or integers outside its range.
        """
        values, specs = self.validate(flat, batched)
        if specs is not None:
            self.allocate(specs)
        return values

    def validate(
        self, flat: Mapping[str, Any], batched: bool
    ) -> tuple[dict[str, np.ndarray | torch.Tensor], dict[str, ColumnSpec] | None]:
        """Convert and check every value of a write without changing anything.

        Returns:
            The converted values, and the specs the write would fix when no
            column exists yet (None otherwise; pass them to :meth:`allocate`).

        Raises:
            The errors of :meth:`prepare`.
        """
        if batched and self._lookups and self._looks_stored(flat):  # a hot write loop: nothing to convert or check
            return dict(flat), None  # a copy: what was checked is what is written, whatever the caller does next
        values = {
            # Fast path for numeric numpy arrays, the common case of a hot write loop.
            name: value if type(value) is np.ndarray and value.dtype.kind in "biuf" else self._as_array(name, value)
            for name, value in flat.items()
        }
        new = None
        specs = self.specs
        if not specs:  # the first write fixes the dtypes: odd numpy ones (byte order, long double) are normalised
            values = {k: as_number_array(k, v) if type(v) is np.ndarray else v for k, v in values.items()}
            specs = new = self.infer_specs(values, batched)
        elif values.keys() != specs.keys():
            self._check_keys(values)
        batch = None
        host = self._np_dtypes if new is None else {n: numpy_dtype(s.dtype) for n, s in specs.items()}
        for name, value in values.items():
            spec = specs[name]
            shape = value.shape
            item = shape[1:] if batched else shape
            if item != spec.shape:
                raise FieldShapeError(f"field {name!r}: expected item shape {spec.shape}, received {tuple(item)}")
            if batched:
                try:
                    size = shape[0]
                except IndexError:  # a scalar where a batch of scalars belongs
                    raise FieldShapeError(
                        f"field {name!r}: expected a batch of items of shape {spec.shape}, received a scalar"
                    ) from None
                batch = size if batch is None else batch
                if size != batch:
                    raise FieldShapeError(f"field {name!r}: batch of {size} items, other fields have {batch}")
            if type(value) is not np.ndarray or value.dtype != host[name]:
                check_value(name, value, spec.dtype)
        return values, new

    def _looks_stored(self, flat: Mapping[str, Any]) -> bool:
        """Return whether ``flat`` is a dict of batches of numpy arrays of exactly the columns' dtypes and shapes.

        Such a write needs no conversion and no value check (its dtypes are the columns' own, numeric ones:
        a column of another kind, e.g. complex from a loaded state, is never looked up). The fields must come
        in the columns' order; any other write takes the full checks, which name what is wrong. What a write
        of ``n`` items looks like is kept for the last 64 batch sizes seen.
        """
        if type(flat) is not dict or not flat:
            return False
        first = next(iter(flat.values()))
        if type(first) is not np.ndarray or not first.ndim:
            return False
        n = first.shape[0]
        expected = self._batches.get(n)
        if expected is None:
            if len(self._batches) >= 64:  # batch sizes vary: keep the table small
                self._batches.clear()
            expected = self._batches[n] = tuple(
                (np.ndarray, name, self._np_dtypes[name], (n, *spec.shape)) for name, spec in self.specs.items()
            )
        try:
            got = tuple((type(v), k, v.dtype, v.shape) for k, v in flat.items())
        except AttributeError:  # a value without a dtype or shape
            return False
        return got == expected

    def infer_specs(self, values: Mapping[str, np.ndarray | torch.Tensor], batched: bool) -> dict[str, ColumnSpec]:
        """Return the field specs a first write of ``values`` fixes; change nothing.

        Raises:
            FieldShapeError: A batched write holds a scalar.
        """
        specs = {}
        for name, value in values.items():
            if batched and value.ndim == 0:
                raise FieldShapeError(f"field {name!r}: expected a batch, received a scalar")
            shape = tuple(value.shape[1:]) if batched else tuple(value.shape)
            if isinstance(value, torch.Tensor):
                dtype = value.dtype
            else:
                dtype = torch.from_numpy(np.zeros(0, dtype=value.dtype)).dtype
            specs[name] = ColumnSpec(shape, dtype)
        return specs

    @staticmethod
    def _as_array(name: str, value: Any) -> np.ndarray | torch.Tensor:
        """Return ``value`` as a dense tensor (kept) or a numpy array; Python floats become float32.

        Raises:
            FieldShapeError: Ragged nested lists.
            FieldTypeError: Text, objects, complex values, quantized tensors.
            FieldValueError: Meta tensors, or Python floats beyond float32's range.
        """
        if isinstance(value, torch.Tensor):
            return as_plain_tensor(name, value)
        if isinstance(value, np.generic) and value.dtype.kind in "bif":  # a numpy scalar: nothing to check
            return np.asarray(value)
        array = as_number_array(name, value)
        if array.dtype == np.float64 and not isinstance(value, np.ndarray | np.generic):
            check_float_cast(name, array, np.dtype(np.float32))
            array = array.astype(np.float32)
        return array

    def allocate(self, specs: Mapping[str, ColumnSpec]) -> None:
        """Create one zeroed column per field of ``specs`` (those of the first write).

        Raises:
            SchemeError: Columns exist already.
        """
        if self.specs:
            raise SchemeError(f"columns are allocated already: {list(self.specs)}")
        specs = dict(specs)
        row_bytes = sum(math.prod(spec.shape) * spec.dtype.itemsize for spec in specs.values())
        check_allocation(
            self.capacity * row_bytes,
            self.device,
            f"columns for {self.capacity} transitions x {row_bytes} bytes",
            "lower the capacity",
        )
        groups: dict[np.dtype | None, list[str]] = {}
        for name, spec in specs.items():
            key = numpy_dtype(spec.dtype) if self.device.type == "cpu" else None
            groups.setdefault(key, []).append(name)
        for np_dtype, names in groups.items():
            if np_dtype is None:  # not on CPU, or a dtype numpy lacks: one torch tensor per field
                for name in names:
                    shape = (self.capacity, *specs[name].shape)
                    self.columns[name] = torch.zeros(shape, dtype=specs[name].dtype, device=self.device)
                continue
            self._blocks.append(self._allocate_block(np_dtype, names, specs))
        self._in_order = [name for block in self._blocks for name in block.names] == list(specs)  # gather as is
        self._np_dtypes = {name: numpy_dtype(spec.dtype) for name, spec in specs.items()}
        self._row_bytes = row_bytes
        self.specs = specs  # after what a write checks against: a thread that sees the specs sees them too
        # Last: a write looked up from another thread sees whole specs and dtypes. A column of a kind the write
        # checks refuse (e.g. complex, from a loaded state) is never looked up: those writes are checked in full.
        self._lookups = all(dtype is not None and dtype.kind in "biuf" for dtype in self._np_dtypes.values())

    def _allocate_block(self, np_dtype: np.dtype, names: list[str], specs: dict[str, ColumnSpec]) -> Block:
        """Allocate the CPU fields ``names`` of one dtype side by side in one array and register their views."""
        widths = [int(np.prod(specs[name].shape, dtype=np.int64)) for name in names]
        array = np.zeros((self.capacity, int(sum(widths))), dtype=np_dtype)
        block = make_block(array, names, [specs[name].shape for name in names], widths)
        for name, (start, width) in zip(names, block.spans, strict=True):
            view = array[:, start : start + width]
            view.shape = (self.capacity, *specs[name].shape)  # in place: raises rather than copy
            self._host[name] = view
            self.columns[name] = torch.from_numpy(view)
        return block

    def _check_keys(self, values: Mapping[str, Any]) -> None:
        """Raise UnknownFieldError naming a missing or extra field."""
        if values.keys() != self.specs.keys():
            extra = [k for k in values if k not in self.specs]
            missing = [k for k in self.specs if k not in values]
            raise UnknownFieldError(
                f"write does not match the fields of the first write: missing {missing}, extra {extra}; "
                f"expected {list(self.specs)}"
            )

    # -- state ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the storage's state: field specs as plain data and the columns (the tensors, not copies)."""
        return {
            "specs": {
                name: {"shape": list(spec.shape), "dtype": str(spec.dtype).removeprefix("torch.")}
                for name, spec in self.specs.items()
            },
            "columns": dict(self.columns),
        }

    def check_state_dict(self, state: Mapping[str, Any]) -> dict[str, ColumnSpec]:
        """Return the specs of a :meth:`state_dict` after checking it fits this storage (nothing changes).

        Raises:
            ArgumentError: A spec names an unknown dtype, differs from the allocated columns, or a column
                has another shape than ``(capacity, *shape)``.
        """
        specs = {}
        for name, info in dict(state.get("specs", {})).items():
            dtype = getattr(torch, str(info.get("dtype")), None)
            if not isinstance(dtype, torch.dtype):
                raise ArgumentError(f"column state {name!r}: unknown dtype {info.get('dtype')!r}")
            specs[name] = ColumnSpec(tuple(int(d) for d in info["shape"]), dtype)
        if self.specs and specs != self.specs:
            raise ArgumentError(
                f"column state has fields {sorted(specs)}; the allocated columns are {sorted(self.specs)}"
            )
        columns = state.get("columns", {})
        for name, spec in specs.items():
            shape = tuple(getattr(columns.get(name), "shape", ()))
            if shape != (self.capacity, *spec.shape):
                raise ArgumentError(
                    f"column state {name!r}: expected shape {(self.capacity, *spec.shape)}, received {shape}"
                )
        return specs

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Allocate the columns of ``state["specs"]`` (if none yet) and copy ``state["columns"]`` into them.

        Everything is checked (:meth:`check_state_dict`) before anything changes.
        """
        specs = self.check_state_dict(state)
        columns = state.get("columns", {})
        if specs and not self.specs:
            self.allocate(specs)
        for name in specs:
            value = columns[name]
            source = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            self.columns[name].copy_(source.to(self.columns[name].device))

    def write(self, rows: slice | int, values: Mapping[str, np.ndarray | torch.Tensor], items: Any = None) -> None:
        """Copy ``values[name][items]`` (each whole value when ``items`` is None) into rows ``rows`` of every column."""
        host = self._host
        for name, value in values.items():
            part = value if items is None else value[items]
            if type(value) is np.ndarray and name in host:
                host[name][rows] = part
            else:
                self.columns[name][rows] = torch.as_tensor(part).to(self.device)

    def write_plan(self, plan: SlotPlan, values: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Copy the items of a planned write (``values`` batched) into the rows of ``plan``'s segments."""
        segments = plan.segments
        if len(segments) == 1 and not plan.source_start:  # the whole batch into one run of slots
            slot, _item, count = segments[0]
            self.write(slice(slot, slot + count), values)
            return
        for slot, item, count in segments:
            self.write(slice(slot, slot + count), values, slice(item, item + count))

    def gather(self, indices: np.ndarray, names: Collection[str] | None = None) -> dict[str, torch.Tensor]:
        """Return every column (or those in ``names``) at ``indices`` (int64), as new contiguous tensors.

        On CPU each dtype block's rows are taken once, then copied field by field
        (:meth:`xreplay.storage.blocks.Block.gather`); every field is its own allocation.

        Raises:
            IndexOutOfRangeError: An index is outside ``[0, capacity)`` (also a negative one; an IndexError).
        """
        if indices.dtype != np.int64:
            indices = np.asarray(indices, dtype=np.int64)
        check_index_range(indices, self.capacity, "gather index", "the rows [0, {size})")
        if not self._host:
            index = torch.from_numpy(indices).to(self.device, non_blocking=True)
            wanted = self.columns if names is None else names
            return {name: self.columns[name].index_select(0, index) for name in wanted}
        out: dict[str, torch.Tensor] = {}
        for block in self._blocks:
            if names is None or any(name in names for name in block.names):
                block.gather(indices, names, out)
        if names is None and self._in_order:  # every field gathered, in scheme order
            return out
        wanted = self.specs if names is None else names
        if len(out) < len(wanted):  # CPU fields of a dtype numpy lacks (e.g. bfloat16)
            index = torch.from_numpy(indices)
            for name in wanted:
                if name not in out:
                    out[name] = self.columns[name].index_select(0, index)
        return {name: out[name] for name in wanted}

    def host_dtype(self, name: str) -> np.dtype:
        """Return the numpy dtype of field ``name``.

        Raises:
            SchemeError: numpy has no such dtype (e.g. bfloat16).
        """
        dtype = numpy_dtype(self.specs[name].dtype)
        if dtype is None:
            raise SchemeError(f"field {name!r}: dtype {self.specs[name].dtype} has no numpy equivalent")
        return dtype

    def row_bytes(self) -> int:
        """Return the bytes of one row (one item of every field); 0 before the first write."""
        return self._row_bytes

    def nbytes(self) -> int:
        """Return the bytes held by the columns."""
        return sum(c.element_size() * c.nelement() for c in self.columns.values())
