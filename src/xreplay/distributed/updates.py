"""PriorityUpdates: a client's priority updates, checked here, grouped by shard, sent asynchronously.

An update is checked entirely before anything is queued (lengths, finite
non-negative priorities, slots inside the shard), with the errors a local
buffer raises. Then each index is split into shard, epoch and slot
(:func:`~xreplay.distributed.protocol.decode_indices`): an unknown shard,
an epoch other than the shard's current one (the item was lost in a
restart) or a shard that is down skips the update, counted. The rest waits
per shard and rides with the next sample request to that shard (no message
of its own: the shard applies it before drawing), or goes in its own message
once ``update_batch`` (when > 0) are pending, or on :meth:`PriorityUpdates.send`.
Replies of those messages (with the count the shard skipped as overwritten
since) are collected without waiting.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import torch

from xreplay.buffers.transitions import TransitionSample
from xreplay.distributed.backend import ShardDown
from xreplay.distributed.parts import ClientParts
from xreplay.distributed.protocol import EPOCH_BITS, decode_indices, encode_updates
from xreplay.errors import FieldShapeError, FieldValueError, IndexOutOfRangeError

__all__ = ["PriorityUpdates"]

_EPOCH_MASK = (1 << EPOCH_BITS) - 1


def _host(value: Any, dtype: type) -> np.ndarray:
    """Return ``value`` (array, list or tensor) as a flat numpy array of ``dtype``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype).reshape(-1)


class PriorityUpdates:
    """The pending and in-flight priority updates of one :class:`~xreplay.distributed.ClientParts`."""

    def __init__(self, client: ClientParts):
        """Start with nothing pending."""
        self.client = client
        self.pending: dict[int, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = collections.defaultdict(list)
        self.pending_count = 0
        self.inflight: collections.deque[tuple[Any, int, int]] = collections.deque()
        self.unknown_shard = self.stale_epoch = self.dropped_down = 0
        self._waited_stale = 0

    def add(self, indices: Any, priorities: Any, generations: Any = None) -> int:
        """Check and queue an update; return how many of its items were skipped here.

        Args:
            indices: A sample of this client (its indices and generations are used), or global indices.
            priorities: New priorities (finite, >= 0), one per index.
            generations: The sample's generations; ``"current"`` updates whatever the slots hold now.

        Raises:
            TypeError: The shards sample uniformly.
            FieldShapeError: The arguments have different lengths.
            FieldValueError: A priority is NaN, infinite or negative; or generations are missing.
            IndexOutOfRangeError: A slot lies outside its shard's capacity.
        """
        client = self.client
        if not client.info.prioritized:
            raise TypeError("update_priorities needs prioritized shards: build them with sampler='prioritized'")
        if isinstance(indices, TransitionSample):
            if generations is not None:
                raise FieldValueError("pass generations only with plain indices, not with a TransitionSample")
            indices, generations = indices.indices, indices.generations
        elif generations is None:
            raise FieldValueError(
                "update_priorities got plain indices without generations: pass the sample itself, its "
                "generations (sample.generations), or generations='current' to update whatever the slots hold now"
            )
        index = _host(indices, np.int64)
        values = _host(priorities, np.float64)
        current = isinstance(generations, str)
        if current and generations != "current":
            raise FieldValueError(f"generations must be an array, None or 'current'; received {generations!r}")
        seen = None if current else _host(generations, np.int32)
        self._check(index, values, seen)
        shards, epochs, slots = decode_indices(index)
        known = (shards >= 0) & (shards < client.num_shards)
        skipped = int(index.size - np.count_nonzero(known))
        self.unknown_shard += skipped
        group = np.where(known, shards, -1)
        order = np.argsort(group, kind="stable")  # grouped by shard, unknown shards (-1) first
        starts = np.searchsorted(group[order], np.arange(client.num_shards + 1))  # shard s: [starts[s], starts[s+1])
        capacity = client.info.capacity
        groups = []
        for shard in range(client.num_shards):  # one step per shard, not per item
            part = order[starts[shard] : starts[shard + 1]]
            if part.size == 0:
                continue
            if int(slots[part].max()) >= capacity:
                bad = int(slots[part][slots[part] >= capacity][0])
                raise IndexOutOfRangeError(f"slot {bad} of shard {shard} is outside its capacity {capacity}")
            groups.append((shard, part))
        for shard, part in groups:  # everything is checked: queue it
            if not client.live[shard]:
                self.dropped_down += part.size
                skipped += part.size
                continue
            fresh = epochs[part] == (client.states[shard].epoch & _EPOCH_MASK)
            stale = int(part.size - np.count_nonzero(fresh))
            if stale:
                self.stale_epoch += stale
                skipped += stale
                part = part[fresh]
            if not part.size:
                continue
            if seen is None:  # "current": no generations to check, sent at once on its own
                self._submit(shard, slots[part], values[part], None)
            else:
                self.pending[shard].append((client.states[shard].epoch, slots[part], values[part], seen[part]))
                self.pending_count += part.size
        if 0 < client.options.update_batch <= self.pending_count:
            self.send()
        return skipped

    @staticmethod
    def _check(index: np.ndarray, values: np.ndarray, seen: np.ndarray | None) -> None:
        """Raise the local buffer's errors for mismatched lengths and invalid priorities."""
        if values.shape != index.shape:
            raise FieldShapeError(f"got {index.shape[0]} indices but {values.shape[0]} priorities")
        if seen is not None and seen.shape != index.shape:
            raise FieldShapeError(f"got {index.shape[0]} indices but {seen.shape[0]} generations")
        if values.size and not (values.min() >= 0.0 and values.max() < np.inf):
            k = int(np.flatnonzero(~np.isfinite(values) | (values < 0))[0])
            raise FieldValueError(
                f"priority {values[k]} for index {int(index[k])} (position {k}) is invalid: "
                f"priorities must be finite and >= 0"
            )

    def take(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Remove and return ``(slots, priorities, generations)`` pending for ``shard``, or None.

        Parts queued under an epoch the shard has left since (it restarted) are dropped as stale.
        """
        parts = self.pending.pop(shard, None)
        if not parts:
            return None
        epoch = self.client.states[shard].epoch
        count = sum(p[1].size for p in parts)
        self.pending_count -= count
        fresh = [p for p in parts if p[0] == epoch]
        self.stale_epoch += count - sum(p[1].size for p in fresh)
        if not fresh:
            return None
        if len(fresh) == 1:
            return fresh[0][1], fresh[0][2], fresh[0][3]
        return tuple(np.concatenate([p[k] for p in fresh]) for k in (1, 2, 3))  # type: ignore[return-value]

    def send(self) -> None:
        """Send what is pending to each live shard in its own message."""
        client = self.client
        for shard in list(self.pending):
            if not client.live[shard]:
                continue
            update = self.take(shard)
            if update is not None:
                self._submit(shard, *update)

    def _submit(self, shard: int, slots: np.ndarray, values: np.ndarray, seen: np.ndarray | None) -> None:
        """Send one update message; collect the oldest replies once too many are outstanding."""
        call = self.client.backend.submit(shard, "update_priorities", encode_updates(slots, values, seen))
        self.inflight.append((call, shard, slots.size))
        limit = self.client.options.max_inflight_updates
        if len(self.inflight) > limit:
            self.collect(len(self.inflight) - limit // 2)  # the oldest are done by now: one wait for them

    def collect(self, count: int) -> None:
        """Collect the replies of the ``count`` oldest messages (one wait); raise a shard's error."""
        client = self.client
        done = [self.inflight.popleft() for _ in range(min(count, len(self.inflight)))]
        error = None
        replies = client.backend.gather([d[0] for d in done], client.options.timeout)
        for (_call, shard, size), reply in zip(done, replies, strict=True):
            if isinstance(reply, ShardDown):
                client._mark_down(shard, reply.cause)
                self.dropped_down += size
            elif isinstance(reply, BaseException):
                error = error or reply
            else:
                stale, state = reply
                self._waited_stale += stale
                client._observe(state)
        if error is not None:
            raise error

    def wait(self) -> int:
        """Send what is pending, wait for every reply; return the updates the shards skipped meanwhile."""
        self.send()
        self.collect(len(self.inflight))
        stale, self._waited_stale = self._waited_stale, 0
        return stale
