"""ShardWrites: a client's writes, routed, rate-limited, sent without waiting, optionally gathered.

A write asks the rate limiter for a permit (or, with ``block=False``, asks
whether it may go now and is skipped if not), picks its shard with the
client's routing and is sent; the reply is collected later. Once more than
``max_inflight_writes`` are outstanding the oldest are collected in one
wait (a shard runs one client's calls in order, so they are usually done);
an error a shard raised for a bad write is raised then, or by ``flush``.
A shard that dies with writes in flight loses them: they are counted as
``writes_unacknowledged`` and given back to the rate limiter. With
``write_batch`` > 0, transitions are first gathered by a
:class:`~xreplay.distributed.staging.WriteStage` into one write.
"""

from __future__ import annotations

import collections
from typing import Any

from xreplay.distributed.backend import ShardDown
from xreplay.distributed.parts import ClientParts
from xreplay.distributed.staging import WriteStage

__all__ = ["ShardWrites"]


class ShardWrites:
    """The staged and in-flight writes of one :class:`~xreplay.distributed.ClientParts`."""

    def __init__(self, client: ClientParts):
        """Start with nothing staged or in flight."""
        self.client = client
        self.inflight: collections.deque[tuple[Any, int, int]] = collections.deque()
        self.stage = WriteStage()

    def add(self, data: dict[str, Any], lengths: Any, n: int, writer_id: int, block: bool) -> int:
        """Write ``n`` items (staged first for transitions when ``write_batch`` > 0); return the items taken."""
        batch = self.client.options.write_batch
        if batch <= 0 or lengths is not None:
            return self.send(data, lengths, n, writer_id, block)
        if block or self.client.backend.try_insert(n):
            if not self.stage.add(data, writer_id):  # another layout or writer: send the staged ones first
                self.send_staged()
                self.stage.add(data, writer_id)
            if self.stage.rows >= batch:
                self.send_staged()
            return n
        self.client.counters["writes_skipped"] += n
        return 0

    def send_staged(self) -> None:
        """Send the staged transitions as one write (their permits: asked now, or already granted)."""
        if self.stage.rows:
            data, rows, writer_id = self.stage.take()
            self.send(data, None, rows, writer_id if writer_id is not None else self.client.writer_id, True)

    def send(self, data: dict[str, Any], lengths: Any, n: int, writer_id: int, block: bool) -> int:
        """Send one write to its shard, behind the rate limiter; return ``n``, or 0 when skipped."""
        client = self.client
        backend = client.backend
        if block:
            permit = backend.insert_permit(n, client.options.rate_limit_timeout)
        elif backend.try_insert(n):
            permit = None
        else:
            client.counters["writes_skipped"] += n
            return 0
        shard = client.routing.choose(client.live, writer_id)
        self.inflight.append((backend.submit(shard, "write", data, lengths, permit), n, shard))
        limit = client.options.max_inflight_writes
        if len(self.inflight) > limit:
            self.collect(len(self.inflight) - limit // 2)  # the oldest are done by now: one wait for them
        return n

    def collect(self, count: int) -> None:
        """Collect the replies of the ``count`` oldest writes (one wait); raise a shard's error for a bad write."""
        client = self.client
        done = [self.inflight.popleft() for _ in range(min(count, len(self.inflight)))]
        if not done:
            return
        timeout = client.options.timeout + client.options.rate_limit_timeout
        error = None
        for (_call, n, shard), reply in zip(done, client.backend.gather([d[0] for d in done], timeout), strict=True):
            if isinstance(reply, ShardDown):
                client._mark_down(shard, reply.cause)
                client.counters["writes_unacknowledged"] += n  # the shard died with them: never stored
                client.backend.limiter_delete(n)
            elif isinstance(reply, BaseException):
                error = error or reply
            else:
                client._observe(reply)
        if error is not None:
            raise error

    def flush(self) -> None:
        """Send what is staged and collect every reply."""
        self.send_staged()
        self.collect(len(self.inflight))
