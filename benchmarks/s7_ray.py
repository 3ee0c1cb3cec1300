"""Workload S7: replay sharded over Ray (xreplay.distributed.RayReplay) on one machine, S2's transition layout.

Fields as S2 (168 bytes a transition); one total capacity (1,000,000 by default)
split over the shards; prioritized (alpha 0.6, beta 0.4) unless said otherwise.
In one run, repetitions interleaved across variants, medians reported:

* one ``sample(256)``'s latency without prefetching (1, 2, 4 shards) against raw
  Ray echo actors: the base answers the same request with a reply its shard sent
  (the same bytes and return path, no sampling); also a bare call, the five field
  arrays (the issue's first baseline) and the in-process buffer;
* learner batches/s with ``prefetch=2`` and ``batches_per_call`` 16, 128 and 256,
  sample only and sample + update, against the in-process loop and Ray's own
  ceiling (echo actors answering the same requests with the shards' replies);
* the cores each kind of process uses meanwhile (from ``/proc``);
* aggregate inserts (chunks of 64) with 1, 2, 4 shards and 1-8 writer tasks;
* TorchRL's ``RayReplayBuffer`` on the same uniform workload (its prioritized
  sampler's C++ extension does not load beside torch 2.13 here).

The load (``os.getloadavg``) is printed with each section: on a shared 2-core
machine every process competes for the same cores; the ratios matter most.

    python benchmarks/s7_ray.py            # full run (a few minutes)
    python benchmarks/s7_ray.py --smoke    # tiny sizes (CI)
    python benchmarks/s7_ray.py --sections throughput,cores   # a part of it
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from s2_transitions import BATCH, chunk
from xreplay import TransitionBuffer
from xreplay.distributed import ClientOptions
from xreplay.samplers import PrioritizedSampler

CHUNK = 64
FAST = {"prefetch": 2, "batches_per_call": 16}
SECTIONS = ("latency", "throughput", "cores", "inserts", "torchrl")
BULK = {"prefetch": 2, "batches_per_call": 128}  # fewer calls per batch; priorities up to 384 batches old
LARGE = {"prefetch": 2, "batches_per_call": 256}  # Ray's cost per call over twice the batches; up to 768 old


def load() -> str:
    """Return the machine's 1-minute load average as text."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def fill(write: Callable[[dict[str, np.ndarray]], Any], capacity: int) -> None:
    """Write ``capacity`` transitions in chunks of 10,000."""
    data = chunk(np.random.default_rng(0), min(10_000, capacity))
    for _ in range(-(-capacity // data["obs"].shape[0])):
        write(data)


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    """Return the seconds of each of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def rate(call: Callable[[], Any], repeat: int) -> float:
    """Return calls per second over ``repeat`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return repeat / (time.perf_counter() - start)


def interleave(variants: dict[str, Callable[[], float | list[float]]], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, in turn; return each one's results."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            result = run()
            out[name].extend(result if isinstance(result, list) else [result])
    return out


def echo_actor(ray: Any, reply: Any) -> Any:
    """Return an actor answering ``reply`` to a bare call (``echo``) or to a shard's request (``sample``)."""

    @ray.remote(num_cpus=0)
    class Echo:
        def __init__(self, reply: Any):
            self.reply = reply

        def echo(self) -> Any:
            return self.reply

        def sample(self, counts: Any, updates: Any = None, replace: bool = True, permit: Any = None) -> Any:
            return self.reply  # what a shard's sample takes and returns, without the sampling

    actor = Echo.remote(reply)
    ray.get(actor.echo.remote())
    return actor


def shard_replies(replay: Any, rows: int) -> list[Any]:
    """Return what each shard of ``replay`` sends for a request of ``rows`` items (the same bytes, the same object)."""
    backend = replay.backend
    return backend.gather([backend.submit(s, "sample", rows) for s in range(backend.num_shards)], 60.0)


def echo_pipeline(ray: Any, actors: list[Any], depth: int, rows: int | None) -> Callable[[], None]:
    """Return a step keeping ``depth`` rounds of calls (a shard's request for ``rows``, or bare) in flight."""
    queue: list[list[Any]] = []

    def step() -> None:
        while len(queue) < depth:
            queue.append([actor.echo.remote() if rows is None else actor.sample.remote(rows) for actor in actors])
        ray.get(queue.pop(0))

    return step


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Return each process's kind (learner, shards, echo actors, raylet, the rest) and CPU seconds (Linux /proc)."""
    out: dict[int, tuple[str, float]] = {}
    tick, me = os.sysconf("SC_CLK_TCK") if os.path.isdir("/proc") else 0, os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc") if tick else []):
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline") as cmdline:
                fields, command = stat.read().rsplit(")", 1)[1].split(), cmdline.read()
        except OSError:
            continue
        kind = "learner" if int(pid) == me else "shards" if "ray::ShardActor" in command else (
            "echo actors" if "ray::Echo" in command else "raylet" if "raylet" in command else "rest of machine")
        out[int(pid)] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cores_since(start: dict[int, tuple[str, float]], wall: float) -> dict[str, float]:
    """Return the cores each kind used on average over ``wall`` seconds since ``start`` (processes alive throughout)."""
    out: dict[str, float] = {}
    for pid, (kind, used) in cpu_seconds().items():
        if pid in start:
            out[kind] = out.get(kind, 0.0) + (used - start[pid][1]) / wall
    return dict(sorted(out.items()))


def learner_variants(
    replays: dict[int, Any], local: TransitionBuffer, scale: int, config: dict[str, int]
) -> dict[str, Callable[[], float]]:
    """Return the throughput variants: batches/s of sample (and sample + update) loops."""
    priorities, s = np.random.default_rng(2).random(BATCH), scale
    fast = {shards: replay.client(options=ClientOptions(**config)) for shards, replay in replays.items()}
    count = max(40 * scale, 8 * config["batches_per_call"])

    def loop(client: Any) -> Callable[[], Any]:  # one learner step: sample, then update what was sampled
        return lambda: client.update_priorities(client.sample(BATCH), priorities)

    variants: dict[str, Callable[[], float]] = {"in-process sample": lambda: rate(lambda: local.sample(BATCH), 40 * s)}
    variants["in-process sample+update"] = lambda: rate(loop(local), 40 * s)
    for shards, client in fast.items():
        variants[f"{shards} shard(s) sample"] = lambda c=client: rate(lambda: c.sample(BATCH), count)
        variants[f"{shards} shard(s) sample+update"] = lambda c=client: rate(loop(c), count)
    return variants


def throughput(ray: Any, replays: dict[int, Any], local: TransitionBuffer, rounds: int, scale: int,
               config: dict[str, int]) -> None:  # fmt: skip
    """Print the learner's batches/s with ``config`` against the in-process buffer and Ray's own ceiling."""
    variants = learner_variants(replays, local, scale, config)
    per_call, depth = config["batches_per_call"], config["prefetch"] + 1
    ceilings = {s: [echo_actor(ray, r) for r in shard_replies(rp, per_call * BATCH // s)] for s, rp in replays.items()}
    count = max(40 * scale, 8 * per_call)
    for shards, actors in ceilings.items():
        step = echo_pipeline(ray, actors, depth, per_call * BATCH // shards)
        variants[f"ray echo ceiling, {shards} actor(s)"] = lambda f=step: rate(f, count // per_call) * per_call
    results = interleave(variants, rounds)
    title = f"learner batches/s with prefetch={config['prefetch']}, batches_per_call={per_call}"
    print_table(title, results, "batches/s", "in-process sample")
    print("  (ray echo ceiling: as many actors answering the same requests with the shards' replies: Ray alone)")
    for actor in (a for actors in ceilings.values() for a in actors):
        ray.kill(actor)


def insert_round(ray: Any, replay: Any, writers: int, chunks: int, write_batch: int = 0) -> float:
    """Return the aggregate transitions/s of ``writers`` tasks each writing ``chunks`` chunks of 64."""
    @ray.remote(num_cpus=0)
    def write(client: Any, chunks: int) -> tuple[float, float, int]:
        data = chunk(np.random.default_rng(client.writer_id), CHUNK)
        client.extend(data)
        client.flush()  # connected and warm
        start = time.time()
        for _ in range(chunks):
            client.extend(data)
        client.flush()
        return start, time.time(), chunks * CHUNK

    options = ClientOptions(write_batch=write_batch)
    spans = ray.get([write.remote(replay.client(writer_id=w, options=options), chunks) for w in range(writers)])
    return sum(n for _s, _e, n in spans) / (max(e for _s, e, _n in spans) - min(s for s, _e, _n in spans))


def torchrl_peer(capacity: int) -> Any:
    """Return TorchRL's RayReplayBuffer (uniform, LazyTensorStorage) filled, or None without torchrl."""
    try:
        from tensordict import TensorDict
        from torchrl.data import LazyTensorStorage, RayReplayBuffer
    except ImportError:
        print("torchrl not installed: pip install torchrl (extra bench-peers); TorchRL peer skipped", file=sys.stderr)
        return None
    storage = functools.partial(LazyTensorStorage, capacity)
    buffer = RayReplayBuffer(storage=storage, batch_size=BATCH, remote_config={"num_cpus": 0})

    def as_td(data: dict[str, np.ndarray]) -> Any:
        return TensorDict({k: torch.from_numpy(v) for k, v in data.items()}, batch_size=[data["obs"].shape[0]])

    fill(lambda data: buffer.extend(as_td(data)), capacity)
    buffer.as_td = as_td
    return buffer


def print_table(title: str, results: dict[str, list[float]], unit: str, base: str | None, scale: float = 1.0,
                also: str | None = None) -> None:  # fmt: skip
    """Print each variant's median (times ``scale``) and its ratio to ``base`` (and to ``also``)."""
    bases = [(name, statistics.median(results[name])) for name in (base, also) if name]
    print(f"\n{title}  [{load()}]" + "".join(f"\n  ratio {i + 1}: to {name}" for i, (name, _m) in enumerate(bases)))
    for name, values in results.items():
        median = statistics.median(values)
        ratios = "".join(f"  {median / reference:6.2f}x" for _name, reference in bases)
        print(f"  {name:55s} {median * scale:12.1f} {unit}{ratios}")


def main(argv: list[str] | None = None) -> None:
    """Run S7 and print medians, ratios and the machine's load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    capacity, rounds, scale = (4096, 1, 1) if args.smoke else (args.capacity, args.rounds, 25)
    shard_counts, writer_counts = ((1, 2), (1, 2)) if args.smoke else ((1, 2, 4), (1, 2, 4, 8))
    local = TransitionBuffer(capacity, sampler=PrioritizedSampler(capacity, alpha=0.6, beta=0.4), seed=0)
    fill(local.extend, capacity)
    try:
        import ray
    except ImportError:
        print(f"ray not installed (pip install 'xreplay[ray]'): xreplay in-process only, "
              f"{rate(lambda: local.sample(BATCH), 100):.0f} batches/s")  # fmt: skip
        return
    import s2_transitions
    from xreplay.distributed import RayReplay

    for module in (s2_transitions, sys.modules.get(__name__)):  # not importable in Ray's workers: send by value
        if module is not None and module.__name__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        sections = set(args.sections.split(","))
        run(ray, RayReplay, local, capacity, rounds, scale, shard_counts, writer_counts, args.smoke, sections)
    finally:
        if started:
            ray.shutdown()


def run(ray: Any, replay_cls: Any, local: TransitionBuffer, capacity: int, rounds: int, scale: int,
        shard_counts: tuple[int, ...], writer_counts: tuple[int, ...], smoke: bool,
        sections: set[str]) -> None:  # fmt: skip
    """Build the replays and peers, then measure and print every section."""
    print(f"S7, xreplay.distributed.RayReplay: capacity {capacity:,} transitions of 168 B, "
          f"batch {BATCH}, chunks of {CHUNK}; {load()}")  # fmt: skip
    factory = functools.partial(TransitionBuffer, sampler="prioritized", seed=0)  # alpha 0.6, beta 0.4
    replays = {s: replay_cls(functools.partial(factory, -(-capacity // s)), num_shards=s, seed=0) for s in shard_counts}
    uniform = replay_cls(functools.partial(TransitionBuffer, capacity, sampler="uniform", seed=0), num_shards=1, seed=0)
    for replay in (*replays.values(), uniform):
        fill(replay.extend, capacity)
        replay.flush()
    peer = None if smoke or "torchrl" not in sections else torchrl_peer(capacity)
    try:
        if "latency" in sections:
            measure_latency(ray, replays, local, rounds, scale)
        if "throughput" in sections:
            for config in (FAST, BULK) if smoke else (FAST, BULK, LARGE):
                throughput(ray, replays, local, rounds, scale, config)
            time.sleep(1.0)  # the echo actors' processes exit: not counted in the split below
        if "cores" in sections:
            cpu_split(replays, scale)
        if "inserts" in sections:
            measure_inserts(ray, replays, local, rounds, scale, writer_counts)
        if peer is not None:
            compare_torchrl(peer, uniform, rounds, scale)
    finally:
        for replay in (*replays.values(), uniform):
            replay.shutdown()
        if peer is not None:
            peer.close()


def measure_latency(ray: Any, replays: dict[int, Any], local: TransitionBuffer, rounds: int, scale: int) -> None:
    """Print one sample(256)'s latency against Ray echoes (base: the same request, answered with the shard's reply)."""
    calls, one = 20 * scale, min(replays)
    five = echo_actor(ray, chunk(np.random.default_rng(1), BATCH))  # the first baseline: 5 field arrays
    echoes = {s: [echo_actor(ray, r) for r in shard_replies(replay, BATCH // s)] for s, replay in replays.items()}
    base, bare = "ray echo: a shard's reply to the same request", "ray echo: a shard's reply, bare call"
    latency = {
        base: lambda: timed(echo_pipeline(ray, echoes[one], 1, BATCH), calls),
        bare: lambda: timed(echo_pipeline(ray, echoes[one], 1, None), calls),
        "ray echo: the five field arrays, bare call": lambda: timed(lambda: ray.get(five.echo.remote()), calls),
        "in-process sample(256)": lambda: timed(lambda: local.sample(BATCH), calls),
        "1 shard's own sample call, no client": lambda: timed(lambda: shard_replies(replays[one], BATCH), calls),
    }
    for shards, replay in replays.items():
        latency[f"{shards} shard(s) sample(256)"] = lambda r=replay: timed(lambda: r.sample(BATCH), calls)
        if shards > 1:
            step = echo_pipeline(ray, echoes[shards], 1, BATCH // shards)
            latency[f"ray echo from {shards} actors: their replies, same requests"] = lambda f=step: timed(f, calls)
    prefetched = replays[one].client(options=ClientOptions(prefetch=1))
    latency[f"{one} shard(s) sample(256), prefetch=1"] = lambda: timed(lambda: prefetched.sample(BATCH), calls)
    cpu: dict[str, list[float]] = {name: [] for name in latency}
    results = interleave({name: with_cpu(run, cpu[name]) for name, run in latency.items()}, rounds)
    print_table("sample(256) latency, no prefetch (median)", results, "us", base, 1e6, bare)
    print_table("... CPU per call: learner, shards or echo actors, raylet (median of the rounds)", cpu, "us", base, 1e6)
    for actor in [five, *(a for actors in echoes.values() for a in actors)]:
        ray.kill(actor)


def with_cpu(run: Callable[[], list[float]], out: list[float]) -> Callable[[], list[float]]:
    """Return ``run`` recording into ``out`` the CPU seconds per call its processes used (from ``/proc``)."""

    def measured() -> list[float]:
        start = cpu_seconds()
        times = run()
        used = cores_since(start, 1.0)  # seconds: over a "wall" of one second
        out.append(sum(used.get(k, 0.0) for k in ("learner", "shards", "echo actors", "raylet")) / len(times))
        return times

    return measured


def measure_inserts(ray: Any, replays: dict[int, Any], local: TransitionBuffer, rounds: int, scale: int,
                    writer_counts: tuple[int, ...]) -> None:  # fmt: skip
    """Print the aggregate insert rate for every shard count and writer count."""
    inserts: dict[str, list[float]] = {}
    data = chunk(np.random.default_rng(0), CHUNK)
    inserts["in-process extend(64), 1 writer"] = [rate(lambda: local.extend(data), 50 * scale) * CHUNK]
    chunks = 8 * scale
    for writers in writer_counts:  # warm the worker processes up (first imports), not measured
        insert_round(ray, replays[min(replays)], writers, 2)
    grid = {f"{s} shard(s), {w} writer(s)": (replay, w, 0) for s, replay in replays.items() for w in writer_counts}
    for s, replay in replays.items():
        grid[f"{s} shard(s), {max(writer_counts)} writer(s), write_batch=1024"] = (replay, max(writer_counts), 1024)
    runs = {key: (lambda g=g: insert_round(ray, g[0], g[1], chunks, g[2])) for key, g in grid.items()}
    measured = interleave(runs, rounds)
    print_table("aggregate inserts (transitions/s, chunks of 64)", {**inserts, **measured}, "items/s",
                "in-process extend(64), 1 writer")  # fmt: skip


def cpu_split(replays: dict[int, Any], scale: int) -> None:
    """Print the cores each kind of process uses while the learner samples as fast as it can."""
    print(f"\ncores used while sampling (prefetch, multi-batch) and sampling + updating  [{load()}]")
    priorities = np.random.default_rng(4).random(BATCH)
    for (shards, replay), config in ((item, c) for c in (FAST, BULK) for item in replays.items()):
        client = replay.client(options=ClientOptions(**config))
        for update in (False, True):
            began, start, count = time.perf_counter(), cpu_seconds(), max(80 * scale, 16 * config["batches_per_call"])
            for _ in range(count):
                batch = client.sample(BATCH)
                if update:
                    client.update_priorities(batch, priorities)
            wall = time.perf_counter() - began
            used = cores_since(start, wall)
            split = ", ".join(f"{kind} {value:.2f}" for kind, value in used.items() if value >= 0.005)
            what = ("sample+update" if update else "sample") + f", k={config['batches_per_call']}"
            print(f"  {shards} shard(s) {what:20s} {count / wall:8.0f} batches/s   cores: {split}")


def compare_torchrl(peer: Any, uniform: Any, rounds: int, scale: int) -> None:
    """Print TorchRL's RayReplayBuffer against xreplay on one uniform shard: inserts of 64 and sample(256)."""
    data = chunk(np.random.default_rng(3), CHUNK)
    td = peer.as_td(data)
    fast = uniform.client(options=ClientOptions(**FAST))
    variants = {"torchrl extend(64)": lambda: rate(lambda: peer.extend(td), 20 * scale) * CHUNK,
                "xreplay extend(64)": lambda: rate(lambda: uniform.extend(data), 20 * scale) * CHUNK}  # fmt: skip
    results = interleave(variants, rounds)
    uniform.flush()
    print_table("TorchRL RayReplayBuffer vs xreplay, one uniform shard: inserts", results, "items/s",
                "torchrl extend(64)")  # fmt: skip
    variants = {
        "torchrl sample(256)": lambda: rate(peer.sample, 20 * scale),
        "xreplay sample(256), no prefetch": lambda: rate(lambda: uniform.sample(BATCH), 20 * scale),
        "xreplay sample(256), prefetch": lambda: rate(lambda: fast.sample(BATCH), 20 * scale),
    }
    print_table("... samples", interleave(variants, rounds), "batches/s", "torchrl sample(256)")


if __name__ == "__main__":
    main()
