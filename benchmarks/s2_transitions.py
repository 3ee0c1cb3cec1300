"""Workload S2: a million MuJoCo-sized transitions, uniform and prioritized, xreplay vs installed peers.

Fields: obs f32[17], next_obs f32[17], act f32[6], rew f32, done f32 (168 bytes a
transition, 160 MiB at capacity 1,000,000). The data is one stream of episodes
of 1,000 steps: a step's next_obs is the next step's obs except at an episode
end. Measured per implementation, in one process, repetitions interleaved
across implementations so that machine noise hits all of them alike:

* add in chunks of 1 and of 64 into a full buffer (transitions/s);
* prioritized loop: sample 256 (alpha 0.6, beta 0.4) + update 256 priorities (loops/s);
* uniform loop: sample 256 (loops/s);
* vector environment: add in chunks of 8 transitions from 8 interleaved streams (one step of an
  8-env vector environment; transitions/s). ``xreplay-next`` then needs ``stream="env"`` (an int32
  env id per transition) to pair next observations; cpprb's ``next_of`` has no streams, so
  ``cpprb-next`` has no such row (nan);
* RSS growth after allocating and filling the buffer, in a fresh subprocess
  that first builds and uses a 16-slot buffer of the same kind, so that
  imports and numba's compilation (a fixed cost per process, reported
  separately as "warm-up RSS") are not counted as the buffer's.

Implementations: ``xreplay`` (the priority tree's default back end: numba
when installed, reported as "tree back end"), ``xreplay-numpy`` (numpy back
end), ``xreplay-next`` (``next_obs_from="obs"``: next_obs stored once),
``cpprb`` and ``cpprb-next`` (cpprb's ``next_of="obs"``) when cpprb is
installed (``pip install -e ".[bench-peers]"``; TorchRL and Tianshou are not
wired in). ``--smoke`` runs a tiny size in a few seconds; ``--profile`` only
times the steps of xreplay's prioritized loop, each alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from xreplay.buffers import TransitionBuffer
from xreplay.samplers import PrioritizedSampler
from xreplay.samplers.priority_tree import PriorityTree

SHAPES = {"obs": (17,), "next_obs": (17,), "act": (6,), "rew": (), "done": ()}
BATCH = 256


EPISODE = 1000


ENVS = 8  # streams of the vector-environment row


def vector_chunk(rng: np.random.Generator, steps: int, env: bool) -> dict[str, np.ndarray]:
    """Return ``steps`` steps of an ENVS-env vector environment, interleaved (env 0..7 of step 0, then step 1...).

    Each env's next_obs is its own next obs; with ``env``, an int32 field ``env`` names the stream.
    """
    obs = rng.random((steps + 1, ENVS, *SHAPES["obs"]), dtype=np.float32)
    data = {k: rng.random((steps * ENVS, *s), dtype=np.float32) for k, s in SHAPES.items()}
    data["obs"] = obs[:-1].reshape(steps * ENVS, *SHAPES["obs"])
    data["next_obs"] = obs[1:].reshape(steps * ENVS, *SHAPES["obs"])
    data["done"][:] = 0.0
    if env:
        data["env"] = np.tile(np.arange(ENVS, dtype=np.int32), steps)
    return data


def chunk(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Return ``n`` random transitions of one stream (next_obs is the next obs, episodes end every EPISODE steps).

    A chunk is written repeatedly: unless it ends an episode, its last next_obs is its first obs.
    """
    data = {k: rng.random((n, *s), dtype=np.float32) for k, s in SHAPES.items()}
    data["next_obs"][:-1] = data["obs"][1:]
    data["done"][:] = 0.0
    data["done"][EPISODE - 1 :: EPISODE] = 1.0
    starts = np.flatnonzero(data["done"][:-1]) + 1  # a reset: the next obs after an episode end is new
    data["next_obs"][starts - 1] = rng.random((starts.size, *SHAPES["obs"]), dtype=np.float32)
    if not data["done"][-1]:  # written again and again: the stream continues with this chunk's first obs
        data["next_obs"][-1] = data["obs"][0]
    return data


class XReplay:
    """xreplay's TransitionBuffer (priority tree back end: numba when installed, else numpy)."""

    backend: str | None = None
    next_obs_from: str | None = None

    def __init__(self, capacity: int, prioritized: bool):
        sampler = (
            PrioritizedSampler(capacity, alpha=0.6, beta=0.4, backend=self.backend) if prioritized else "uniform"
        )
        self.buf = TransitionBuffer(capacity, sampler=sampler, seed=0, next_obs_from=self.next_obs_from)

    def add(self, data: dict[str, np.ndarray]) -> None:
        self.buf.extend(data)

    def add_one(self, data: dict[str, np.ndarray]) -> None:
        self.buf.add(data)

    def sample(self) -> object:
        return self.buf.sample(BATCH)

    def per_loop(self, priorities: np.ndarray) -> None:
        s = self.buf.sample(BATCH)
        self.buf.update_priorities(s.indices, priorities, s.generations)


    def vector(self, capacity: int, rng: np.random.Generator) -> Callable[[dict[str, np.ndarray]], None] | None:
        """Return the add of the vector-environment row (into this uniform buffer)."""
        return self.add


class XReplayNumpy(XReplay):
    """xreplay with the numpy back end of the priority tree."""

    backend = "numpy"


class XReplayNext(XReplay):
    """xreplay storing next_obs once (``next_obs_from="obs"``)."""

    next_obs_from = "obs"

    def vector(self, capacity: int, rng: np.random.Generator) -> Callable[[dict[str, np.ndarray]], None] | None:
        """Return the add of a filled buffer pairing next observations per stream (``stream="env"``)."""
        buf = TransitionBuffer(capacity, seed=0, next_obs_from="obs", stream="env")
        data = vector_chunk(rng, 125, env=True)
        for _ in range(-(-capacity // 1000)):
            buf.extend(data)
        return buf.extend


class Cpprb:
    """cpprb's ReplayBuffer / PrioritizedReplayBuffer."""

    next_of: str | None = None

    def __init__(self, capacity: int, prioritized: bool):
        import cpprb

        env = {k: {"shape": s if s else 1} for k, s in SHAPES.items() if not (self.next_of and k == "next_obs")}
        cls = cpprb.PrioritizedReplayBuffer if prioritized else cpprb.ReplayBuffer
        extra = {"next_of": self.next_of} if self.next_of else {}
        self.buf = cls(capacity, env, alpha=0.6, **extra) if prioritized else cls(capacity, env, **extra)

    def add(self, data: dict[str, np.ndarray]) -> None:
        self.buf.add(**data)

    add_one = add

    def vector(self, capacity: int, rng: np.random.Generator) -> Callable[[dict[str, np.ndarray]], None] | None:
        """Return the add of the vector-environment row (into this uniform buffer; None with ``next_of``)."""
        return None if self.next_of else self.add

    def sample(self) -> object:
        return self.buf.sample(BATCH)

    def per_loop(self, priorities: np.ndarray) -> None:
        s = self.buf.sample(BATCH, beta=0.4)
        self.buf.update_priorities(s["indexes"], priorities)


class CpprbNext(Cpprb):
    """cpprb storing next_obs once (``next_of="obs"``)."""

    next_of = "obs"


IMPLS: dict[str, Callable[[int, bool], object]] = {
    "xreplay": XReplay,
    "xreplay-numpy": XReplayNumpy,
    "xreplay-next": XReplayNext,
    "cpprb": Cpprb,
    "cpprb-next": CpprbNext,
}


def available() -> list[str]:
    """Return the implementations that can be imported here."""
    names = ["xreplay", "xreplay-numpy", "xreplay-next"]
    try:
        import cpprb  # noqa: F401

        names += ["cpprb", "cpprb-next"]
    except ImportError:
        print("cpprb not installed: pip install cpprb (extra bench-peers)", file=sys.stderr)
    for peer in ("torchrl", "tianshou"):
        try:
            __import__(peer)
            print(f"{peer} installed but not wired into S2 yet", file=sys.stderr)
        except ImportError:
            print(f"{peer} not installed: skipped", file=sys.stderr)
    return names


def fill(buf: object, capacity: int, rng: np.random.Generator, size: int = 1000) -> None:
    """Fill ``buf`` to capacity in chunks of ``size`` (one episode of the stream each)."""
    data = chunk(rng, size)
    for _ in range(-(-capacity // size)):
        buf.add(data)


def rss_bytes() -> int:
    """Return this process's resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_growth(name: str, capacity: int) -> dict[str, tuple[int, int]]:
    """Return per kind (uniform, prioritized) the RSS growth of a warm-up (16-slot buffer) and of one filled buffer.

    Measured in one fresh subprocess per implementation: for each kind, the
    warm-up buffer is built and used first, then the full one.
    """
    code = (
        "import sys, json, numpy as np, torch; sys.path.insert(0, 'benchmarks'); import s2_transitions as b\n"
        "out, alive = {}, []\n"
        "for p in (False, True):\n"
        "    start = b.rss_bytes()\n"
        f"    small = b.IMPLS[{name!r}](16, p); b.fill(small, 16, np.random.default_rng(1), 16)\n"
        "    small.per_loop(np.ones(b.BATCH)) if p else small.sample()\n"
        "    before = b.rss_bytes()\n"
        f"    buf = b.IMPLS[{name!r}]({capacity}, p); b.fill(buf, {capacity}, np.random.default_rng(0))\n"
        "    buf.per_loop(np.ones(b.BATCH)) if p else buf.sample()\n"
        "    out['prioritized' if p else 'uniform'] = [before - start, b.rss_bytes() - before]\n"
        "    alive += [small, buf]  # nothing is freed while the next kind is measured\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {kind: (int(w), int(g)) for kind, (w, g) in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def timed(fn: Callable[[], object], calls: int) -> float:
    """Return seconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(names: list[str], capacity: int, reps: int, calls: int) -> dict[str, dict[str, float]]:
    """Return per implementation the median rates of every S2 operation."""
    rng = np.random.default_rng(0)
    one, sixty_four = chunk(rng, 1), chunk(rng, 64)
    single = {k: v[0] for k, v in one.items()}  # one transition, no batch dimension
    priorities = rng.random(BATCH) + 1e-6
    buffers = {}
    for name in names:
        buffers[name] = {p: IMPLS[name](capacity, p) for p in (False, True)}
        for buf in buffers[name].values():
            fill(buf, capacity, rng)
        buffers[name]["vector"] = buffers[name][False].vector(capacity, rng)
    vectors = {env: vector_chunk(rng, 1, env) for env in (False, True)}
    ops = {
        "add1 uniform (tr/s)": lambda b: (
            lambda: b[False].add_one(single if isinstance(b[False], XReplay) else one),
            1,
        ),
        "add64 uniform (tr/s)": lambda b: (lambda: b[False].add(sixty_four), 64),
        "add1 prioritized (tr/s)": lambda b: (
            lambda: b[True].add_one(single if isinstance(b[True], XReplay) else one),
            1,
        ),
        "add64 prioritized (tr/s)": lambda b: (lambda: b[True].add(sixty_four), 64),
        "prioritized loop (loops/s)": lambda b: (lambda: b[True].per_loop(priorities), 1),
        "uniform sample-256 (loops/s)": lambda b: (lambda: b[False].sample(), 1),
        f"add{ENVS} vector-env uniform (tr/s)": lambda b: (
            None if b["vector"] is None else (lambda: b["vector"](vectors[isinstance(b[False], XReplayNext)])),
            ENVS,
        ),
    }
    results: dict[str, dict[str, list[float]]] = {n: {op: [] for op in ops} for n in names}
    for _ in range(reps):
        for op, make in ops.items():
            for name in names:  # interleaved: each repetition runs every implementation back to back
                fn, items = make(buffers[name])
                results[name][op].append(float("nan") if fn is None else items / timed(fn, calls))
    return {n: {op: float(np.median(v)) for op, v in per.items()} for n, per in results.items()}


def profile(capacity: int, blocks: int, calls: int) -> dict[str, float]:
    """Return where one prioritized loop of ``xreplay`` goes: microseconds per call of each step, alone.

    Each step runs ``calls`` times per block on a filled buffer; the fastest of ``blocks`` blocks is
    kept (the least disturbed by other processes). Masses and rows cycle through more index sets than
    the caches hold, so that they miss the caches as fresh draws do.
    """
    rng = np.random.default_rng(0)
    x = XReplay(capacity, True)
    fill(x, capacity, rng)
    buf, priorities = x.buf, rng.random(BATCH) + 1e-6
    sampler, tree = buf.sampler, buf.sampler.tree
    sets = 4096  # index sets cycled through: more rows than the caches hold, as fresh draws are
    rows = [rng.integers(0, capacity, BATCH) for _ in range(sets)]
    total = tree.total()
    masses = [rng.random(BATCH) * total for _ in range(sets)]
    drawn = buf.sample(BATCH)
    leaves = (priorities + sampler.epsilon) ** sampler.alpha
    turn = iter(range(1 << 62))
    steps = {
        "whole loop: sample + update_priorities": lambda: x.per_loop(priorities),
        "TransitionBuffer.sample": lambda: buf.sample(BATCH),
        "  PrioritizedSampler.sample (draw, weights)": lambda: sampler.sample(buf.rng, BATCH),
        "  PriorityTree.find (copy, clamp, descents)": lambda: tree.find(masses[next(turn) % sets]),
        "  ColumnStorage.gather (random rows)": lambda: buf.storage.gather(rows[next(turn) % sets]),
        "TransitionBuffer.update_priorities": lambda: buf.update_priorities(drawn, priorities),
        "  PriorityTree.update (leaves just drawn)": lambda: tree.update(drawn.indices, leaves),
    }
    x.per_loop(priorities)
    return {name: min(timed(fn, calls) for _ in range(blocks)) * 1e6 for name, fn in steps.items()}


RATIOS = (("xreplay", "cpprb"), ("xreplay-numpy", "cpprb"), ("xreplay-next", "cpprb-next"))


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run S2, print a table of medians and ratios vs cpprb, and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny size, a few seconds")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--impls", nargs="*", help="implementations to run (default: every available one)")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="only time the steps of xreplay's prioritized loop")
    args = parser.parse_args(argv)
    if args.smoke:
        args.capacity, args.reps, args.calls = 5_000, 3, 20
    torch.set_num_threads(1)
    if args.profile:
        steps = profile(args.capacity, 8 * args.reps, args.calls)
        backend = PriorityTree(16).backend
        print(f"S2 profile: xreplay prioritized loop at capacity {args.capacity}, tree back end {backend}")
        print("\n".join(f"{name:46s}{us:9.1f} us" for name, us in steps.items()))
        return {"xreplay profile (us per call)": steps}
    names = [n for n in available() if not args.impls or n in args.impls]
    table = measure(names, args.capacity, args.reps, args.calls)
    payload = args.capacity * sum(4 * int(np.prod(s)) for s in SHAPES.values())
    if not args.no_rss:
        for name in names:
            for kind, (warmup, growth) in rss_growth(name, args.capacity).items():
                table[name][f"RSS growth {kind} (x payload)"] = growth / payload
                table[name][f"warm-up RSS {kind} (MiB)"] = warmup / 2**20
    print(
        f"S2 data: obs f32[17], next_obs f32[17], act f32[6], rew f32, done f32; one stream of {EPISODE}-step "
        f"episodes (next_obs = the next obs except at an episode end); vector row: {ENVS} interleaved streams"
    )
    print(
        f"S2 capacity={args.capacity} reps={args.reps} calls={args.calls} payload={payload / 2**20:.1f} MiB; "
        f"tree back end: xreplay={PriorityTree(16).backend}, xreplay-numpy=numpy, "
        f"xreplay-next={PriorityTree(16).backend}"
    )
    ratios = [(a, b) for a, b in RATIOS if a in names and b in names]
    header = f"{'operation':34s}" + "".join(f"{n:>14s}" for n in names)
    print(header + "".join(f"  {a + '/' + b:>22s}" for a, b in ratios))
    for op in table[names[0]]:
        row = f"{op:34s}" + "".join(f"{table[n][op]:14.4g}" for n in names)
        row += "".join(f"  {table[a][op] / table[b][op]:22.2f}" for a, b in ratios)
        print(row)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(table, out, indent=1)
    return table


if __name__ == "__main__":
    main()
