"""FastInserts: the common case of :meth:`EpisodeBuffer.add <xreplay.EpisodeBuffer.add>` at copy speed.

A runner hands the buffer CPU tensors of exactly the declared shapes and
dtypes, every stored field, and (for episodes shorter than ``max_seq_length``)
their lengths. For such a batch the general path's conversions are no-ops,
so this one does only what the write needs: one range check per narrowed
field (one reduction, integers viewed as unsigned so negatives count as
huge), one numpy copy per field and ring segment (casting to the storage
dtype on the way), a clear of the steps past ``t`` and, for derived columns,
the "absent" marker written past each episode's length (a bounded tail fill
instead of a masked pass over the whole source).

It never raises for bad input: whenever a value is not of the common case,
or a check fails, :meth:`FastInserts.prepare` returns ``None`` (it writes
nothing), and the buffer runs its general path, which refuses
the write with its typed error. So both paths refuse exactly the same
inputs (tests/buffers/test_episode_inserts.py runs them side by side).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.storage.dtypes import dtype_range, numpy_dtype
from xreplay.writers import SlotPlan

# The buffer written to is an EpisodeBuffer (typed Any: importing it here would be an import circle).
EpisodeBuffer = Any

__all__ = ["FastInserts", "Prepared", "copy_converted"]

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_maximum = np.maximum.reduce  # called directly: ndarray.max adds a Python-level wrapper per call
_minimum = np.minimum.reduce


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a write of every stored field needs, for one storage layout."""

    dtypes: dict[str, torch.dtype]  # declared dtype of each stored field (the values must have it)
    numpy_dtypes: dict[str, np.dtype]  # the same as numpy dtypes (what a value's numpy view must have)
    checks: tuple[tuple[str, int], ...]  # (field, largest value allowed): values must lie in [0, high]
    copies: tuple[tuple[str, str, bool, int], ...]  # (column, source field, per step, value past the end)
    derived: tuple[tuple[str, int], ...]  # (derived column, its absent marker): filled past each length


def _plan(buffer: EpisodeBuffer) -> _Plan | None:
    """Return the plan of ``buffer``'s current layout, None when its columns need the general path."""
    scheme, layout = buffer.scheme, buffer.storage.layout
    checks: dict[str, int] = {}
    copies = []
    derived = []
    for name in scheme.stored():
        field, column = scheme[name], layout.columns[name]
        if column.auto or numpy_dtype(field.dtype) is None or field.dtype.is_complex:
            return None  # widening columns, dtypes numpy lacks: the general path
        if column.dtype != field.dtype:
            held, declared = dtype_range(column.dtype), dtype_range(field.dtype)
            if held is None or declared is None or held[0] != 0:
                return None  # narrower floats or signed storage: their checks are the general path's
            if not (declared[0] >= 0 and declared[1] <= held[1]):
                checks[name] = held[1]
        copies.append((name, name, field.per_step, 0))
    for name, field in scheme.items():
        source = field.derived
        if source is None:
            continue
        if (
            not layout.columns[name].mask
            or scheme.item_shape(source.source)[-1:] != (1,)
            or dtype_range(scheme[source.source].dtype) is None
        ):
            return None  # a materialised derived column, a multi-index or a float source
        high = source.num_classes - 1
        checks[source.source] = min(checks.get(source.source, high), high)
        copies.append((name, source.source, field.per_step, source.absent))
        if field.per_step:
            derived.append((name, source.absent))
    dtypes = {name: scheme[name].dtype for name in scheme.stored()}
    numpy_dtypes = {name: numpy_dtype(dtype) for name, dtype in dtypes.items()}
    return _Plan(dtypes, numpy_dtypes, tuple(checks.items()), tuple(copies), tuple(derived))  # type: ignore[arg-type]


class Prepared:
    """A batch checked by :meth:`FastInserts.prepare`, ready to copy while its storage layout stays.

    Attributes:
        plan: The plan of the layout it was checked against.
        layout: That storage layout.
        episodes: The batch as given (what the sampler is told).
        arrays: The same values as numpy views.
        lengths: int32 steps of each episode.
        n: Episodes.
        t: Steps given per episode.
        nbytes: Bytes the copy moves.
    """

    __slots__ = ("arrays", "episodes", "layout", "lengths", "n", "nbytes", "plan", "t")

    def __init__(
        self,
        plan: _Plan,
        layout: Any,
        episodes: Mapping[str, Any],
        arrays: dict[str, np.ndarray],
        lengths: np.ndarray,
        n: int,
        t: int,
        nbytes: int,
    ):
        """Hold the checked batch (a plain slotted object: it is built on every write)."""
        self.plan, self.layout, self.episodes, self.arrays = plan, layout, episodes, arrays
        self.lengths, self.n, self.t, self.nbytes = lengths, n, t, nbytes


def _fits(array: np.ndarray, high: int) -> bool:
    """Return whether every value of an integer or bool array lies in ``[0, high]`` (one reduction)."""
    if array.size == 0:
        return True
    if array.dtype.kind == "b":
        return high >= 1 or not array.any()
    # Viewed as unsigned, negative values are huge: one maximum settles both ends of the range.
    unsigned = array if array.dtype.kind == "u" else array.view(_UNSIGNED[array.itemsize])
    return int(_maximum(unsigned, axis=None)) <= high


class FastInserts:
    """The fast path of an :class:`~xreplay.EpisodeBuffer`'s ``add`` (see the module docstring).

    The buffer is passed to each call rather than kept, so that buffer and inserts form no reference
    cycle (a dropped buffer frees its storage at once, not at the next garbage collection).

    Args:
        max_seq_length: Steps per episode of the buffer.
    """

    def __init__(self, max_seq_length: int):
        """Start without a plan; it is made on first use and again after a change of layout."""
        self._layout: Any = None
        self._plan: _Plan | None = None
        self._steps = np.arange(max_seq_length)
        self._item_steps: dict[int, np.ndarray] = {}  # item size -> step of each element of a flattened episode

    def plan(self, buffer: EpisodeBuffer) -> _Plan | None:
        """Return the plan of ``buffer``'s current storage layout (None: the general path)."""
        storage = buffer.storage
        if storage.layout is not self._layout:
            self._layout = storage.layout
            self._plan = _plan(buffer) if storage.host_columns is not None else None
        return self._plan

    def prepare(self, buffer: EpisodeBuffer, episodes: Mapping[str, Any], lengths: Any) -> Prepared | None:
        """Check ``episodes`` for ``buffer`` and return what :meth:`copy` writes, or None: the general path."""
        plan = self.plan(buffer)
        if plan is None or episodes.keys() != plan.dtypes.keys():
            return None
        dtypes = plan.numpy_dtypes
        shapes = None
        arrays: dict[str, np.ndarray] = {}
        nbytes = 0
        for name, value in episodes.items():
            if type(value) is not torch.Tensor:
                return None
            try:
                # numpy() refuses what the general path must judge: other devices, other layouts (sparse),
                # tensors that require grad, lazily negated views, dtypes numpy lacks.
                array = value.numpy()
            except (RuntimeError, TypeError):
                return None
            if array.dtype != dtypes[name]:  # numpy's dtypes map one to one to torch's
                return None
            if shapes is None:
                dims = self._dims(buffer, array, name, buffer.max_seq_length)
                if dims is None:
                    return None
                n, t, shapes = dims
            if array.shape != shapes[name]:
                return None
            arrays[name] = array
            nbytes += array.nbytes
        if shapes is None:
            return None
        length = self._lengths(lengths, n, t)
        if length is None:
            return None
        for name, high in plan.checks:
            if not _fits(arrays[name], high):
                return None
        return Prepared(plan, self._layout, episodes, arrays, length, n, t, nbytes)

    @staticmethod
    def _dims(
        buffer: EpisodeBuffer, value: np.ndarray, name: str, limit: int
    ) -> tuple[int, int, dict[str, torch.Size]] | None:
        """Return (episodes, steps, expected shape of every field) of a batch whose first field is ``value``.

        None unless ``name`` is a per-step field within the limit (other batches take the general path).
        """
        batches = buffer._batches
        if not batches.per_step[name] or value.ndim < 2 or value.shape[1] > limit:
            return None
        n, t = int(value.shape[0]), int(value.shape[1])
        shapes = batches._shapes.get((n, t))
        if shapes is None:
            scheme = buffer.scheme
            shapes = {k: torch.Size(((n, t) if f.per_step else (n,)) + scheme.item_shape(k)) for k, f in scheme.items()}
            if len(batches._shapes) <= 64:
                batches._shapes[(n, t)] = shapes
        return n, t, shapes

    @staticmethod
    def _lengths(lengths: Any, n: int, t: int) -> np.ndarray | None:
        """Return ``lengths`` as int32 (all ``t`` when None), or None when the general path must judge them."""
        if lengths is None:
            return np.full(n, t, dtype=np.int32)
        if isinstance(lengths, torch.Tensor):
            try:
                array = lengths.numpy()  # refuses other devices and layouts, and tensors that require grad
            except (RuntimeError, TypeError):
                return None
        elif isinstance(lengths, np.ndarray):
            array = lengths
        else:
            return None
        if array.dtype.kind not in "iu" or array.shape != (n,):
            return None
        if n and not _fits(array, t):  # in [0, t]: one reduction
            return None
        return array.astype(np.int32, copy=False)

    def _tail_steps(self, size: int) -> np.ndarray:
        """Return the step of each element of an episode's flattened per-step column of ``size`` elements a step."""
        steps = self._item_steps.get(size)
        if steps is None:
            steps = self._item_steps[size] = np.repeat(self._steps.astype(np.int32), size)
        return steps

    def _mark_absent(self, column: np.ndarray, lengths: np.ndarray, t: int, absent: int) -> None:
        """Write ``absent`` into the steps of ``column`` (``[count, t, *item]``) at or past each episode's length."""
        flat = column.view()
        try:
            flat.shape = (column.shape[0], -1)  # a view whatever the strides, or AttributeError (no copy)
        except AttributeError:
            column[self._steps[None, :t] >= lengths[:, None]] = absent  # strides that do not flatten
            return
        size = flat.shape[1] // t if t else 0
        # One masked copy over contiguous elements: each element's step against its episode's length.
        np.copyto(flat, absent, where=self._tail_steps(size)[None, : t * size] >= lengths[:, None])

    def copy(self, buffer: EpisodeBuffer, batch: Prepared, slots: SlotPlan) -> None:
        """Copy a prepared batch into the host columns and lengths of ``slots``, one copy per field and segment."""
        columns = buffer.storage.host_columns
        assert columns is not None
        plan, arrays, length, n, t = batch.plan, batch.arrays, batch.lengths, batch.n, batch.t
        limit = buffer.max_seq_length
        short = bool(plan.derived) and n and int(_minimum(length)) < t
        for slot, item, count in slots.segments:
            whole = item == 0 and count == n  # the batch lands in one run: no slicing of the sources
            for column_name, source, per_step, past_end in plan.copies:
                column = columns[column_name][slot : slot + count]
                value = arrays[source] if whole else arrays[source][item : item + count]
                if per_step and t < limit:
                    column[:, :t] = value
                    column[:, t:] = past_end  # no stale steps past the new episodes
                else:
                    column[...] = value
            part = length if whole else length[item : item + count]
            if short:  # derived columns say "absent" past each episode's length
                for column_name, absent in plan.derived:
                    self._mark_absent(columns[column_name][slot : slot + count, :t], part, t, absent)
            buffer._host_lengths[slot : slot + count] = part


def copy_converted(
    buffer: EpisodeBuffer,
    plan: SlotPlan,
    values: Mapping[str, torch.Tensor],
    derived: Mapping[str, torch.Tensor],
    lengths: torch.Tensor,
    t: int,
) -> None:
    """Copy the general path's converted values (and derived indices) into the slots of ``plan``."""
    storage, batches, limit = buffer.storage, buffer._batches, buffer.max_seq_length
    columns: Mapping[str, Any] = storage.columns
    per_step = batches.per_step
    n = int(lengths.shape[0])
    absent = {name: batches.derived[name].absent for name in derived}
    sources: dict[str, Any] = {**values, **derived}
    host = storage.host_columns
    if host is not None and all(v.device.type == "cpu" for v in sources.values()):
        columns = host  # same memory, cheaper per call; values were checked to fit
        sources = {k: (v.detach() if v.requires_grad else v).numpy() for k, v in sources.items()}
    for slot, item, count in plan.segments:
        whole = item == 0 and count == n  # the batch lands in one run: no slicing of the sources
        for name, value in sources.items():
            column = columns[name][slot : slot + count]
            source = value if whole else value[item : item + count]
            if t < limit and per_step[name]:
                column[:, :t] = source
                column[:, t:] = absent.get(name, 0)  # no stale steps past the new episode
            else:
                column[...] = source
        buffer._host_lengths[slot : slot + count] = lengths.numpy()[item : item + count]
        if storage.device.type != "cpu":
            buffer._lengths[slot : slot + count].copy_(lengths[item : item + count])
