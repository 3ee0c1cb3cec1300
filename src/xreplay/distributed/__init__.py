"""Distributed replay: xreplay buffers sharded over Ray actors, sampled exactly across shards.

* :class:`RayReplay` starts shard actors, each holding a local buffer built
  by a picklable factory, and is a client with a local buffer's methods
  (``add``/``extend``, ``sample``, ``update_priorities``, ``len``, ``stats``,
  ``save``); it pickles as a :class:`ReplayClient` for actor tasks.
* Sampling is exact: per-shard counts are drawn from the shards' priority
  masses (or sizes), each shard samples its share, and importance weights
  use the global minimum (:mod:`xreplay.distributed.sampling`).
* Faults: shards checkpoint periodically (:class:`ShardCheckpoints`) and
  restore when Ray restarts them; meanwhile the client samples over the live
  shards and ``stats()`` reports the degraded state and the items lost.

Ray is an optional extra (``pip install 'xreplay[ray]'``), imported only
when :class:`RayReplay` is used. :class:`~xreplay.distributed.backend.InProcessBackend`
runs the same shards in one process (tests, single-machine use).
See ``docs/distributed.md``.

Example:
    >>> import numpy as np
    >>> from xreplay import TransitionBuffer
    >>> backend = InProcessBackend(lambda: TransitionBuffer(64, seed=0), num_shards=2)
    >>> replay = ReplayClient(backend, seed=0)
    >>> replay.extend({"obs": np.zeros((8, 3), np.float32)})
    8
    >>> replay.sample(4)["obs"].shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from typing import Any

from xreplay.distributed.backend import InProcessBackend, ShardBackend
from xreplay.distributed.client import ReplayClient
from xreplay.distributed.options import ClientOptions, ShardActorOptions
from xreplay.distributed.protocol import ShardCheckpoints, ShardState, decode_indices, encode_indices
from xreplay.distributed.routing import ByWriter, RoundRobin, Routing
from xreplay.errors import ShardError, ShardFactoryError, ShardUnavailableError

__all__ = [
    "ByWriter",
    "ClientOptions",
    "InProcessBackend",
    "RayReplay",
    "ReplayClient",
    "RoundRobin",
    "Routing",
    "ShardBackend",
    "ShardActorOptions",
    "ShardCheckpoints",
    "ShardError",
    "ShardFactoryError",
    "ShardState",
    "ShardUnavailableError",
    "decode_indices",
    "encode_indices",
]


def __getattr__(name: str) -> Any:
    """Import the Ray backend on first use of :class:`RayReplay` (it imports Ray)."""
    if name == "RayReplay":
        from xreplay.distributed.ray_backend import RayReplay, import_ray

        import_ray()  # fail here, naming the extra, rather than at construction
        return RayReplay
    raise AttributeError(f"module 'xreplay.distributed' has no attribute {name!r}")
