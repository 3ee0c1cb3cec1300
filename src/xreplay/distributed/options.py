"""The settings of a sharded replay, each group one frozen value.

:class:`ClientOptions` tell a client how to batch, wait and react to faults (they pickle with
the client); :class:`ShardActorOptions` tell Ray how to run the shard actors of a
:class:`~xreplay.distributed.RayReplay`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["ClientOptions", "ShardActorOptions"]


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """How a client batches, waits and reacts to faults.

    Args:
        prefetch: Sample requests kept outstanding beyond the one in use (0: every sample sees the
            latest priorities, as a local buffer does).
        batches_per_call: Batches each request asks of every shard in one call.
        update_batch: Priority updates ride with the next sample request to their shard; with a value
            > 0 they also go in a message of their own once this many are pending.
        write_batch: Transitions gathered into one write before it is sent (0: each write goes at once);
            staged transitions are visible to samplers once sent (or after
            :meth:`~xreplay.distributed.ReplayClient.flush`).
        max_inflight_writes: Writes sent but not yet acknowledged before a write waits.
        max_inflight_updates: Priority-update messages not yet acknowledged before an update waits.
        timeout: Seconds one shard call may take (rate-limited waits excluded).
        rate_limit_timeout: Seconds a write or sample may wait for the rate limiter.
        shard_timeout: Seconds a shard may stay down before operations raise ShardUnavailableError.
        probe_interval: Seconds between probes of a down shard.
        device: Where sampled tensors go.
    """

    prefetch: int = 0
    batches_per_call: int = 1
    update_batch: int = 0
    write_batch: int = 0
    max_inflight_writes: int = 4
    max_inflight_updates: int = 8
    timeout: float = 60.0
    rate_limit_timeout: float = 60.0
    shard_timeout: float = 30.0
    probe_interval: float = 0.2
    device: str = "cpu"

    def __post_init__(self) -> None:
        """Check the values."""
        for name in ("prefetch", "update_batch", "write_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, received {getattr(self, name)!r}")
        for name in ("batches_per_call", "max_inflight_writes", "max_inflight_updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, received {getattr(self, name)!r}")
        for name in ("timeout", "rate_limit_timeout", "shard_timeout", "probe_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, received {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class ShardActorOptions:
    """How Ray runs the shard actors of a :class:`~xreplay.distributed.RayReplay`.

    Args:
        max_restarts: Restarts Ray grants each shard actor (a restarted shard restores its last
            checkpoint when the replay has :class:`~xreplay.distributed.ShardCheckpoints`).
        ray_options: More Ray actor options for the shards (``num_cpus`` defaults to 0; e.g.
            ``{"num_cpus": 1, "scheduling_strategy": "SPREAD"}`` on a cluster).

    Example:
        >>> ShardActorOptions(max_restarts=0, ray_options={"num_cpus": 1}).max_restarts
        0
    """

    max_restarts: int = 3
    ray_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
