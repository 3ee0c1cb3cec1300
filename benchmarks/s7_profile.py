"""S7 profile: where one shard's sample(256) goes in its own Ray process, against the same draw in a warm loop.

A shard actor (S2's layout, prioritized) times the steps of each draw with
``time.perf_counter_ns`` (spans around ``ShardCore.sample``, the sampler's
draw, its tree descent and the reader's row kernel) in three settings:
calls arriving through Ray one at a time, a loop inside the actor, and that
loop with 1 ms sleeps between calls (a process that sleeps between calls, as
a shard does, without Ray). Medians in microseconds.

    python benchmarks/s7_profile.py            # 1M items (a minute)
    python benchmarks/s7_profile.py --smoke    # tiny sizes (CI)
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from s2_transitions import BATCH, chunk
from xreplay import TransitionBuffer

STEPS = (
    ("ShardCore.sample", "xreplay.distributed.shard", "ShardCore", "sample"),
    ("  RowReader.draw", "xreplay.distributed.rows", "RowReader", "draw"),
    ("    sampler.sample", "xreplay.samplers.prioritized", "PrioritizedSampler", "sample"),
    ("      tree.draw", "xreplay.samplers.priority_tree", "PriorityTree", "draw"),
    ("    row kernel", "xreplay.distributed._rows_numba", None, "read_rows"),  # the rows into the reply (numba)
)


class ProfiledShard:
    """A shard in its own process whose draws are timed step by step."""

    def __init__(self, capacity: int):
        """Build the shard (a ``ShardActor`` as RayReplay starts it) and time its steps."""
        import importlib

        from xreplay.distributed.ray_backend import ShardActor

        self.spans: dict[str, list[int]] = collections.defaultdict(list)
        for label, module, owner, name in STEPS:
            try:
                found = importlib.import_module(module)
            except ImportError:  # numba missing: no row kernel to time
                continue
            cls = found if owner is None else getattr(found, owner)
            setattr(cls, name, self._timed(getattr(cls, name), label))
        self.core = ShardActor(functools.partial(TransitionBuffer, capacity, sampler="prioritized", seed=0), 0)

    def _timed(self, method: Callable[..., Any], label: str) -> Callable[..., Any]:
        spans = self.spans[label]

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return method(*args, **kwargs)
            finally:
                spans.append(time.perf_counter_ns() - start)

        return timed

    def write(self, data: dict[str, np.ndarray]) -> int:
        """Write a chunk; return the shard's size."""
        return self.core.write(data).size

    def sample(self, n: int) -> Any:
        """One draw, as a client's request asks it."""
        return self.core.sample(n)

    def loop(self, calls: int, pause: float) -> None:
        """Draw ``calls`` times in this process, sleeping ``pause`` seconds between draws."""
        for _ in range(calls):
            self.core.sample(BATCH)
            if pause:
                time.sleep(pause)

    def medians(self) -> dict[str, float]:
        """Return each step's median (us) since the last call, and forget them."""
        out = {label: statistics.median(v) / 1000 for label, v in self.spans.items() if v}
        for values in self.spans.values():
            values.clear()
        return out


def main(argv: list[str] | None = None) -> None:
    """Print each step's median in the three settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args(argv)
    capacity, calls = (4096, 20) if args.smoke else (args.capacity, args.calls)
    torch.set_num_threads(1)
    try:
        import ray
    except ImportError:
        print("ray not installed (pip install 'xreplay[ray]'): xreplay shard profile skipped")
        return
    import s2_transitions

    ray.cloudpickle.register_pickle_by_value(s2_transitions)
    if sys.modules.get(__name__) is not None and __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        shard = ray.remote(ProfiledShard).options(num_cpus=0).remote(capacity)
        data = chunk(np.random.default_rng(0), min(10_000, capacity))
        for _ in range(-(-capacity // data["obs"].shape[0])):
            ray.get(shard.write.remote(data))
        for _ in range(calls):  # warm up, not counted
            ray.get(shard.sample.remote(BATCH))
        ray.get(shard.medians.remote())
        settings: dict[str, dict[str, float]] = {}
        for _ in range(calls):
            ray.get(shard.sample.remote(BATCH))
        settings["through Ray"] = ray.get(shard.medians.remote())
        ray.get(shard.loop.remote(calls, 0.0))
        settings["warm loop in the actor"] = ray.get(shard.medians.remote())
        ray.get(shard.loop.remote(calls, 0.001))
        settings["loop, 1 ms sleeps"] = ray.get(shard.medians.remote())
        ray.kill(shard)
    finally:
        if started:
            ray.shutdown()
    print(f"S7 profile, xreplay shard's sample({BATCH}) in its process: {capacity:,} items, median of {calls} (us)")
    print(f"  {'step':22s}" + "".join(f"{name:>24s}" for name in settings))
    for label, *_rest in STEPS:
        print(f"  {label:22s}" + "".join(f"{values.get(label, float('nan')):24.1f}" for values in settings.values()))


if __name__ == "__main__":
    main()
