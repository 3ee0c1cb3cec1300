"""Rate limiters: keep the learner's sampling and the actors' inserts in a fixed ratio.

A rate limiter counts the items inserted, sampled and deleted (overwritten)
and answers two questions: may ``n`` more items be inserted, and may ``n``
more items be sampled? The rule is the one replay tables in distributed RL
use, written in terms of ``diff = inserts * samples_per_insert - samples``:

* nothing may be sampled until ``min_size_to_sample`` items are held
  (``inserts - deletes``);
* below that size inserts are always allowed; above it an insert of ``k``
  items is allowed while ``(inserts + k) * samples_per_insert - samples <= max_diff``;
* a sample of ``n`` items is allowed while ``diff - n >= min_diff``.

The presets are :class:`MinSize` (sample once ``n`` items are held, never
block inserts), :class:`SampleToInsertRatio` (each item is sampled
``samples_per_insert`` times on average, within an error buffer) and
:class:`Queue` (each item sampled once, at most ``n`` items waiting).

A request that the limiter does not allow blocks until another thread (or,
with ``shared=True``, another process) changes the counters, or until its
timeout, then raises :class:`~xreplay.errors.RateLimiterTimeout` stating the
counters; ``try_insert`` / ``try_sample`` answer at once instead. A request
that no future state could allow (a batch larger than the error buffer) is
refused at once with a ``ValueError``, never left to hang.

Example:
    >>> limiter = SampleToInsertRatio(samples_per_insert=2.0, min_size_to_sample=2, error_buffer=4.0)
    >>> limiter.insert(2)                 # below min size: always allowed
    >>> limiter.try_sample(4), limiter.try_sample(1)
    (True, False)
    >>> limiter.counters()
    {'inserts': 2, 'samples': 4, 'deletes': 0}
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from typing import Any

import numpy as np

from xreplay.errors import RateLimiterTimeout

__all__ = ["MinSize", "Queue", "RateLimiter", "SampleToInsertRatio"]

_INSERTS, _SAMPLES, _DELETES, _CLOSED = 0, 1, 2, 3


class RateLimiter:
    """Gate inserts and samples by the counters of inserted, sampled and deleted items.

    Args:
        samples_per_insert: Samples each inserted item is worth in ``diff``.
        min_size_to_sample: Items that must be held before any sample.
        min_diff: Lowest ``diff`` a sample may leave.
        max_diff: Highest ``diff`` an insert may reach (once ``min_size_to_sample`` items are held).
        shared: Keep the counters in shared memory and wait on a process-shared condition, so writer
            and learner processes started with :mod:`multiprocessing` share one limiter (pass it to
            them as a ``Process`` argument).
        context: The multiprocessing context (or its name, ``"spawn"``/``"fork"``) for ``shared``.

    Example:
        >>> limiter = RateLimiter(samples_per_insert=1.0, min_size_to_sample=1, min_diff=0.0, max_diff=3.0)
        >>> limiter.insert(3)
        >>> limiter.try_insert(1), limiter.try_sample(3), limiter.try_insert(1)
        (False, True, True)
    """

    def __init__(
        self,
        samples_per_insert: float,
        min_size_to_sample: int,
        min_diff: float,
        max_diff: float,
        shared: bool = False,
        context: Any = None,
    ):
        """Start with every counter at zero."""
        _check_number("samples_per_insert", samples_per_insert, low=0.0, finite=True, strict=True)
        if isinstance(min_size_to_sample, bool) or not isinstance(min_size_to_sample, (int, np.integer)):
            raise TypeError(f"min_size_to_sample must be an int, received {min_size_to_sample!r}")
        if min_size_to_sample < 1:
            raise ValueError(f"min_size_to_sample must be >= 1, received {min_size_to_sample}")
        _check_number("min_diff", min_diff)
        _check_number("max_diff", max_diff)
        if not min_diff <= max_diff:
            raise ValueError(f"min_diff must be <= max_diff, received [{min_diff}, {max_diff}]")
        self.samples_per_insert = float(samples_per_insert)
        self.min_size_to_sample = int(min_size_to_sample)
        self.min_diff = float(min_diff)
        self.max_diff = float(max_diff)
        self.shared = bool(shared)
        if shared:
            ctx = multiprocessing.get_context(context) if not hasattr(context, "Condition") else context
            self._counts: Any = ctx.RawArray("q", 4)  # int64 counters and the closed flag, in shared memory
            self._cond: Any = ctx.Condition()
        else:
            self._counts = [0, 0, 0, 0]
            self._cond = threading.Condition()

    # -- the rule -------------------------------------------------------------

    def _diff(self, inserts: int, samples: int) -> float:
        """Return ``inserts * samples_per_insert - samples``."""
        return inserts * self.samples_per_insert - samples

    def _insert_allowed(self, n: int) -> bool:
        """Return whether ``n`` items may be inserted now (the condition's lock is held)."""
        inserts, samples, deletes = self._counts[_INSERTS], self._counts[_SAMPLES], self._counts[_DELETES]
        if inserts + n - deletes <= self.min_size_to_sample:
            return True  # nothing can be sampled below the minimum size: the ratio does not apply
        return self._diff(inserts + n, samples) <= self.max_diff

    def _sample_allowed(self, n: int) -> bool:
        """Return whether ``n`` items may be sampled now (the condition's lock is held)."""
        inserts, samples, deletes = self._counts[_INSERTS], self._counts[_SAMPLES], self._counts[_DELETES]
        if inserts - deletes < self.min_size_to_sample:
            return False
        return self._diff(inserts, samples) - n >= self.min_diff

    def _check_request(self, kind: str, n: Any) -> int:
        """Return ``n`` as an int, refusing requests no future state could allow."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{kind} count must be an int >= 0, received {n!r}")
        n = int(n)
        if kind == "sample" and n > self.max_diff - self.min_diff:
            raise ValueError(
                f"a sample of {n} items can never be allowed: the limiter keeps diff within "
                f"[{self.min_diff}, {self.max_diff}]; sample fewer items per call or widen the error buffer to {n}"
            )
        return n

    def _insert_feasible(self, n: int) -> bool:
        """Return whether some future state allows inserting ``n`` items (samples can lower diff to min_diff)."""
        held = self._counts[_INSERTS] + n - self._counts[_DELETES]
        return held <= self.min_size_to_sample or n * self.samples_per_insert <= self.max_diff - self.min_diff
        return n

    # -- questions without waiting --------------------------------------------

    def can_insert(self, n: int = 1) -> bool:
        """Return whether ``n`` items may be inserted now (nothing is recorded)."""
        n = self._check_request("insert", n)
        with self._cond:
            return self._insert_allowed(n)

    def can_sample(self, n: int = 1) -> bool:
        """Return whether ``n`` items may be sampled now (nothing is recorded)."""
        n = self._check_request("sample", n)
        with self._cond:
            return self._sample_allowed(n)

    def try_insert(self, n: int = 1) -> bool:
        """Record an insert of ``n`` items if allowed now; return whether it was."""
        n = self._check_request("insert", n)
        with self._cond:
            if not self._insert_allowed(n):
                return False
            self._record(_INSERTS, n)
            return True

    def try_sample(self, n: int = 1) -> bool:
        """Record a sample of ``n`` items if allowed now; return whether it was."""
        n = self._check_request("sample", n)
        with self._cond:
            if not self._sample_allowed(n):
                return False
            self._record(_SAMPLES, n)
            return True

    # -- blocking requests ----------------------------------------------------

    def insert(self, n: int = 1, timeout: float | None = None) -> None:
        """Wait until ``n`` items may be inserted, then record them.

        Raises:
            RateLimiterTimeout: ``timeout`` seconds passed first (or the limiter was closed).
        """
        n = self._check_request("insert", n)
        self._wait_and_record("insert", _INSERTS, n, self._insert_allowed, timeout)

    def sample(self, n: int = 1, timeout: float | None = None) -> None:
        """Wait until ``n`` items may be sampled, then record them.

        Raises:
            RateLimiterTimeout: ``timeout`` seconds passed first (or the limiter was closed).
            ValueError: No state of the limiter could ever allow a sample of ``n`` items.
        """
        n = self._check_request("sample", n)
        self._wait_and_record("sample", _SAMPLES, n, self._sample_allowed, timeout)

    def _wait_and_record(self, kind: str, counter: int, n: int, allowed: Any, timeout: float | None) -> None:
        """Block on the condition until ``allowed(n)``, then add ``n`` to ``counter``."""
        if timeout is not None:
            _check_number("timeout", timeout, low=0.0)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not allowed(n):
                if kind == "insert" and not self._insert_feasible(n):
                    raise ValueError(
                        f"an insert of {n} items can never be allowed: it moves diff by "
                        f"{n * self.samples_per_insert}, more than the limiter's range "
                        f"[{self.min_diff}, {self.max_diff}]; insert fewer items per call or widen the error buffer"
                    )
                if self._counts[_CLOSED]:
                    raise RateLimiterTimeout(f"{kind} of {n} items refused: the rate limiter was closed; {self}")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RateLimiterTimeout(
                        f"{kind} of {n} items not allowed within {timeout} s: {self}; "
                        f"the other side (the {'learner' if kind == 'insert' else 'actors'}) may have stopped"
                    )
                self._cond.wait(remaining)
            self._record(counter, n)

    def _record(self, counter: int, n: int) -> None:
        """Add ``n`` to ``counter`` and wake every waiter (the condition's lock is held)."""
        if n:
            self._counts[counter] += n
            self._cond.notify_all()

    # -- bookkeeping ----------------------------------------------------------

    def delete(self, n: int = 1) -> None:
        """Record that ``n`` held items were removed (overwritten by a ring, or consumed)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"delete count must be an int >= 0, received {n!r}")
        with self._cond:
            self._record(_DELETES, int(n))

    def counters(self) -> dict[str, int]:
        """Return the inserted, sampled and deleted item counts."""
        with self._cond:
            counts = self._counts
            return {
                "inserts": int(counts[_INSERTS]),
                "samples": int(counts[_SAMPLES]),
                "deletes": int(counts[_DELETES]),
            }

    def close(self) -> None:
        """Wake every waiter (in every process that shares it) with :class:`RateLimiterTimeout`; later waits fail."""
        with self._cond:
            self._counts[_CLOSED] = 1
            self._cond.notify_all()

    def state_dict(self) -> dict[str, Any]:
        """Return the limiter's parameters and counters (plain data, for checkpoints)."""
        return {
            "samples_per_insert": self.samples_per_insert,
            "min_size_to_sample": self.min_size_to_sample,
            "min_diff": self.min_diff,
            "max_diff": self.max_diff,
            **self.counters(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`state_dict` (the parameters must match).

        Raises:
            ValueError: The parameters differ, or a counter is not an int >= 0.
        """
        for key in ("samples_per_insert", "min_size_to_sample", "min_diff", "max_diff"):
            if key not in state or float(state[key]) != float(getattr(self, key)):
                raise ValueError(
                    f"rate limiter state has {key}={state.get(key)!r}, this limiter has {getattr(self, key)!r}"
                )
        counts = []
        for key in ("inserts", "samples", "deletes"):
            value = state.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"rate limiter state {key!r} must be an int >= 0, received {value!r}")
            counts.append(int(value))
        with self._cond:
            for i, value in enumerate(counts):
                self._counts[i] = value
            self._cond.notify_all()

    def __repr__(self) -> str:
        c = self.counters()
        diff = self._diff(c["inserts"], c["samples"])
        return (
            f"{type(self).__name__}(samples_per_insert={self.samples_per_insert}, "
            f"min_size_to_sample={self.min_size_to_sample}, diff range [{self.min_diff}, {self.max_diff}]; "
            f"inserts={c['inserts']}, samples={c['samples']}, deletes={c['deletes']}, "
            f"held={c['inserts'] - c['deletes']}, diff={diff})"
        )

    def __getstate__(self) -> dict[str, Any]:
        if not self.shared:
            raise TypeError(
                "this rate limiter lives in one process; create it with shared=True to pass it to worker processes"
            )
        return self.__dict__.copy()


def MinSize(min_size_to_sample: int, shared: bool = False, context: Any = None) -> RateLimiter:  # noqa: N802
    """Return a limiter that blocks sampling until ``min_size_to_sample`` items are held, and never inserts.

    Example:
        >>> limiter = MinSize(3)
        >>> limiter.insert(2); limiter.try_sample(1)
        False
        >>> limiter.insert(1); limiter.try_sample(100)
        True
    """
    return RateLimiter(1.0, min_size_to_sample, -math.inf, math.inf, shared=shared, context=context)


def SampleToInsertRatio(  # noqa: N802
    samples_per_insert: float,
    min_size_to_sample: int,
    error_buffer: float | tuple[float, float],
    shared: bool = False,
    context: Any = None,
) -> RateLimiter:
    """Return a limiter holding each item's average sample count near ``samples_per_insert``.

    Args:
        samples_per_insert: Average times each item is sampled.
        min_size_to_sample: Items held before the first sample.
        error_buffer: How far ``diff`` may stray: a number ``e`` allows
            ``[offset - e, offset + e]`` with ``offset = samples_per_insert * min_size_to_sample``;
            a pair gives ``(min_diff, max_diff)`` directly. It must be at least
            ``max(1, samples_per_insert)`` wide on each side and at least the largest sample batch.
        shared: Share the limiter with worker processes (see :class:`RateLimiter`).
        context: The multiprocessing context for ``shared``.

    Raises:
        ValueError: The error buffer is narrower than one insert or one sample.
    """
    if isinstance(error_buffer, (tuple, list)):
        if len(error_buffer) != 2:
            raise ValueError(f"error_buffer pair must be (min_diff, max_diff), received {error_buffer!r}")
        min_diff, max_diff = float(error_buffer[0]), float(error_buffer[1])
    else:
        _check_number("error_buffer", error_buffer, low=0.0, finite=True)
        _check_number("samples_per_insert", samples_per_insert, low=0.0, finite=True, strict=True)
        offset = float(samples_per_insert) * min_size_to_sample
        min_diff, max_diff = offset - float(error_buffer), offset + float(error_buffer)
    need = 2 * max(1.0, float(samples_per_insert))
    if max_diff - min_diff < need:
        raise ValueError(
            f"error_buffer allows diff in [{min_diff}, {max_diff}], narrower than {need} "
            f"(2 * max(1, samples_per_insert)): inserts and samples would block each other; widen it"
        )
    return RateLimiter(samples_per_insert, min_size_to_sample, min_diff, max_diff, shared=shared, context=context)


def Queue(size: int, shared: bool = False, context: Any = None) -> RateLimiter:  # noqa: N802
    """Return a limiter for a queue: each item sampled once, at most ``size`` items waiting.

    Inserts block while ``size`` items wait to be sampled; samples block until
    enough items wait. Pair it with a first-in-first-out sampler so each item comes out exactly once.

    Example:
        >>> q = Queue(2)
        >>> q.insert(2); q.try_insert(1), q.try_sample(2), q.try_sample(1)
        (False, True, False)
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"queue size must be an int >= 1, received {size!r}")
    return RateLimiter(1.0, 1, 0.0, float(size), shared=shared, context=context)


def _check_number(name: str, value: Any, low: float | None = None, finite: bool = False, strict: bool = False) -> None:
    """Raise TypeError/ValueError naming ``name`` unless ``value`` is a real number in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, received {value!r}")
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be {'finite' if finite else 'a number'}, received {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, received {value!r}")
