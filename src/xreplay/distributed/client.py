"""ReplayClient: a sharded replay used like a local buffer (writes, exact sampling, priority updates, stats).

The client holds no items: it routes writes to shards, draws per-shard
counts for samples (:mod:`xreplay.distributed.sampling`), assembles the
shards' numpy arrays into the same sample objects a local buffer returns
(tensors are made here, at the edge), and batches priority updates back to
the shards that hold the items. It pickles cheaply, so the learner and each
actor get their own copy. What a shard sends with every reply (its size,
mass, minimum, epoch, losses) keeps the client's view of the shards fresh.

Throughput: ``prefetch`` sample requests stay outstanding while the learner
uses a batch, and each request asks every shard for ``batches_per_call``
batches at once; writes and priority updates are sent without waiting for
their replies. Once more than ``max_inflight_writes`` (``max_inflight_updates``)
are outstanding, the oldest are collected in one wait (a shard executes one
client's calls in order, so they are usually done by then); an error a shard
raised for one of them is raised then. Prefetched batches were drawn from the
priorities their request saw.

Faults: a shard that does not answer is marked down; its share of a request
is drawn again over the live shards (the whole request is redrawn, so the
draw is exact over what is live), its writes go to other shards and its
priority updates are dropped and counted. A down shard is probed every
``probe_interval`` seconds; when it answers again (restarted from its
checkpoint, a new epoch) it is used again and what it lost is reported by
:meth:`ReplayClient.stats`. A shard down longer than ``shard_timeout``
raises :class:`~xreplay.errors.ShardUnavailableError`.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.distributed.backend import ShardBackend, ShardDown
from xreplay.distributed.options import ClientOptions
from xreplay.distributed.payload import batch_rows, to_numpy, with_batch_dim
from xreplay.distributed.protocol import ShardInfo, ShardState
from xreplay.distributed.requests import SampleQueue
from xreplay.distributed.routing import Routing, make_routing
from xreplay.distributed.updates import PriorityUpdates
from xreplay.distributed.writes import ShardWrites
from xreplay.errors import ShardFactoryError, ShardUnavailableError

__all__ = ["ClientOptions", "ReplayClient"]  # ClientOptions lives in options.py


class ReplayClient:
    """A sharded replay with the methods of a local buffer; built by :class:`~xreplay.distributed.RayReplay`.

    Args:
        backend: Reaches the shards.
        options: Batching, waiting and fault handling.
        routing: ``"round_robin"``, ``"by_writer"`` or a :class:`~xreplay.distributed.routing.Routing`.
        writer_id: This client's writer number (routing, and the round robin's first shard).
        seed: Seed of the generator that draws the per-shard counts and the batch order.

    Example:
        >>> from xreplay import TransitionBuffer
        >>> from xreplay.distributed.backend import InProcessBackend
        >>> from xreplay.distributed.protocol import decode_indices
        >>> backend = InProcessBackend(lambda: TransitionBuffer(100, sampler="prioritized", seed=0), num_shards=2)
        >>> replay = ReplayClient(backend, seed=0)
        >>> replay.extend({"obs": np.arange(6.0)}), replay.extend({"obs": np.arange(4.0)}), len(replay)
        (6, 4, 10)
        >>> batch = replay.sample(3)
        >>> batch["obs"].shape, batch.weights.tolist(), sorted(set(decode_indices(batch.indices)[0].tolist()))
        (torch.Size([3]), [1.0, 1.0, 1.0], [0, 1])
        >>> replay.update_priorities(batch, [0.5, 2.0, 1.0])
        0
        >>> replay.stats()["degraded"], replay.stats()["size"]
        (False, 10)
    """

    def __init__(
        self,
        backend: ShardBackend,
        options: ClientOptions | None = None,
        routing: str | Routing = "round_robin",
        writer_id: int = 0,
        seed: int | None = None,
    ):
        """Connect: ask every shard for its description."""
        self.backend = backend
        self.options = options or ClientOptions()
        self.writer_id = int(writer_id)
        self._routing_spec = routing
        self.routing = make_routing(routing, self.writer_id)
        self.rng = np.random.default_rng(seed)
        self.num_shards = backend.num_shards
        self.batches_drawn = 0
        replies = backend.gather([backend.submit(s, "describe") for s in range(self.num_shards)], self.options.timeout)
        for shard, reply in enumerate(replies):
            if isinstance(reply, ShardDown):
                raise ShardUnavailableError(f"shard {shard} did not start: {reply.cause}")
            if isinstance(reply, BaseException):
                raise reply  # e.g. the factory's ShardFactoryError
        self.info: ShardInfo = replies[0][0]
        kinds = {(info.kind, info.prioritized) for info, _state in replies}
        if len(kinds) > 1:
            raise ShardFactoryError(f"the shards hold different kinds of buffer {sorted(kinds)}; use one factory")
        self.states: list[ShardState] = [state for _info, state in replies]
        self._reset_local()

    def _reset_local(self) -> None:
        """Start this process's in-flight bookkeeping (not pickled)."""
        shards = self.num_shards
        self.live = np.ones(shards, dtype=bool)
        self._all_live = True  # ``live.all()``, kept by the two places that change ``live`` (a check per call)
        self._down_since = np.zeros(shards)
        self._down_cause: dict[int, object] = {}
        self._probes: dict[int, tuple[Any, float]] = {}
        self.requests = SampleQueue(self)
        self.writes = ShardWrites(self)
        self.updates = PriorityUpdates(self)
        self.counters = collections.Counter[str]()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the connection and the generator, not this process's outstanding calls."""
        return {
            "backend": self.backend, "options": self.options, "routing": self._routing_spec,
            "writer_id": self.writer_id, "info": self.info, "states": list(self.states),
            "rng": self.rng.bit_generator.state, "batches_drawn": self.batches_drawn,
        }  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild a client from :meth:`__getstate__`."""
        self.backend, self.options, self.info = state["backend"], state["options"], state["info"]
        self.writer_id, self._routing_spec = state["writer_id"], state["routing"]
        self.routing = make_routing(self._routing_spec, self.writer_id)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.num_shards, self.states = self.backend.num_shards, state["states"]
        self.batches_drawn = state["batches_drawn"]
        self._reset_local()

    def clone(self, writer_id: int | None = None, options: ClientOptions | None = None) -> ReplayClient:
        """Return a copy of this client (its own outstanding calls), writing as ``writer_id``, with ``options``."""
        state = self.__getstate__()
        if writer_id is not None:
            state["writer_id"] = int(writer_id)
        if options is not None:
            state["options"] = options
        clone = ReplayClient.__new__(ReplayClient)
        clone.__setstate__(state)
        return clone

    # -- writes -----------------------------------------------------------------

    def add(
        self, item: Mapping[str, Any], lengths: Any = None, writer_id: int | None = None, block: bool = True
    ) -> int:
        """Write one transition (no batch dimension), or a batch of whole episodes (episode shards).

        Returns:
            The items written (0 when ``block=False`` and the rate limiter said no).
        """
        if self.info.kind == "transitions":
            if lengths is not None:
                raise TypeError("lengths apply to episode shards; a transition shard's add takes one transition")
            return self._write(to_numpy({k: with_batch_dim(v) for k, v in item.items()}), None, 1, writer_id, block)
        data = to_numpy(item)
        return self._write(data, None if lengths is None else np.asarray(lengths), batch_rows(data), writer_id, block)

    def extend(self, batch: Mapping[str, Any], writer_id: int | None = None, block: bool = True) -> int:
        """Write a batch of transitions (leading batch dimension) to one shard chosen by the routing.

        The write is sent without waiting for the shard; an error the shard raises for it (a bad
        field, shape or dtype; the shard is then unchanged) is raised by a later call of this client
        or by :meth:`flush`.

        Args:
            batch: Field -> array or tensor ``[n, ...]`` (nested mappings allowed).
            writer_id: Route as this writer (default: the client's ``writer_id``).
            block: Wait for the rate limiter (up to ``rate_limit_timeout``); with False, skip the
                write when the limiter says no now.

        Returns:
            The items written (0 when skipped).
        """
        if self.info.kind != "transitions":
            raise TypeError("extend writes transitions; an episode shard takes whole episodes with add()")
        data = to_numpy(batch)
        return self._write(data, None, batch_rows(data), writer_id, block)

    def _write(self, data: dict[str, Any], lengths: Any, n: int, writer_id: int | None, block: bool) -> int:
        """Hand a write to the write queue (routing, rate limiter, staging)."""
        self._service()
        return self.writes.add(data, lengths, n, self.writer_id if writer_id is None else writer_id, block)

    # -- sampling ---------------------------------------------------------------

    def sample(self, n: int, replace: bool = False, truncate: bool = False) -> Any:
        """Sample ``n`` items as one local buffer holding every shard's items would.

        Transition shards sample with replacement (``replace`` is ignored) and return a
        :class:`~xreplay.buffers.transitions.TransitionSample` whose ``indices`` are global
        indices (shard, epoch and slot) and whose ``weights`` use the global minimum; episode
        shards return an :class:`~xreplay.buffers.episodes.EpisodeSample`, without replacement
        unless ``replace``, cut to the longest episode with ``truncate``.

        Raises:
            InsufficientDataError: The live shards hold too few items.
            RateLimiterTimeout: The rate limiter did not allow the sample in time.
            ShardUnavailableError: A shard has been down longer than ``shard_timeout``.
        """
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        key = (int(n), bool(replace) or self.info.kind == "transitions", bool(truncate))
        self._service()
        return self.requests.next(key)

    def can_sample(self, n: int) -> bool:
        """Return whether ``n`` items can be sampled now (episodes: without replacement)."""
        size = len(self)
        return size >= n if self.info.kind == "episodes" else size > 0 or n == 0

    # -- priority updates ---------------------------------------------------------

    def update_priorities(self, indices: Any, priorities: Any, generations: Any = None, wait: bool = False) -> int:
        """Send new priorities to the shards holding the sampled items; see :meth:`PriorityUpdates.add`.

        Returns:
            The updates skipped: unknown shard, stale epoch (the item was lost in a restart) or a
            shard that is down; with ``wait`` also those the shards skipped as stale.
        """
        self._service()
        skipped = self.updates.add(indices, priorities, generations)
        if wait:
            skipped += self.updates.wait()
        return skipped

    # -- state ----------------------------------------------------------------------

    def _observe(self, state: ShardState) -> None:
        """Adopt a shard's state unless a newer one arrived first."""
        known = self.states[state.shard]
        if (state.epoch, state.serial) >= (known.epoch, known.serial):
            self.states[state.shard] = state

    def _mark_down(self, shard: int, cause: object) -> None:
        """Stop using ``shard`` until a probe finds it back."""
        if self.live[shard]:
            self.live[shard] = False
            self._all_live = False
            self._down_since[shard] = time.monotonic()
            self.counters["shard_faults"] += 1
        self._down_cause[shard] = cause

    def _service(self) -> None:
        """Probe down shards; raise for a shard down too long."""
        if self._all_live:
            return
        now = time.monotonic()
        for shard in np.flatnonzero(~self.live):
            self._probe(int(shard), now)

    def _probe(self, shard: int, now: float) -> None:
        """Check or start a liveness probe of a down shard."""
        probe = self._probes.get(shard)
        if probe is not None and self.backend.ready([probe[0]])[0]:
            reply = self.backend.gather([probe[0]], self.options.timeout)[0]
            del self._probes[shard]
            if not isinstance(reply, BaseException):
                self._observe(reply[1])
                self.live[shard] = True
                self._all_live = bool(self.live.all())
                self.counters["shard_recoveries"] += 1
                return
            self._down_cause[shard] = getattr(reply, "cause", reply)
        if now - self._down_since[shard] > self.options.shard_timeout:
            raise ShardUnavailableError(
                f"shard {shard} has not answered for {now - self._down_since[shard]:.1f} s "
                f"(shard_timeout={self.options.shard_timeout}); last error: {self._down_cause.get(shard)!r}. "
                f"Its restarts may be used up or its node lost"
            )
        if shard not in self._probes and (probe is None or now - probe[1] >= self.options.probe_interval):
            self._probes[shard] = (self.backend.submit(shard, "describe"), now)

    def refresh(self) -> list[ShardState]:
        """Ask every live shard for its state now (down shards are probed); return the states."""
        self._service()
        live = [int(s) for s in np.flatnonzero(self.live)]
        replies = self.backend.gather([self.backend.submit(s, "state") for s in live], self.options.timeout)
        for shard, reply in zip(live, replies, strict=True):
            if isinstance(reply, ShardDown):
                self._mark_down(shard, reply.cause)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                self._observe(reply)
        return list(self.states)

    def flush(self) -> None:
        """Wait until every write and priority update this client sent has been applied (or failed)."""
        self.writes.flush()
        self.updates.wait()

    def __len__(self) -> int:
        """Return the items held by the live shards, after this client's writes are applied."""
        self.flush()
        return int(sum(st.size for s, st in enumerate(self.refresh()) if self.live[s]))

    def stats(self) -> dict[str, Any]:
        """Return the replay's state: sizes, live and down shards, losses, skipped updates, limiter counters.

        ``degraded`` is True while a shard is down; ``lost_items`` counts items written to shards after
        the checkpoint they restarted from; ``writes_unacknowledged`` counts items whose shard died
        before confirming them.
        """
        states = self.refresh()
        live = self.live
        per_shard = [{**st._asdict(), "live": bool(live[s])} for s, st in enumerate(states)]
        return {
            "shards": self.num_shards,
            "live": [int(s) for s in np.flatnonzero(live)],
            "down": [int(s) for s in np.flatnonzero(~live)],
            "degraded": bool(not live.all()),
            "size": int(sum(st.size for s, st in enumerate(states) if live[s])),
            "lost_items": int(sum(st.lost for st in states)),
            "restarts": int(sum(st.epoch for st in states)),
            "stale_updates": int(sum(st.stale_updates for st in states)) + self.updates.stale_epoch,
            "unknown_shard_updates": self.updates.unknown_shard,
            "dropped_updates": self.updates.dropped_down,
            "batches_drawn": self.batches_drawn,
            "rate_limiter": self.backend.limiter_counters(),
            "per_shard": per_shard,
            **{name: int(value) for name, value in sorted(self.counters.items())},
        }

    # -- checkpoints -------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the whole replay (each shard, then this client's generator); see :mod:`xreplay.distributed.persist`."""
        from xreplay.distributed.persist import save_replay

        return save_replay(self, path)

    def checkpoint(self) -> list[ShardState]:
        """Make every live shard save its checkpoint now (see :class:`~xreplay.distributed.ShardCheckpoints`)."""
        self.flush()
        live = [int(s) for s in np.flatnonzero(self.live)]
        replies = self.backend.gather([self.backend.submit(s, "checkpoint") for s in live], self.options.timeout)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            self._observe(reply)
        return list(self.states)
