"""The plain data that crosses between a replay client and its shards, and the global index encoding.

Everything here is numpy arrays, numbers and small frozen dataclasses, so it
pickles cheaply and travels through Ray's object store without copies of
the arrays; torch tensors never cross a process boundary.

A *global index* names one stored item of a sharded replay in one int64:
the shard, the shard's *epoch* (how many times it was restarted, modulo
2**11) and the slot inside the shard's buffer::

    bit 63 | 62 ........ 51 | 50 ...... 40 | 39 .............. 0
      0    |  shard (12)    |  epoch (11)  |  slot (40)

With the slot's generation (returned beside the index, as a local buffer
does) a priority update can be checked twice: the epoch drops updates for
items a restart lost, the generation those overwritten since.

Example:
    >>> index = encode_indices(3, 1, np.array([0, 7]))
    >>> [tuple(map(int, parts)) for parts in zip(*decode_indices(index))]
    [(3, 1, 0), (3, 1, 7)]
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from xreplay.distributed.packing import Layout, unpack

__all__ = [
    "MAX_SHARDS",
    "ShardCheckpoints",
    "ShardDraw",
    "ShardInfo",
    "ShardState",
    "decode_indices",
    "decode_updates",
    "encode_indices",
    "encode_updates",
    "index_head",
]

SLOT_BITS = 40
EPOCH_BITS = 11
SHARD_BITS = 12
MAX_SHARDS = 1 << SHARD_BITS
"""Most shards one replay can have (4096)."""
_SLOT_MASK = (1 << SLOT_BITS) - 1
_EPOCH_MASK = (1 << EPOCH_BITS) - 1
_INLINE_UPDATE = 64 << 10  # update batches up to this size travel as bytes


def index_head(shard: int, epoch: int) -> int:
    """Return the bits that ``shard`` and ``epoch`` set in a global index (or them with a slot)."""
    return (int(shard) << (EPOCH_BITS + SLOT_BITS)) | ((int(epoch) & _EPOCH_MASK) << SLOT_BITS)


def encode_indices(shard: int, epoch: int, slots: np.ndarray) -> np.ndarray:
    """Return the global int64 indices of ``slots`` in ``shard`` at ``epoch``."""
    return np.asarray(slots, dtype=np.int64) | np.int64(index_head(shard, epoch))


def encode_updates(slots: np.ndarray, priorities: np.ndarray, generations: np.ndarray | None) -> bytes | np.ndarray:
    """Return a batch of priority updates for one shard in one buffer (see :func:`decode_updates`).

    A small batch is ``bytes``: Ray sends a ``bytes`` argument about as cheaply as an int, while
    every numpy array argument costs it tens of microseconds more (measured: a sample call carrying
    an update of 256 as three arrays took 190 us more than one carrying it as bytes). A batch of more
    than 64 KB is one ``uint8`` array instead, which Ray moves without copying it again.
    """
    n = slots.shape[0]
    out = np.empty(8 + (16 if generations is None else 24) * n, dtype=np.uint8)
    out[:8].view(np.int64)[0] = n
    out[8 : 8 + 8 * n].view(np.int64)[:] = slots
    out[8 + 8 * n : 8 + 16 * n].view(np.float64)[:] = priorities
    if generations is not None:
        out[8 + 16 * n :].view(np.int64)[:] = generations
    return out.tobytes() if out.nbytes <= _INLINE_UPDATE else out


def decode_updates(data: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return ``(slots, priorities, generations)`` of :func:`encode_updates` (None: no generations), writable.

    Raises:
        ValueError: ``data`` is not an encoded update batch.
    """
    n = int(np.frombuffer(data, np.int64, 1)[0]) if len(data) >= 8 else -1
    if n < 0 or len(data) not in (8 + 16 * n, 8 + 24 * n):
        raise ValueError(f"not an encoded priority-update batch ({len(data)} bytes)")
    values = np.frombuffer(data, np.int64, offset=8).copy()  # one copy: writable, as the tree's kernels want
    generations = values[2 * n :] if n and len(data) == 8 + 24 * n else None  # none sent, or no items
    return values[:n], values[n : 2 * n].view(np.float64), generations


def decode_indices(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(shards, epochs, slots)`` of global indices (negative indices give shard -1)."""
    indices = np.asarray(indices, dtype=np.int64)
    shards = indices >> (EPOCH_BITS + SLOT_BITS)  # arithmetic shift: negative indices stay negative
    epochs = (indices >> SLOT_BITS) & _EPOCH_MASK
    return np.where(indices < 0, -1, shards), epochs, indices & _SLOT_MASK


@dataclasses.dataclass(frozen=True)
class ShardCheckpoints:
    """Where and how often shards save themselves, in xreplay's checkpoint format.

    Each shard keeps ``directory/shard-NNN`` (a checkpoint directory, saved
    incrementally) and ``directory/shard-NNN.state`` (a 32-byte counter file
    updated after every write: the items written and the restarts, which is
    how a restarted shard knows what it lost). A shard saves after a write
    once ``every_items`` items or ``every_s`` seconds have passed since its
    last save; with neither set it saves only when asked
    (:meth:`~xreplay.distributed.ReplayClient.checkpoint`).

    Args:
        directory: A local directory (one per replay; on a cluster, storage
            that every node mounts, so a shard restarted elsewhere finds it).
        every_s: Seconds between saves, or None.
        every_items: Items written between saves, or None.
        resume: Start each shard from the checkpoint already in ``directory``
            instead of refusing a directory that holds one.
    """

    directory: str
    every_s: float | None = None
    every_items: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        """Check the intervals."""
        if self.every_s is not None and not self.every_s > 0:
            raise ValueError(f"every_s must be > 0 seconds or None, received {self.every_s!r}")
        if self.every_items is not None and (isinstance(self.every_items, bool) or not self.every_items > 0):
            raise ValueError(f"every_items must be an int > 0 or None, received {self.every_items!r}")


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What a client needs to know once about a shard's buffer.

    Attributes:
        kind: ``"transitions"`` or ``"episodes"``.
        prioritized: Whether the shard samples by priority.
        capacity: Items the shard keeps.
        beta: The importance-sampling exponent (a schedule of the sample count), when prioritized.
        max_seq_length: Steps per episode (episode shards).
        per_step: Names of the per-step fields (episode shards).
    """

    kind: str
    prioritized: bool
    capacity: int
    beta: Any = None
    max_seq_length: int = 0
    per_step: tuple[str, ...] = ()


class ShardState(NamedTuple):
    """A shard's counters, sent with every reply so that the client's view stays fresh (a tuple: cheap to pickle).

    Attributes:
        shard: The shard's number.
        epoch: Restarts so far (0 for the first start).
        size: Items stored.
        mass: Sampling mass: the sum of ``priority ** alpha`` (prioritized) or ``size`` (uniform).
        min_leaf: Smallest positive ``priority ** alpha`` (``inf`` when none or uniform).
        written: Items ever written (the buffer's writer count).
        lost: Items lost by restarts: written after the checkpoint each restart went back to.
        checkpoints: Saves made by this incarnation.
        checkpointed: Items written at the last save (or restore).
        stale_updates: Priority updates the buffer skipped as stale.
        serial: States this incarnation has sent (orders replies that arrive out of order).
    """

    shard: int
    epoch: int
    size: int
    mass: float
    min_leaf: float
    written: int
    lost: int = 0
    checkpoints: int = 0
    checkpointed: int = 0
    stale_updates: int = 0
    serial: int = 0


class ShardDraw(NamedTuple):
    """The items a shard drew for one request: ``sum(counts)`` rows, batch after batch (a tuple).

    Every array travels in one contiguous buffer (:mod:`xreplay.distributed.packing`): Ray moves it
    as one object, and the client reads views of it.

    Attributes:
        state: The shard's state after the draw.
        data: The packed arrays (``uint8``).
        fields: Layout of the flat fields in ``data`` (no ``filled``).
        meta: Layout of ``indices`` (the global indices of the slots drawn, int64), of ``generations``
            and ``leaves`` (their ``priority ** alpha`` as the shard's tree holds them) from
            prioritized shards, of ``lengths`` from episode shards.
    """

    state: ShardState
    data: np.ndarray
    fields: Layout = ()
    meta: Layout = ()

    def unpack(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Return the fields and the metadata as read-only views of :attr:`data`."""
        return unpack(self.data, self.fields), unpack(self.data, self.meta)

    @property
    def slots(self) -> np.ndarray:
        """Return the slots drawn (the global indices without their shard and epoch)."""
        return unpack(self.data, self.meta).get("indices", np.zeros(0, np.int64)) & np.int64(_SLOT_MASK)

    @property
    def leaves(self) -> np.ndarray | None:
        """Return the slots' leaf masses (prioritized shards), else None."""
        return unpack(self.data, self.meta).get("leaves")
