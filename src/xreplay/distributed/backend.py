"""The backend seam: how a replay client reaches its shards, and an in-process backend for tests.

A backend submits calls of :class:`~xreplay.distributed.shard.ShardCore`
methods to shards and gathers their results; it also holds the cluster's
rate limiter. :class:`RayBackend <xreplay.distributed.ray_backend.RayBackend>`
runs shards as Ray actors; :class:`InProcessBackend` runs them in this
process, calling them at once, and can kill and restart a shard, so the
client's logic (exact draws, degraded sampling, stale updates, lost items) is
tested without starting processes.

A call that cannot reach its shard (process dead, restarting, timed out)
yields a :class:`ShardDown` in the results instead of raising; any other
error raised by the shard is returned as it is.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from xreplay.distributed.protocol import ShardCheckpoints
from xreplay.distributed.shard import ShardCore
from xreplay.rate_limiters import RateLimiter

__all__ = ["InProcessBackend", "ShardBackend", "ShardDown"]


class ShardDown(Exception):
    """A shard did not answer: its process is dead or restarting, or the call timed out (internal marker)."""

    def __init__(self, shard: int, cause: object):
        """Name the shard and what happened."""
        super().__init__(f"shard {shard} is down: {cause!r}")
        self.shard = shard
        self.cause = cause


class ShardBackend(Protocol):
    """Reaches the shards of one replay; futures are opaque to the client."""

    num_shards: int

    def submit(self, shard: int, method: str, *args: Any) -> Any:
        """Start ``method(*args)`` on ``shard``; return a future."""
        ...

    def gather(self, futures: Sequence[Any], timeout: float) -> list[Any]:
        """Return each future's result, a :class:`ShardDown`, or the exception the shard raised."""
        ...

    def ready(self, futures: Sequence[Any]) -> list[bool]:
        """Return, without waiting, which futures have finished."""
        ...

    def insert_permit(self, n: int, timeout: float) -> Any:
        """Ask the rate limiter to insert ``n`` items; return what a write waits for (None without a limiter)."""
        ...

    def try_insert(self, n: int) -> bool:
        """Ask the rate limiter to insert ``n`` items now; return whether it may (True without a limiter)."""
        ...

    def sample_permit(self, n: int, timeout: float) -> Any:
        """Ask the rate limiter to sample ``n`` items; return what a sample waits for (None without a limiter)."""
        ...

    def resolve(self, permit: Any, timeout: float) -> None:
        """Wait for a permit from :meth:`sample_permit` or :meth:`insert_permit`; raise the limiter's error."""
        ...

    def limiter_delete(self, n: int) -> None:
        """Tell the rate limiter that ``n`` inserted items never arrived."""
        ...

    def limiter_counters(self) -> dict[str, int] | None:
        """Return the rate limiter's counters, or None without one."""
        ...


class _Done:
    """A finished in-process call: its value or its exception."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None):
        self.value, self.error = value, error


class InProcessBackend:
    """Shards as :class:`ShardCore` objects in this process, for tests and single-process use.

    Calls run when submitted. :meth:`kill` drops a shard as a dead process
    would (its buffer is gone; calls yield :class:`ShardDown`) and
    :meth:`restart` builds it again from the same arguments, as Ray's
    ``max_restarts`` does, so it restores its last checkpoint.

    Args:
        factory: Builds each shard's buffer (pickled and unpickled once per shard, as a process would).
        num_shards: Number of shards.
        checkpoints: Where and how often shards save, or None.
        rate_limiter: The cluster's limiter (used in this process), or None.
        run_id: Run number for the shards' counter files.
        restore_from: Shard -> checkpoint directory to start from.

    Example:
        >>> from xreplay import TransitionBuffer
        >>> backend = InProcessBackend(lambda: TransitionBuffer(8, seed=0), num_shards=2)
        >>> backend.gather([backend.submit(1, "ping")], timeout=1.0)
        [1]
        >>> backend.kill(1); isinstance(backend.gather([backend.submit(1, "ping")], 1.0)[0], ShardDown)
        True
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        num_shards: int,
        checkpoints: ShardCheckpoints | None = None,
        rate_limiter: RateLimiter | None = None,
        run_id: int = 0,
        restore_from: dict[int, str] | None = None,
    ):
        """Build every shard."""
        self.num_shards = int(num_shards)
        self.limiter = rate_limiter
        self._factory, self._checkpoints, self._run_id = factory, checkpoints, run_id
        self._restore_from = dict(restore_from or {})
        self.shards: list[ShardCore | None] = [self._start(s) for s in range(self.num_shards)]

    def _start(self, shard: int) -> ShardCore:
        """Build shard ``shard`` from its arguments (the factory through pickle, as a process gets it)."""
        factory = self._factory
        try:
            factory = pickle.loads(pickle.dumps(factory))
        except (pickle.PicklingError, TypeError, AttributeError):
            pass  # lambdas do not pickle without cloudpickle; in one process they need not
        restore = self._restore_from.get(shard)
        return ShardCore(factory, shard, self._checkpoints, self._run_id, self._delete, restore)

    def _delete(self, n: int) -> None:
        """Forward the shards' deletes to the limiter."""
        if self.limiter is not None:
            self.limiter.delete(n)

    def kill(self, shard: int) -> None:
        """Drop ``shard`` as its process dying would."""
        self.shards[shard] = None

    def restart(self, shard: int) -> None:
        """Build ``shard`` again from its arguments (it restores its last checkpoint)."""
        self.shards[shard] = self._start(shard)

    # -- the backend protocol --------------------------------------------------

    def submit(self, shard: int, method: str, *args: Any) -> _Done:
        """Run ``method(*args)`` on ``shard`` now."""
        core = self.shards[shard]
        if core is None:
            return _Done(error=ShardDown(shard, "killed"))
        try:
            return _Done(getattr(core, method)(*args))
        except Exception as exc:  # returned to the caller, as a remote call's error would be
            return _Done(error=exc)

    def gather(self, futures: Sequence[_Done], timeout: float) -> list[Any]:
        """Return the results (errors as values)."""
        return [f.value if f.error is None else f.error for f in futures]

    def ready(self, futures: Sequence[_Done]) -> list[bool]:
        """Return True for each (calls finish when submitted)."""
        return [True] * len(futures)

    def insert_permit(self, n: int, timeout: float) -> None:
        """Wait for the limiter to allow ``n`` inserts."""
        if self.limiter is not None:
            self.limiter.insert(n, timeout=timeout)

    def try_insert(self, n: int) -> bool:
        """Ask the limiter for ``n`` inserts without waiting."""
        return True if self.limiter is None else self.limiter.try_insert(n)

    def sample_permit(self, n: int, timeout: float) -> None:
        """Wait for the limiter to allow ``n`` samples."""
        if self.limiter is not None:
            self.limiter.sample(n, timeout=timeout)

    def resolve(self, permit: Any, timeout: float) -> None:
        """Return at once: the limiter answered when the permit was asked."""

    def limiter_delete(self, n: int) -> None:
        """Record ``n`` deleted items."""
        self._delete(n)

    def limiter_counters(self) -> dict[str, int] | None:
        """Return the limiter's counters."""
        return None if self.limiter is None else self.limiter.counters()
