"""SampleQueue: a client's sample requests, prefetched, resolved, redrawn over the live shards on a fault.

A request draws per-shard counts for ``batches_per_call`` batches from the
masses the client last saw (:func:`~xreplay.distributed.sampling.draw_counts`),
asks the rate limiter for a permit for all of them, and sends one call to
every live shard (pending priority updates ride along). ``prefetch``
requests stay outstanding beyond the one in use. When a reply says a shard
is down (or holds less than the client thought), the whole request is drawn
again over the live shards, so the draw stays exact over what is live.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

import numpy as np
import torch

from xreplay.distributed.backend import ShardDown
from xreplay.distributed.packing import BlockPool
from xreplay.distributed.parts import ClientParts
from xreplay.distributed.protocol import ShardDraw, encode_updates
from xreplay.distributed.sampling import Batches, assemble, draw_counts, gather_index
from xreplay.errors import InsufficientDataError, ShardUnavailableError

__all__ = ["SampleQueue"]

Key = tuple[int, bool, bool]  # (items per batch, with replacement, truncate)


@dataclasses.dataclass
class _Request:
    """An outstanding sample request: every live shard's call, for ``batches`` batches."""

    key: Key
    batches: int
    counts: np.ndarray
    calls: dict[int, Any]
    updates: dict[int, int]  # shard -> priority updates riding with its call


def _enough(masses: np.ndarray, n: int, replace: bool) -> bool:
    """Return whether ``n`` items can be drawn from shards of these masses (sizes without replacement)."""
    return bool(masses.sum() > 0) if replace else bool(masses.sum() >= n)


class SampleQueue:
    """The outstanding sample requests and the ready batches of one :class:`~xreplay.distributed.ClientParts`."""

    def __init__(self, client: ClientParts):
        """Start with nothing requested."""
        self.client = client
        self.queue: collections.deque[_Request] = collections.deque()
        self.ready: Batches | None = None
        self.ready_key: Key | None = None
        self.pool = BlockPool()  # memory of past requests, reused once their batches are gone
        self._device = ("cpu", torch.device("cpu"))  # the options' device, made once
        self._whole_counts: dict[tuple[int, int], np.ndarray] = {}

    def next(self, key: Key) -> Any:
        """Return the next batch for ``key``, keeping ``prefetch`` requests outstanding."""
        if self.ready is not None and len(self.ready) and self.ready_key == key:
            return self.ready.take()
        if self.queue and self.queue[0].key != key:
            self.queue.clear()  # another size: drop what was prefetched for the old one
        prefetch = self.client.options.prefetch
        while len(self.queue) < prefetch + 1:
            self.queue.append(self._request(key, permit=True))
        self.ready, self.ready_key = self._resolve(self.queue.popleft()), key
        while len(self.queue) < prefetch:
            self.queue.append(self._request(key, permit=True))
        return self.ready.take()

    def clear(self) -> None:
        """Drop the outstanding requests and the ready batches."""
        self.queue.clear()
        self.ready = None

    def _masses(self, replace: bool) -> np.ndarray:
        """Return each shard's sampling mass (its size without replacement), 0 while down."""
        client = self.client
        masses = np.array([st.mass if replace else st.size for st in client.states], dtype=np.float64)
        masses[~client.live] = 0.0
        return masses

    def _request(self, key: Key, permit: bool) -> _Request:
        """Draw counts over the live shards and send one call to each of them."""
        client = self.client
        n, replace, _truncate = key
        batches = client.options.batches_per_call
        token = client.backend.sample_permit(n * batches, client.options.rate_limit_timeout) if permit else None
        if replace and client.num_shards == 1 and client.states[0].mass > 0.0 and client.live[0]:
            counts = self._whole(n, batches)  # one shard gives every item: nothing to draw, no array to make
        else:
            masses = self._masses(replace)
            if n and not _enough(masses, n, replace):
                masses = self._wait_for_items(replace, n, token)
            counts = draw_counts(client.rng, masses, n, batches, replace)
        calls, riding = {}, {}
        totals = counts.sum(axis=0).tolist() if replace and client.num_shards > 1 else [n * batches]
        live = client.live
        for s in range(client.num_shards) if client.num_shards == 1 or live.all() else np.flatnonzero(live).tolist():
            update = client.updates.take(s) if client.updates.pending else None  # riding along: applied before the draw
            args: list[Any] = [counts[:, s].tolist() if not replace else totals[s]]  # with replacement: the total
            if update is not None or token is not None or not replace:  # the defaults otherwise: less to send
                args.append(None if update is None else encode_updates(*update))  # bytes: cheaper than arrays
            if token is not None or not replace:
                args += [replace, token]
            calls[s] = client.backend.submit(s, "sample", *args)
            riding[s] = 0 if update is None else int(update[0].size)
        return _Request(key, batches, counts, calls, riding)

    def _whole(self, n: int, batches: int) -> np.ndarray:
        """Return the ``[batches, 1]`` counts of a one-shard request (the same read-only array every time)."""
        counts = self._whole_counts.get((n, batches))
        if counts is None:
            if len(self._whole_counts) >= 8:
                self._whole_counts.clear()
            counts = self._whole_counts[n, batches] = np.full((batches, 1), n, dtype=np.int64)
            counts.flags.writeable = False
        return counts

    def _wait_for_items(self, replace: bool, n: int, token: Any) -> np.ndarray:
        """Return the masses once the shards hold enough to draw ``n`` items (or as they are, to refuse).

        The client's view may be old: ask the shards. With a rate limiter, wait for its permit (it
        allows the sample once enough items were inserted), then for those writes to land.
        """
        client = self.client
        client.refresh()
        masses = self._masses(replace)
        if token is None or _enough(masses, n, replace):
            return masses
        client.backend.resolve(token, client.options.rate_limit_timeout + client.options.timeout)
        deadline = time.monotonic() + client.options.timeout
        while not _enough(masses, n, replace) and time.monotonic() < deadline:
            time.sleep(0.005)
            client.refresh()
            masses = self._masses(replace)
        return masses

    def _resolve(self, request: _Request) -> Batches:
        """Wait for a request's draws and assemble its batches; redraw it over the live shards on a fault."""
        client = self.client
        attempts = client.num_shards + 2
        for _attempt in range(attempts):
            shards = list(request.calls)
            timeout = client.options.timeout + client.options.rate_limit_timeout
            replies = client.backend.gather([request.calls[s] for s in shards], timeout)
            draws, failed = {}, False
            for shard, reply in zip(shards, replies, strict=True):
                if type(reply) is ShardDraw:  # the usual answer first
                    draws[shard] = reply
                    client._observe(reply.state)
                elif isinstance(reply, ShardDown):
                    client._mark_down(shard, reply.cause)
                    client.updates.dropped_down += request.updates.get(shard, 0)
                    failed = True
                elif isinstance(reply, InsufficientDataError) and request.counts[:, shard].sum():
                    failed = True  # the shard holds less than its last state said (it restarted): ask again
                elif isinstance(reply, BaseException):
                    raise reply
                else:
                    draws[shard] = reply
                    client._observe(reply.state)
            if not failed:
                return self._assemble(request, draws)
            client.counters["requests_redrawn"] += 1
            client._service()
            request = self._request(request.key, permit=False)  # the limiter already allowed these items
        raise ShardUnavailableError(f"a sample request failed {attempts} times: shards keep going down")

    def _assemble(self, request: _Request, draws: dict[int, ShardDraw]) -> Batches:
        """Return the request's batches from the shards' draws."""
        client = self.client
        n, _replace, truncate = request.key
        index = None if client.num_shards == 1 else gather_index(client.rng, request.counts, n)
        minimum, total = float("inf"), None
        if client.info.prioritized:
            states, live = client.states, client.live
            if len(states) == 1:
                minimum, total = states[0].min_leaf, states[0].mass  # it answered: it is live
            else:
                minimum = min((st.min_leaf for s, st in enumerate(states) if live[s]), default=minimum)
                total = sum(st.mass for s, st in enumerate(states) if live[s])  # each answering shard's is fresh
        step = client.batches_drawn
        client.batches_drawn += request.batches
        if self._device[0] != client.options.device:
            self._device = (client.options.device, torch.device(client.options.device))
        return assemble(
            client.info, draws, index, n, request.batches, step, minimum, truncate, self._device[1], self.pool, total
        )
