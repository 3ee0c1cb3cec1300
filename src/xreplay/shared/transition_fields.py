"""The fields of a shared transition buffer: specs, dtype blocks in shared memory, checked writes, gathers.

Fields are declared once, when the learner creates the buffer: from a spec
(``{"obs": ((17,), torch.float32), ...}``) or from one example transition,
with the rules of :class:`~xreplay.buffers.TransitionBuffer`'s first write
(nested dicts become ``"outer/inner"``, Python floats float32). As in
:class:`~xreplay.storage.columns.ColumnStorage`, the fields of one dtype lie
side by side in the rows of one ``[capacity, width]`` array, so a sampled
transition is a few adjacent cache lines and a gather is one ``take`` per dtype.

Writes are checked by the same code as a local buffer's (a one-row
:class:`~xreplay.storage.columns.ColumnStorage` holding the specs), so a bad
write raises the same :class:`~xreplay.errors.UnknownFieldError`,
:class:`~xreplay.errors.FieldShapeError` or :class:`~xreplay.errors.FieldValueError`
- in the writer's process, before any slot is reserved.

Example:
    >>> fields = TransitionFields.from_example({"obs": np.zeros(3, np.float32), "done": False})
    >>> [(name, dtype, shape) for name, dtype, shape in fields.arrays()]
    [('block0', 'float32', (3,)), ('block1', 'bool', (1,))]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.errors import FieldShapeError, SchemeError
from xreplay.shared.slots import Run
from xreplay.storage.columns import ColumnSpec, ColumnStorage
from xreplay.storage.dtypes import numpy_dtype
from xreplay.storage.nested import flatten

__all__ = ["TransitionFields", "flat_fields"]

_LEAVES = (np.ndarray, torch.Tensor, float, int, bool, np.generic)


def flat_fields(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``data`` flattened into ``"outer/inner"`` keys when it holds nested mappings."""
    for value in data.values():
        if not isinstance(value, _LEAVES) and isinstance(value, Mapping):
            return flatten(data)
    return data


def _host(value: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return a checked value as a numpy array on the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


class TransitionFields:
    """Field specs of a shared transition buffer and the copies between writes, shared rows and samples.

    Args:
        specs: Field name -> :class:`~xreplay.storage.columns.ColumnSpec` (item shape and torch dtype).

    Raises:
        SchemeError: No field, or a dtype that numpy cannot hold (e.g. bfloat16).
    """

    def __init__(self, specs: Mapping[str, ColumnSpec]):
        """Group the fields into one block per numpy dtype."""
        if not specs:
            raise SchemeError("a shared transition buffer needs at least one field")
        self.specs = dict(specs)
        groups: dict[np.dtype, list[str]] = {}
        for name, spec in self.specs.items():
            dtype = numpy_dtype(spec.dtype)
            if dtype is None:
                raise SchemeError(f"field {name!r}: dtype {spec.dtype} has no numpy equivalent for shared memory")
            groups.setdefault(np.dtype(dtype), []).append(name)
        # (block name, dtype, width, [(field, first column, width, item shape)])
        self.blocks: list[tuple[str, np.dtype, int, list[tuple[str, int, int, tuple[int, ...]]]]] = []
        for i, (dtype, names) in enumerate(groups.items()):
            parts, width = [], 0
            for name in names:
                shape = tuple(self.specs[name].shape)
                size = int(np.prod(shape, dtype=np.int64))
                parts.append((name, width, size, shape))
                width += size
            self.blocks.append((f"block{i}", dtype, max(width, 1), parts))
        self._checker = ColumnStorage(1)
        self._checker.allocate(self.specs)
        # (name, numpy dtype, item shape): writes of exactly these numpy arrays need no conversion or range check
        self._plain = [(name, np.dtype(numpy_dtype(s.dtype)), tuple(s.shape)) for name, s in self.specs.items()]
        self._views: tuple[int, dict[str, np.ndarray]] | None = None

    @classmethod
    def from_example(cls, example: Mapping[str, Any]) -> TransitionFields:
        """Return the fields a first write of one ``example`` transition (no batch dimension) fixes."""
        checker = ColumnStorage(1)
        values, specs = checker.validate(flat_fields(example), batched=False)
        assert specs is not None
        return cls(specs)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TransitionFields:
        """Return fields from ``{name: (item shape, dtype)}`` (torch or numpy dtypes) or ``{name: ColumnSpec}``.

        Raises:
            SchemeError: An entry is neither.
        """
        specs = {}
        for name, entry in flat_fields(spec).items():
            if isinstance(entry, ColumnSpec):
                specs[name] = entry
                continue
            try:
                shape, dtype = entry
                shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
                if not isinstance(dtype, torch.dtype):
                    dtype = torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype
            except (TypeError, ValueError):
                raise SchemeError(
                    f"field {name!r}: expected (item shape, dtype), e.g. ((17,), torch.float32); received {entry!r}"
                ) from None
            specs[name] = ColumnSpec(shape, dtype)
        return cls(specs)

    def arrays(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """Return the data arrays of the segment: one ``[capacity, width]`` block per dtype."""
        return [(name, dtype.name, (width,)) for name, dtype, width, _parts in self.blocks]

    def describe(self) -> dict[str, Any]:
        """Return the fields as JSON-able data (for the segment header)."""
        specs = self.specs.items()
        return {name: {"shape": list(s.shape), "dtype": str(s.dtype).removeprefix("torch.")} for name, s in specs}

    def __getstate__(self) -> dict[str, Any]:
        return {"specs": self.specs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["specs"])  # type: ignore[misc]

    # -- writes ---------------------------------------------------------------

    def check(self, data: Mapping[str, Any], batched: bool) -> tuple[dict[str, np.ndarray], int]:
        """Return a write's values as host arrays and its item count, after the local buffers' checks.

        Raises:
            UnknownFieldError: A field is missing or extra.
            FieldShapeError: An item shape or the batch sizes differ.
            FieldValueError: A dtype of another kind than the field's, or integers outside its range.
        """
        plain = self._plain
        if len(data) == len(plain):  # fast path: numpy arrays (or scalars) of the fields' dtypes and shapes
            out: dict[str, Any] = {}
            n = 1 if not batched else -1
            try:
                for name, dtype, shape in plain:
                    value: Any = data[name]
                    if (type(value) is not np.ndarray and not isinstance(value, np.generic)) or value.dtype != dtype:
                        break
                    dims: tuple[int, ...] = value.shape
                    if batched:
                        if not dims or dims[1:] != shape or (n >= 0 and dims[0] != n):
                            break
                        n = dims[0]
                    elif dims != shape:
                        break
                    out[name] = value
                else:
                    return out, n
            except KeyError:
                pass  # a missing or nested field: the full checks below name it
        flat = flat_fields(data)
        if batched:  # the local checks index the batch dimension of every value (an IndexError for scalars)
            for name, value in flat.items():
                if name in self.specs and not np.ndim(value):
                    raise FieldShapeError(f"field {name!r}: expected a batch, received a scalar")
        values, _specs = self._checker.validate(flat, batched)
        host = {name: _host(value) for name, value in values.items()}
        n = int(next(iter(host.values())).shape[0]) if batched else 1
        return host, n

    def field_views(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return a ``[capacity, *item]`` view of every field inside its block (cached per segment)."""
        cached = self._views
        key = id(views)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = {}
        for block, _dtype, _width, parts in self.blocks:
            array = views[block]
            for name, start, size, shape in parts:
                view = array[:, start : start + size]
                view.shape = (array.shape[0], *shape)  # in place: raises rather than copy
                out[name] = view
        self._views = (key, out)
        return out

    def copy(
        self, views: Mapping[str, np.ndarray], runs: list[Run], values: dict[str, np.ndarray], batched: bool
    ) -> None:
        """Copy items ``[item, item + count)`` of ``values`` into slots ``[slot, slot + count)`` of every run."""
        fields = self.field_views(views)
        for slot, item, count, _lap in runs:
            if not batched:
                for name, value in values.items():
                    fields[name][slot] = value
            else:
                for name, value in values.items():
                    fields[name][slot : slot + count] = value[item : item + count]

    # -- reads ----------------------------------------------------------------

    def decode(self, rows: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Return the fields of gathered block rows (``rows[i]`` of block ``i``) as tensors ``[n, *item]``."""
        out: dict[str, torch.Tensor] = {}
        for (_block, _dtype, _width, parts), array in zip(self.blocks, rows, strict=True):
            n = array.shape[0]
            if len(parts) == 1:
                name, _start, _size, shape = parts[0]
                out[name] = torch.from_numpy(array.reshape(n, *shape))
                continue
            for name, start, size, shape in parts:
                out[name] = torch.from_numpy(np.ascontiguousarray(array[:, start : start + size]).reshape(n, *shape))
        return {name: out[name] for name in self.specs}
