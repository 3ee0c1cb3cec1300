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
reply. The reply's memory comes from a :class:`~xreplay.distributed.packing.BlockPool`,
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
    (['obs'], ['slots', 'generations', 'leaves'], 108)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from xreplay.buffers.transition_inputs import check_sample_memory
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.distributed.packing import BlockPool, Layout
from xreplay.errors import InsufficientDataError
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.uniform import UniformSampler

__all__ = ["RowReader"]

_Plan = tuple[Layout, Layout, int]


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
        self._plans: dict[int, _Plan] = {}  # rows -> layouts and size, for the few sizes a client asks for

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
        return True

    def draw(self, n: int) -> tuple[np.ndarray, Layout, Layout]:
        """Draw ``n`` items (with the sampler's replacement, as ``sample`` does); return the packed reply.

        Returns:
            The reply's bytes and the layouts of its fields and of its metadata (``slots``, and
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
            drawn = sampler.sample(buffer.rng, n, len(buffer), None)
            fields, meta, nbytes = self._plan(n, None if drawn.generations is None else drawn.generations.dtype)
            data = self.pool.take(nbytes)
            indices = drawn.indices
            index = torch.from_numpy(indices)
            for (_field, column, _dtype), (_, dtype, shape, offset) in zip(self._columns, fields, strict=True):  # type: ignore[arg-type]
                out = data[offset : offset + np.dtype(dtype).itemsize * math.prod(shape)].view(dtype).reshape(shape)
                torch.index_select(column, 0, index, out=torch.from_numpy(out))
            slots = meta[0][3]
            data[slots : slots + 8 * n].view(np.int64)[:] = indices
            if self.prioritized:
                (_g, gen_dtype, _s, generations), (_l, _d, _t, leaves) = meta[1], meta[2]
                data[generations : generations + drawn.generations.nbytes].view(gen_dtype)[:] = drawn.generations
                data[leaves : leaves + 8 * n].view(np.float64)[:] = sampler.priorities(indices)  # type: ignore[attr-defined]
        return data, fields, meta

    def _plan(self, n: int, generations: np.dtype | None) -> _Plan:
        """Return the layouts of a reply of ``n`` rows and its size (largest items first, as ``pack`` orders them)."""
        plan = self._plans.get(n)
        if plan is not None:
            return plan
        entries = [("field", name, dtype, (n, *column.shape[1:])) for name, column, dtype in self._columns]  # type: ignore[union-attr]
        entries.append(("meta", "slots", np.dtype(np.int64), (n,)))
        if self.prioritized:
            entries.append(("meta", "generations", np.dtype(generations), (n,)))
            entries.append(("meta", "leaves", np.dtype(np.float64), (n,)))
        offsets, offset = {}, 0
        for group, name, dtype, shape in sorted(entries, key=lambda entry: -entry[2].itemsize):
            offsets[group, name] = offset
            offset += dtype.itemsize * math.prod(shape)
        layouts: dict[str, Layout] = {"field": (), "meta": ()}
        for group, name, dtype, shape in entries:  # each group's layout in its own order
            layouts[group] += ((name, dtype.str, shape, offsets[group, name]),)
        if len(self._plans) >= 16:  # a client whose shares vary (several shards): keep the table small
            self._plans.clear()
        plan = self._plans[n] = (layouts["field"], layouts["meta"], offset)
        return plan
