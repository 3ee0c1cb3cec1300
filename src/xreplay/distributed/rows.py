"""RowReader: a transition shard's draw read straight into the packed buffer of its reply.

A local ``TransitionBuffer.sample`` returns tensors: it gathers each dtype
block of the storage, copies every field out of it, makes a tensor of each
and of the importance weights, and the shard then turned them back into
numpy arrays and copied them into one reply buffer
(:func:`~xreplay.distributed.packing.pack`). A shard needs none of the
tensors nor the weights (the client computes those from the global
minimum), so a draw here asks the sampler for the slots (the same call on
the same generator as ``sample``: the same draw), then selects each
field's rows from the storage's columns directly into its place in the
reply: with numba one kernel call per storage block (the fields of a dtype
share the rows of one array) writes the rows, the global indices (the
shard's ``head`` or-ed into the slots), the generations and the leaf masses
(:mod:`xreplay.distributed._rows_numba`); without numba, or for a column
layout the kernel does not read, torch and numpy write the same bytes. The
reply's memory comes from a :class:`~xreplay.distributed.packing.BlockPool`,
so a shard that answers one request after another writes into the same
memory (handed out again only once nothing holds the last reply: Ray has
serialized it, or the in-process client has copied it).

In the shard's process every call starts cold (the process slept between
calls), so each Python and numpy operation a draw skips saves several
times what it costs in a warm loop. Buffers this reader cannot serve (n-step
returns, next observations stored once, sequence windows, storage off the
CPU or in a dtype numpy lacks) are sampled with ``TransitionBuffer.sample``
as before.

Example:
    >>> from xreplay import TransitionBuffer
    >>> buffer = TransitionBuffer(8, sampler="prioritized", seed=0)
    >>> _ = buffer.extend({"obs": np.arange(8.0).reshape(4, 2)})
    >>> reader = RowReader.of(buffer)
    >>> data, fields, meta = reader.draw(3)
    >>> [entry[0] for entry in fields], [entry[0] for entry in meta], data.nbytes
    (['obs'], ['indices', 'generations', 'leaves'], 108)
"""

from __future__ import annotations

import ctypes
import math
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch

from xreplay.accel import kernels
from xreplay.buffers.transition_inputs import check_sample_memory
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.distributed.packing import BlockPool, Layout
from xreplay.errors import InsufficientDataError
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.uniform import UniformSampler

__all__ = ["RowReader"]

_NO_GENERATIONS = np.zeros(0, dtype=np.int32)
_NO_LEAVES = np.zeros(0, dtype=np.float64)
_NO_META = np.full(3, -1, dtype=np.int64)


def _kernel() -> ModuleType | None:
    """Return the compiled row kernel, or None when numba is missing or disabled (``XREPLAY_NUMBA=0``)."""
    return kernels("xreplay.distributed._rows_numba", "torch")


class _Block(NamedTuple):
    """Fields whose items share the rows of one array: its bytes, the bytes per row, the rows, the fields' offsets."""

    data: np.ndarray
    row_bytes: int
    capacity: int
    fields: tuple[tuple[int, int, int], ...]  # (column number, byte offset in a row, bytes per item)
    address: int

    def template(self, prefix: list[int]) -> tuple[np.ndarray, int, int, np.ndarray]:
        """Return the block in words, the words per row, the rows and the kernel's table for one reply row.

        ``prefix[c]`` is the bytes per reply row before column ``c``'s items (a reply of ``n`` rows has
        them at ``n * prefix[c]``: the table's last column is multiplied by ``n``). The words are
        4 bytes when every offset and width allows it (fewer, wider copies), else bytes.
        """
        places = [(start, width, prefix[c]) for c, start, width in self.fields]
        word = 4 if all(v % 4 == 0 for v in (self.address, self.row_bytes, *(x for p in places for x in p))) else 1
        words = self.data if word == 1 else self.data[: self.data.nbytes // 4 * 4].view(np.uint32)
        table = np.array([[v // word for v in place] for place in places], np.int64)
        return words, self.row_bytes // word, self.capacity, table


class _Template(NamedTuple):
    """A reply's layout per row: a reply of ``n`` rows scales every size and offset by ``n``."""

    entries: tuple[tuple[str, str, str, tuple[int, ...], int], ...]  # (group, name, dtype, item shape, prefix)
    row_bytes: int
    blocks: tuple[tuple[np.ndarray, int, int, np.ndarray], ...] | None  # kernel arguments per block; None: torch


class _Plan(NamedTuple):
    """How a reply of some number of rows is laid out, and what the kernel needs to fill it."""

    fields: Layout
    meta: Layout
    nbytes: int
    tables: tuple[tuple[np.ndarray, int, int, np.ndarray], ...] | None  # kernel arguments per block; None: torch
    meta_at: np.ndarray  # offsets of slots, generations and leaves in the reply (-1: none)


def _blocks(columns: list[tuple[str, torch.Tensor, np.dtype]]) -> tuple[_Block, ...] | None:
    """Return the columns grouped by the array whose rows they share, or None when one has a layout the kernel lacks.

    A column qualifies when each item is contiguous (only the rows are strided, as a
    :class:`~xreplay.storage.columns.ColumnStorage` keeps them). Columns starting in the same first
    row with the same row stride share one block: the kernel reads each row once, for all of them.
    The block's bytes are a view of the columns' memory; the reader keeps the column tensors, so it stays valid.
    """
    spans = []
    for number, (_name, column, dtype) in enumerate(columns):
        item, shape = dtype.itemsize, tuple(column.shape)
        inner = [item * math.prod(shape[d + 1 :]) for d in range(1, len(shape))]
        strides = [item * s for s in column.stride()]
        if column.device.type != "cpu" or not shape or strides[1:] != inner or shape[0] == 0:
            return None
        width = item * math.prod(shape[1:])
        if width == 0 or strides[0] < width:  # zero-size items (the torch path copies nothing for them)
            return None
        spans.append((column.data_ptr(), strides[0], width, shape[0], number))
    blocks: list[list[tuple[int, int, int, int, int]]] = []
    for span in sorted(spans):  # by address: a block's first column starts it
        first = blocks[-1][0] if blocks else None
        if first is not None and span[1:4:2] == first[1:4:2] and span[0] + span[2] <= first[0] + first[1]:
            blocks[-1].append(span)
        else:
            blocks.append([span])
    out = []
    for group in blocks:
        base, row_bytes, _width, capacity, _number = group[0]
        size = max(address - base + (capacity - 1) * row_bytes + width for address, _r, width, _c, _n in group)
        data = np.frombuffer((ctypes.c_uint8 * size).from_address(base), dtype=np.uint8)  # type: ignore[call-overload]
        fields = tuple((number, address - base, width) for address, _r, width, _c, number in group)
        out.append(_Block(data, row_bytes, capacity, fields, base))
    return tuple(out)


def _numpy_dtype(column: torch.Tensor) -> np.dtype | None:
    """Return the numpy dtype of a column's elements, or None when numpy has none (e.g. bfloat16)."""
    try:
        return torch.empty(0, dtype=column.dtype).numpy().dtype
    except TypeError:
        return None


class RowReader:
    """Draws from a :class:`TransitionBuffer` into reused reply buffers; build it with :meth:`of`.

    Args:
        buffer: The shard's buffer (see :meth:`of` for which ones it serves).
        prioritized: Whether the reply carries generations and leaf masses.
    """

    def __init__(self, buffer: TransitionBuffer, prioritized: bool):
        """Keep the buffer; the columns are looked at on the first draw (they exist once something is written)."""
        self.buffer = buffer
        self.prioritized = prioritized
        self.pool = BlockPool(keep=4)
        self._columns: list[tuple[str, torch.Tensor, np.dtype]] | None = None
        self._blocks: tuple[_Block, ...] | None = None  # the columns as the kernel reads them (None: torch copies)
        self._plans: dict[int, _Plan] = {}  # rows -> layouts and size, for the few sizes a client asks for
        self._templates: tuple[np.dtype | None, _Template] | None = None  # the layout per row, once

    @classmethod
    def of(cls, buffer: object) -> RowReader | None:
        """Return a reader for ``buffer``, or None when its draws need ``TransitionBuffer.sample``."""
        if not isinstance(buffer, TransitionBuffer) or buffer.n_step is not None or buffer.next_obs_from is not None:
            return None
        if type(buffer.sampler) not in (PrioritizedSampler, UniformSampler):  # sequence samplers draw windows
            return None
        if buffer.storage.device.type != "cpu":
            return None
        return cls(buffer, isinstance(buffer.sampler, PrioritizedSampler))

    def serves(self) -> bool:
        """Return whether every column can be read here (False: numpy lacks a column's dtype)."""
        if self._columns is None:
            storage = self.buffer.storage
            if not storage.specs:  # nothing written yet: a draw refuses, as ``sample`` would
                return True
            columns = [(name, storage.columns[name], _numpy_dtype(storage.columns[name])) for name in storage.specs]
            if any(dtype is None for _name, _column, dtype in columns):
                return False
            self._columns = columns  # type: ignore[assignment]
            self._blocks = _blocks(self._columns) if _kernel() is not None else None  # type: ignore[arg-type]
        return True

    def draw(self, n: int, head: int = 0) -> tuple[np.ndarray, Layout, Layout]:
        """Draw ``n`` items (with the sampler's replacement, as ``sample`` does); return the packed reply.

        Args:
            n: Items to draw.
            head: Or-ed into every slot: the shard's :func:`~xreplay.distributed.protocol.index_head`
                makes them global indices (0 keeps the slots).

        Returns:
            The reply's bytes and the layouts of its fields and of its metadata (``indices``, and
            ``generations`` and ``leaves`` when prioritized), as :func:`~xreplay.distributed.packing.pack` makes them.

        Raises:
            InsufficientDataError: The buffer is empty.
        """
        buffer = self.buffer
        if len(buffer) == 0:
            raise InsufficientDataError(f"cannot sample {n} transitions from an empty buffer; add some first")
        if not self.serves():
            raise TypeError("a column's dtype has no numpy equivalent: sample with TransitionBuffer.sample")
        check_sample_memory(buffer.storage, n, 1)
        sampler = buffer.sampler
        with buffer.lock:  # a shard serves one call at a time; the lock keeps the buffer's own rule anyway
            if self.prioritized:  # the client computes the weights from the leaves: the shard draws slots only
                slots, generations = sampler.draw_slots(buffer.rng, n)  # type: ignore[attr-defined]
            else:
                drawn = sampler.sample(buffer.rng, n, len(buffer), None)
                slots, generations = drawn.indices, drawn.generations
            plan = self._plan(n, None if generations is None else generations.dtype)
            data = self.pool.take(plan.nbytes)
            if plan.tables is not None:  # one kernel call per block (usually one): rows, slots, generations, leaves
                read = _kernel().read_rows  # type: ignore[union-attr]  # tables exist only with the kernel
                leaves = sampler.tree.leaves() if self.prioritized else _NO_LEAVES  # type: ignore[attr-defined]
                meta = plan.meta_at
                gens = _NO_GENERATIONS if generations is None else generations
                for words, row_words, capacity, table in plan.tables:  # ``sample`` flushed pending inserts
                    read(words, row_words, capacity, table, slots, head, gens, leaves, meta, data)
                    meta = _NO_META  # the metadata once
            else:
                self._copy(data, plan, slots, head, generations)
        return data, plan.fields, plan.meta

    def _copy(
        self, data: np.ndarray, plan: _Plan, indices: np.ndarray, head: int, generations: np.ndarray | None
    ) -> None:
        """Fill the reply with torch and numpy (no numba, or a column layout the kernel does not read)."""
        index = torch.from_numpy(indices)
        for (_field, column, _dtype), (_, dtype, shape, offset) in zip(self._columns, plan.fields, strict=True):  # type: ignore[arg-type]
            out = data[offset : offset + np.dtype(dtype).itemsize * math.prod(shape)].view(dtype).reshape(shape)
            torch.index_select(column, 0, index, out=torch.from_numpy(out))
        n = indices.shape[0]
        slots = plan.meta[0][3]
        np.bitwise_or(indices, np.int64(head), out=data[slots : slots + 8 * n].view(np.int64))
        if self.prioritized:
            (_g, gen_dtype, _s, at), (_l, _d, _t, leaves) = plan.meta[1], plan.meta[2]
            data[at : at + generations.nbytes].view(gen_dtype)[:] = generations  # type: ignore[union-attr]
            data[leaves : leaves + 8 * n].view(np.float64)[:] = self.buffer.sampler.priorities(indices)  # type: ignore[attr-defined]

    def _plan(self, n: int, generations: np.dtype | None) -> _Plan:
        """Return the layouts of a reply of ``n`` rows and its size (largest items first, as ``pack`` orders them)."""
        plan = self._plans.get(n)
        if plan is not None:
            return plan
        template = self._template(generations)
        layouts: dict[str, Layout] = {"field": (), "meta": ()}
        for group, name, dtype, item, prefix in template.entries:  # each group's layout in its own order
            layouts[group] += ((name, dtype, (n, *item), n * prefix),)
        meta_at = np.full(3, -1, dtype=np.int64)
        for k, (_name, _dtype, _shape, at) in enumerate(layouts["meta"]):
            meta_at[k] = at
        tables = None
        if template.blocks is not None:
            tables = tuple(
                (words, row_words, rows, table * [1, 1, n]) for words, row_words, rows, table in template.blocks
            )
        if len(self._plans) >= 16:  # a client whose shares vary (several shards): keep the table small
            self._plans.clear()
        plan = self._plans[n] = _Plan(layouts["field"], layouts["meta"], n * template.row_bytes, tables, meta_at)
        return plan

    def _template(self, generations: np.dtype | None) -> _Template:
        """Return the reply's layout per row (made once for the generations' dtype)."""
        if self._templates is not None and self._templates[0] == generations:
            return self._templates[1]
        entries = [("field", name, dtype, tuple(column.shape[1:])) for name, column, dtype in self._columns]  # type: ignore[union-attr]
        entries.append(("meta", "indices", np.dtype(np.int64), ()))
        if self.prioritized:
            entries.append(("meta", "generations", np.dtype(generations), ()))
            entries.append(("meta", "leaves", np.dtype(np.float64), ()))
        prefixes, prefix = {}, 0
        for group, name, dtype, item in sorted(entries, key=lambda entry: -entry[2].itemsize):
            prefixes[group, name] = prefix
            prefix += dtype.itemsize * math.prod(item)
        blocks = None
        if self._blocks is not None and (generations is None or generations == np.int32):
            columns = [prefixes["field", name] for name, _column, _dtype in self._columns]  # type: ignore[union-attr]
            blocks = tuple(block.template(columns) for block in self._blocks)
        final = tuple((g, name, dtype.str, item, prefixes[g, name]) for g, name, dtype, item in entries)
        template = _Template(final, prefix, blocks)
        self._templates = (generations, template)
        return template
