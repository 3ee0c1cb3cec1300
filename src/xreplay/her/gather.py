"""Byte-offset gathers of transitions from the strided numpy columns of episode storage.

An episode column is a strided view ``[slots, steps, *item]`` into packed rows, so
``column[episodes, steps]`` takes numpy's general two-index path, which costs several times
a one-index gather. When each item is contiguous in memory, the column can instead be read as
a one-dimensional array of records of the item's size that starts at every byte of its memory
(the records overlap); item ``(episode, step)`` is then record ``start + episode * slot_stride +
step * step_stride``. Columns with items of one size that live in the same memory (the rows of
one storage) share such a view, so a batch of several fields is one single-index gather.

In a step-major row (``row_order="step"``, :mod:`xreplay.storage.layout`) every per-step field of
a step lies in one range of bytes, the step, and the steps follow one another: a transition's
fields and its next observation are then one range too, from the step into the next one. Given
the memory that holds the columns, such columns form one :class:`StepBlock`, and a batch of
transitions is one gather of whole ranges whose fields are views into the gathered bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ColumnGroup", "StepBlock", "TransitionGather"]


class _Interface:
    """An ``__array_interface__`` holder that keeps the arrays owning the memory alive."""

    def __init__(self, interface: dict[str, Any], owners: list[np.ndarray]):
        """Hold the interface and the arrays whose memory it spans."""
        self.__array_interface__ = interface
        self.owners = owners


def _item_bytes(column: np.ndarray, lead: int) -> int | None:
    """Return the bytes of one item of ``column`` (axes after ``lead``), None unless each item is C-contiguous."""
    if column.size == 0 or column.ndim < lead or min(column.strides, default=0) < 0:
        return None
    expected = column.itemsize  # C-contiguous strides of the item, innermost first
    for size, stride in zip(reversed(column.shape[lead:]), reversed(column.strides[lead:]), strict=True):
        if size > 1 and stride != expected:
            return None
        expected *= size
    return expected


@dataclasses.dataclass
class ColumnGroup:
    """Columns with items of one size and the same strides, read through one view of overlapping records.

    Attributes:
        names: The columns, in gather order.
        records: 1-D read-only void array; record ``k`` is the item starting ``k`` bytes past the lowest column.
        starts: Byte offset of each column's first item in ``records`` (int64 ``[k, 1]``).
        slot_stride: Bytes from one slot (episode) to the next.
        step_stride: Bytes from one step to the next (0 for per-episode columns).
        layouts: Each column's numpy dtype and item shape.
        paired: Whether the columns are gathered at each step and the next (observations).
        pairs: For paired columns whose steps are packed one after the other, records of two items: a
            step and the next one in one copy (else None).
    """

    names: list[str]
    records: np.ndarray
    starts: np.ndarray
    slot_stride: int
    step_stride: int
    layouts: list[tuple[np.dtype, tuple[int, ...]]]
    paired: bool
    pairs: np.ndarray | None = None

    def take(self, offsets: np.ndarray, pairs: bool = False) -> list[np.ndarray]:
        """Return each column's items at byte ``offsets`` past its start (int64 ``[m]``), as new arrays.

        With ``pairs`` (only where :attr:`pairs` is set) each item comes with the next step's: ``[m, 2, *item]``.
        """
        m = offsets.shape[0]
        records = self.pairs if pairs else self.records
        assert records is not None
        if len(self.names) == 1:
            raw = records[offsets + int(self.starts[0, 0])][None]
        else:
            raw = records[(self.starts + offsets).ravel()].reshape(len(self.names), m)  # [columns, m]
        lead = (m, 2) if pairs else (m,)
        return [raw[k].view(dtype).reshape(*lead, *shape) for k, (dtype, shape) in enumerate(self.layouts)]


def _group(names: list[str], columns: Mapping[str, np.ndarray], lead: int, paired: bool) -> ColumnGroup:
    """Return the view shared by ``names`` (items of one size and strides, in overlapping memory)."""
    arrays = [columns[name] for name in names]
    pointers = [int(a.__array_interface__["data"][0]) for a in arrays]
    base = min(pointers)
    strides = [int(s) for s in arrays[0].strides[:lead]]
    starts = np.array([p - base for p in pointers], dtype=np.int64).reshape(-1, 1)
    last = max(
        int(start) + sum((int(size) - 1) * stride for size, stride in zip(a.shape[:lead], strides, strict=True))
        for start, a in zip(starts[:, 0], arrays, strict=True)
    )
    item = _item_bytes(arrays[0], lead)
    assert item is not None
    records = _records(base, last + 1, item, arrays)  # one record per byte up to the last item's start
    pairs = None
    if paired and strides[1] == item:  # steps packed one after the other: a step and the next in one record
        pairs = _records(base, last + 1 - item, 2 * item, arrays)  # no record starts at a column's last step
    layouts = [(a.dtype, tuple(a.shape[lead:])) for a in arrays]
    return ColumnGroup(names, records, starts, strides[0], strides[1] if lead == 2 else 0, layouts, paired, pairs)


def _records(base: int, count: int, size: int, owners: list[np.ndarray]) -> np.ndarray:
    """Return ``count`` read-only records of ``size`` bytes starting at each byte from address ``base``."""
    interface = {"data": (base, True), "shape": (count,), "strides": (1,), "typestr": f"|V{size}", "version": 3}
    return np.asarray(_Interface(interface, owners))


@dataclasses.dataclass
class StepBlock:
    """Per-step columns that share each step's bytes (a step-major row): one record per transition.

    Attributes:
        names: The columns, in gather order.
        records: 1-D read-only void array; record ``k`` is the :attr:`size` bytes starting ``k`` bytes past the
            block's first step.
        size: Bytes of one record: from a step's first field to its last one, into the next step when paired.
        slot_stride: Bytes from one slot (episode) to the next.
        step_stride: Bytes from one step to the next (every column's).
        fields: Each column's (name, numpy dtype, item shape, byte offset in a record, paired).
    """

    names: list[str]
    records: np.ndarray
    size: int
    slot_stride: int
    step_stride: int
    fields: list[tuple[str, np.dtype, tuple[int, ...], int, bool]]

    def __post_init__(self) -> None:
        """Work out each column's view of a gathered record: (name, dtype, shape after the batch, strides, offset)."""
        self._views = []
        for name, dtype, item, offset, paired in self.fields:
            inner = _c_strides(item, dtype.itemsize)
            if paired:  # the step, then the same field one step later
                self._views.append((name, dtype, (2, *item), (self.size, self.step_stride, *inner), offset))
            else:
                self._views.append((name, dtype, item, (self.size, *inner), offset))

    def gather(self, offsets: np.ndarray) -> dict[str, np.ndarray]:
        """Return every column at byte ``offsets`` past the block's start, paired ones as ``[m, 2, *item]``.

        The values are writable views into one new array of the gathered records.
        """
        raw = self.records[offsets]  # one copy of a range of bytes per transition
        m = offsets.shape[0]
        return {
            name: np.ndarray((m, *shape), dtype, raw, offset, strides)
            for name, dtype, shape, strides, offset in self._views
        }


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Return the byte strides of a C-contiguous array of ``shape``."""
    strides: list[int] = []
    inner = itemsize
    for size in reversed(shape):
        strides.insert(0, inner)
        inner *= size
    return tuple(strides)


def _address(array: np.ndarray) -> int:
    """Return the address of an array's first element."""
    return int(array.__array_interface__["data"][0])


def _step_block(
    columns: Mapping[str, np.ndarray], paired: Sequence[str], per_step: Sequence[str], memory: np.ndarray
) -> StepBlock | None:
    """Return the step block of the per-step columns that lie inside one step of ``memory``'s rows, None if < 2 do."""
    named = [(name, True) for name in paired] + [(name, False) for name in per_step]
    low, high = _address(memory), _address(memory) + memory.nbytes
    candidates = []
    for name, pair in named:
        column = columns[name]
        item = _item_bytes(column, 2)
        start = _address(column) if column.size else -1
        if item is None or column.ndim < 2 or column.shape[1] < 2 or not low <= start <= high:
            continue
        candidates.append((name, pair, column, item, start, tuple(int(s) for s in column.strides[:2])))
    if not candidates:
        return None
    shared = sorted({c[5] for c in candidates})
    strides = max(shared, key=lambda s: sum(c[5] == s for c in candidates))  # the strides most columns have
    members = [c for c in candidates if c[5] == strides]
    base = min(c[4] for c in members)
    if len(members) < 2 or max(c[4] + c[3] for c in members) - base > strides[1] or strides[1] <= 0:
        return None  # not a step-major row: each column's steps are apart from the others'
    ends = [c[4] - base + c[3] for c in members if c[1]] or [c[4] - base + c[3] for c in members]
    step = strides[1]
    size = -(-(max(ends) + (step if any(c[1] for c in members) else 0)) // 8) * 8  # whole 8-byte words
    shape = members[0][2].shape
    last = base + (shape[0] - 1) * strides[0] + (shape[1] - (2 if any(c[1] for c in members) else 1)) * step
    if last + size > high:
        return None  # a record would read past the memory
    records = _records(base, high - size - base + 1, size, [memory])
    fields = [(c[0], c[2].dtype, tuple(c[2].shape[2:]), c[4] - base, c[1]) for c in members]
    return StepBlock([c[0] for c in members], records, size, strides[0], step, fields)


class TransitionGather:
    """The gather plan of one storage's numpy columns: groups of columns read together, the rest by indexing.

    Args:
        columns: Field name -> numpy column (``[slots, steps, *item]``, or ``[slots, *item]`` per episode).
        paired: Per-step fields gathered at each step and the next.
        per_step: The other per-step fields.
        per_episode: Per-episode fields.
        memory: The array whose memory holds the columns (a storage's rows): with it, per-step columns
            of a step-major row form one :class:`StepBlock`.
    """

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        paired: Sequence[str],
        per_step: Sequence[str],
        per_episode: Sequence[str],
        memory: np.ndarray | None = None,
    ):
        """Group the columns that qualify; the others are gathered with numpy's indexing."""
        self.columns = columns
        self.groups: list[ColumnGroup] = []
        self.others: list[tuple[str, bool, bool]] = []  # (name, per step, paired)
        self.block = _step_block(columns, paired, per_step, memory) if memory is not None else None
        blocked = set(self.block.names) if self.block is not None else set()
        keyed: dict[tuple[Any, ...], list[str]] = {}
        for names, lead, pair in ((paired, 2, True), (per_step, 2, False), (per_episode, 1, False)):
            for name in (n for n in names if n not in blocked):
                column = columns[name]
                item = _item_bytes(column, lead)
                if item is None:
                    self.others.append((name, lead == 2, pair))
                    continue
                key = (pair, lead, item, column.strides[:lead])
                for members in (m for k, m in keyed.items() if k[:4] == key):
                    if np.may_share_memory(columns[members[0]], column):  # the same rows: one view
                        members.append(name)
                        break
                else:
                    keyed[(*key, len(keyed))] = [name]
        self.groups = [_group(names, columns, key[1], key[0]) for key, names in keyed.items()]
        self.group_of = {name: group for group in self.groups for name in group.names}
        self._singles: dict[str, ColumnGroup] = {}

    def gather(self, episodes: np.ndarray, steps: np.ndarray) -> dict[str, np.ndarray]:
        """Return every planned field at ``(episodes, steps)``, paired ones as ``[n, 2, ...]`` (step, next step)."""
        n = episodes.shape[0]
        out: dict[str, np.ndarray] = {}
        if self.block is not None:  # one range of bytes per transition
            out.update(self.block.gather(episodes * self.block.slot_stride + steps * self.block.step_stride))
        for group in self.groups:
            offsets = episodes * group.slot_stride  # byte offset of each episode's slot
            if group.step_stride:
                offsets += steps * group.step_stride  # then of the step inside it
            if group.pairs is not None:  # each step with the next in one record
                out.update(zip(group.names, group.take(offsets, pairs=True), strict=True))
            elif group.paired:  # each step, then each next step
                both = group.take(np.concatenate((offsets, offsets + group.step_stride)))
                out.update((name, np.stack((v[:n], v[n:]), axis=1)) for name, v in zip(group.names, both, strict=True))
            else:
                out.update(zip(group.names, group.take(offsets), strict=True))
        for name, per_step, paired in self.others:
            column = self.columns[name]
            if not per_step:
                out[name] = column[episodes]
            elif paired:
                out[name] = column[episodes[:, None], steps[:, None] + np.arange(2)]
            else:
                out[name] = column[episodes, steps]
        return out

    def take(self, name: str, episodes: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Return per-step field ``name`` at ``(episodes, steps)``."""
        group = self.group_of.get(name)
        if group is None:
            if self.block is not None and name in self.block.names:
                return self._single(name).take(episodes * self.block.slot_stride + steps * self.block.step_stride)[0]
            return self.columns[name][episodes, steps]
        offsets = episodes * group.slot_stride + steps * group.step_stride
        index = group.names.index(name)
        dtype, shape = group.layouts[index]
        raw = group.records[offsets + int(group.starts[index, 0])]
        return raw.view(dtype).reshape(episodes.shape[0], *shape)

    def _single(self, name: str) -> ColumnGroup:
        """Return (made once) the one-column view of step-block column ``name``, for gathers of that field alone."""
        single = self._singles.get(name)
        if single is None:
            single = self._singles[name] = _group([name], self.columns, 2, False)
        return single
