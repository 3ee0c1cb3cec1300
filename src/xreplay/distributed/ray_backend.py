"""RayReplay: replay shards as Ray actors, a rate limiter shared by the cluster, and a client for them.

Each shard is a Ray actor running a :class:`~xreplay.distributed.shard.ShardCore`
(started with the ``max_restarts`` of its :class:`~xreplay.distributed.ShardActorOptions`,
restoring its checkpoint when Ray restarts it). The rate limiter, when given,
lives in one small threaded actor: a write asks it for a permit and passes the
permit's object reference to the shard call, so Ray holds the write until the
limiter allows it while the writer's thread goes on (its ``max_inflight_writes``
bound makes it wait when the learner falls behind); a sample request does the
same with a sample permit. Shards tell the limiter of the items they stop
holding (overwrites, losses).

Ray is imported when a :class:`RayReplay` is built; without it the error
names ``pip install 'xreplay[ray]'``.
"""

from __future__ import annotations

import ctypes
import pickle
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from xreplay.distributed.backend import ShardDown
from xreplay.distributed.client import ReplayClient
from xreplay.distributed.options import ClientOptions, ShardActorOptions
from xreplay.distributed.protocol import MAX_SHARDS, ShardCheckpoints
from xreplay.distributed.routing import Routing
from xreplay.distributed.shard import ShardCore, check_checkpoint_directory
from xreplay.errors import ShardFactoryError
from xreplay.rate_limiters import RateLimiter

__all__ = ["LimiterService", "RayBackend", "RayReplay", "ShardActor", "import_ray", "keep_freed_memory"]

_LIMITER_THREADS = 256  # concurrent waits the limiter actor serves (one per blocked writer or sample request)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def import_ray() -> Any:
    """Return the ``ray`` module, or raise ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "xreplay.distributed.RayReplay needs Ray, which is not installed: pip install 'xreplay[ray]'"
        ) from exc
    return ray


class LimiterService:
    """A :class:`~xreplay.rate_limiters.RateLimiter` served to every client of one replay (a threaded actor).

    Args:
        state: The limiter's :meth:`~xreplay.rate_limiters.RateLimiter.state_dict` (parameters and counters).
    """

    def __init__(self, state: dict[str, Any]):
        """Rebuild the limiter from its state."""
        self.limiter = RateLimiter(
            state["samples_per_insert"], state["min_size_to_sample"], state["min_diff"], state["max_diff"]
        )
        self.limiter.load_state_dict(state)

    def insert(self, n: int, timeout: float) -> int:
        """Wait until ``n`` inserts are allowed, record them and return ``n``."""
        self.limiter.insert(n, timeout=timeout)
        return n

    def sample(self, n: int, timeout: float) -> int:
        """Wait until ``n`` samples are allowed, record them and return ``n``."""
        self.limiter.sample(n, timeout=timeout)
        return n

    def try_insert(self, n: int) -> bool:
        """Record ``n`` inserts if allowed now."""
        return self.limiter.try_insert(n)

    def delete(self, n: int) -> None:
        """Record ``n`` items that left the replay."""
        self.limiter.delete(n)

    def counters(self) -> dict[str, int]:
        """Return the inserted, sampled and deleted counts."""
        return self.limiter.counters()


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Make this process's C allocator (glibc) keep freed memory for reuse; return whether it could.

    A shard's reply to a multi-batch request is a few megabytes of new arrays. With glibc's
    defaults they are mapped afresh and handed back to the system once freed, so every reply
    touches new pages (a page fault per 4 KB, which tripled a 16,384-row draw here); with higher
    mmap and trim thresholds the next reply reuses the same memory. Elsewhere (no glibc) nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


class ShardActor(ShardCore):
    """A :class:`~xreplay.distributed.shard.ShardCore` in its own process, keeping freed memory for the next reply."""

    def __init__(self, *args: Any):
        """Tune the process's allocator (:func:`keep_freed_memory`), then start the shard."""
        keep_freed_memory()
        super().__init__(*args)


class _RemoteDelete:
    """A shard's ``on_delete``: tells the limiter actor, without waiting (pickles as the actor's name).

    The name, not the handle, is a shard's constructor argument: Ray keeps handle arguments in
    the object store, where a restart could not find them once they went out of scope.
    """

    def __init__(self, name: str):
        self.name = name
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self._handle = state["name"], None

    def __call__(self, n: int) -> None:
        if self._handle is None:
            self._handle = import_ray().get_actor(self.name)
        self._handle.delete.remote(n)


class RayBackend:
    """Reaches shard actors (and the limiter actor) through Ray; futures are ``(shard, ObjectRef)``.

    Args:
        shards: One actor handle per shard.
        limiter: The limiter actor, or None.
    """

    def __init__(self, shards: Sequence[Any], limiter: Any = None):
        """Keep the handles (they pickle, so the backend does)."""
        self.shards = list(shards)
        self.limiter = limiter
        self.num_shards = len(self.shards)

    def submit(self, shard: int, method: str, *args: Any) -> tuple[int, Any]:
        """Start ``method(*args)`` on the shard's actor."""
        return shard, getattr(self.shards[shard], method).remote(*args)

    def gather(self, futures: Sequence[tuple[int, Any]], timeout: float) -> list[Any]:
        """Return each result, a ShardDown for an unreachable shard, or the shard's exception."""
        ray = import_ray()
        refs = [ref for _shard, ref in futures]
        try:
            return list(ray.get(refs, timeout=timeout))
        except Exception:  # noqa: BLE001 - sorted out one by one below
            pass
        deadline = time.monotonic() + 0.05  # what did not finish within ``timeout`` is down
        out: list[Any] = []
        for shard, ref in futures:
            try:
                out.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                out.append(ShardDown(shard, exc))
            except Exception as exc:  # noqa: BLE001 - the shard's own error (e.g. a bad write), returned as is
                while isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, Exception):
                    exc = exc.cause  # the error the shard (or the limiter it waited for) raised, with its message
                out.append(exc)
        return out

    def ready(self, futures: Sequence[tuple[int, Any]]) -> list[bool]:
        """Return which futures have finished, without waiting."""
        refs = [ref for _shard, ref in futures]
        done, _ = import_ray().wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        finished = set(done)
        return [ref in finished for ref in refs]

    def insert_permit(self, n: int, timeout: float) -> Any:
        """Return the limiter's insert permit (an ObjectRef the write waits for), or None."""
        return None if self.limiter is None else self.limiter.insert.remote(n, timeout)

    def try_insert(self, n: int) -> bool:
        """Ask the limiter for ``n`` inserts now."""
        return True if self.limiter is None else bool(import_ray().get(self.limiter.try_insert.remote(n)))

    def sample_permit(self, n: int, timeout: float) -> Any:
        """Return the limiter's sample permit (an ObjectRef the sample waits for), or None."""
        return None if self.limiter is None else self.limiter.sample.remote(n, timeout)

    def resolve(self, permit: Any, timeout: float) -> None:
        """Wait for a permit; raise the limiter's own error (e.g. RateLimiterTimeout)."""
        ray = import_ray()
        try:
            ray.get(permit, timeout=timeout)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, Exception) else exc) from None

    def limiter_delete(self, n: int) -> None:
        """Tell the limiter that ``n`` items never arrived."""
        if self.limiter is not None and n:
            self.limiter.delete.remote(n)

    def limiter_counters(self) -> dict[str, int] | None:
        """Return the limiter's counters."""
        return None if self.limiter is None else dict(import_ray().get(self.limiter.counters.remote()))


def _client_from_state(state: dict[str, Any]) -> ReplayClient:
    """Unpickle a replay as a plain client (no rights to shut the shards down)."""
    client = ReplayClient.__new__(ReplayClient)
    client.__setstate__(state)
    return client


class RayReplay(ReplayClient):
    """A replay sharded over Ray actors, used like a local buffer; pickles as a :class:`ReplayClient`.

    Builds ``num_shards`` shard actors, each holding the buffer ``factory()``
    returns (any native buffer: transitions or episodes, uniform or
    prioritized), and is itself the learner's client. Pass it (or
    :meth:`client`) to actor tasks: each unpickles its own client.

    Args:
        factory: Picklable (cloudpickle) callable returning a fresh buffer; called in each shard
            and again on every restart.
        num_shards: Shard actors to start.
        routing: ``"round_robin"`` or ``"by_writer"`` (one writer's items stay in one shard).
        rate_limiter: A :class:`~xreplay.rate_limiters.RateLimiter` (``MinSize``,
            ``SampleToInsertRatio``...) enforced across every client, or None.
        checkpoints: Periodic shard checkpoints (needed to restore a restarted shard), or None.
        actor_options: How Ray runs the shard actors (:class:`ShardActorOptions`: restarts, more Ray
            actor options); the defaults when None.
        options: The client's :class:`ClientOptions`.
        seed: Seed of the client's generator (per-shard counts and batch order).

    Raises:
        ShardFactoryError: ``factory`` cannot be pickled or does not build a native buffer.
        ImportError: Ray is not installed (``pip install 'xreplay[ray]'``).

    Example:
        >>> import ray, numpy as np  # doctest: +SKIP
        >>> from xreplay import TransitionBuffer  # doctest: +SKIP
        >>> _ = ray.init(num_cpus=2, include_dashboard=False)  # doctest: +SKIP
        >>> replay = RayReplay(lambda: TransitionBuffer(10_000, sampler="prioritized"), num_shards=2)  # doctest: +SKIP
        >>> replay.extend({"obs": np.zeros((64, 4), np.float32)})  # doctest: +SKIP
        64
        >>> replay.sample(32)["obs"].shape  # doctest: +SKIP
        torch.Size([32, 4])
        >>> replay.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        num_shards: int,
        routing: str | Routing = "round_robin",
        rate_limiter: RateLimiter | None = None,
        checkpoints: ShardCheckpoints | None = None,
        actor_options: ShardActorOptions | None = None,
        options: ClientOptions | None = None,
        seed: int | None = None,
    ):
        """Start the shard actors (and the limiter actor) and connect to them."""
        self._start(
            factory,
            num_shards,
            None,
            routing=routing,
            rate_limiter=rate_limiter,
            checkpoints=checkpoints,
            actor_options=actor_options,
            options=options,
            seed=seed,
        )

    def _start(
        self,
        factory: Callable[[], Any],
        num_shards: int,
        restore_from: Sequence[str] | None,
        *,
        routing: str | Routing = "round_robin",
        rate_limiter: RateLimiter | None = None,
        checkpoints: ShardCheckpoints | None = None,
        actor_options: ShardActorOptions | None = None,
        options: ClientOptions | None = None,
        seed: int | None = None,
    ) -> None:
        """Start the shards (from the saved replay's shard checkpoints ``restore_from``, when given) and connect."""
        ray = import_ray()
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or not 1 <= num_shards <= MAX_SHARDS:
            raise ValueError(f"num_shards must be an int in [1, {MAX_SHARDS}], received {num_shards!r}")
        try:
            ray.cloudpickle.dumps(factory)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
            raise ShardFactoryError(
                f"the shard factory {factory!r} cannot be pickled ({exc}); build the buffer inside the factory "
                f"instead of capturing objects that cannot be sent to another process"
            ) from exc
        if checkpoints is not None:
            check_checkpoint_directory(checkpoints, num_shards)
        run_id = secrets.randbits(62)
        limiter = on_delete = None
        if rate_limiter is not None:
            name = f"xreplay-rate-limiter-{run_id:016x}"
            service = ray.remote(LimiterService).options(name=name, num_cpus=0, max_concurrency=_LIMITER_THREADS)
            limiter, on_delete = service.remote(rate_limiter.state_dict()), _RemoteDelete(name)
        settings = actor_options or ShardActorOptions()
        actor = ray.remote(ShardActor).options(
            **{"num_cpus": 0, "max_restarts": settings.max_restarts, "max_task_retries": 0, **settings.ray_options}
        )
        restore = list(restore_from) if restore_from is not None else [None] * num_shards
        shards = [actor.remote(factory, s, checkpoints, run_id, on_delete, restore[s]) for s in range(num_shards)]
        self._actors, self._limiter_actor = shards, limiter
        try:
            super().__init__(RayBackend(shards, limiter), options, routing, writer_id=0, seed=seed)
        except BaseException:
            self.shutdown()
            raise

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as a plain :class:`ReplayClient`: actors and tasks get clients, not the owner."""
        return _client_from_state, (self.__getstate__(),)

    def client(self, writer_id: int | None = None, options: ClientOptions | None = None) -> ReplayClient:
        """Return a plain client (for an actor task), writing as ``writer_id``, with ``options``."""
        return self.clone(writer_id, options)

    def kill_shard(self, shard: int, restart: bool = True) -> None:
        """Kill a shard's actor (fault injection); Ray restarts it while restarts remain and ``restart``."""
        import_ray().kill(self._actors[shard], no_restart=not restart)

    def shutdown(self) -> None:
        """Stop every shard actor and the limiter actor."""
        ray = import_ray()
        for handle in [*getattr(self, "_actors", []), getattr(self, "_limiter_actor", None)]:
            if handle is not None:
                ray.kill(handle, no_restart=True)
        self._actors, self._limiter_actor = [], None

    def __enter__(self) -> RayReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @classmethod
    def load(cls, path: str, factory: Callable[[], Any], **kwargs: Any) -> RayReplay:
        """Start a replay saved by :meth:`~ReplayClient.save` (its shard count; ``kwargs`` as for the constructor).

        Raises:
            CheckpointError: ``path`` holds no saved sharded replay, or is damaged.
        """
        from xreplay.distributed.persist import read_replay

        saved = read_replay(path)
        replay = cls.__new__(cls)  # the constructor's start, each shard from its saved checkpoint
        replay._start(factory, saved["num_shards"], saved["shards"], **kwargs)
        replay.rng, replay.batches_drawn = saved["rng"], saved["batches_drawn"]
        return replay
