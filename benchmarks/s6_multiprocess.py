"""Workload S6: many writer processes, one learner, S2's transitions in shared memory, xreplay vs cpprb MP.

Layout: S2's (obs f32[17], next_obs f32[17], act f32[6], rew f32, done f32:
168 bytes a transition), 1,000,000 slots, filled before timing. Buffers:
``xreplay`` (:class:`xreplay.shared.SharedTransitionBuffer`) and ``cpprb``
(``MPReplayBuffer`` / ``MPPrioritizedReplayBuffer``), uniform and prioritized
(alpha 0.6, beta 0.4), each created once and reused by every run.

A run forks W writer processes (1, 2, 4) that add chunks of C transitions (1,
64) in a loop for ``--seconds``; each writer times its own loop, and the
aggregate insert rate is the sum of the writers' rates. With ``learner`` the
parent process meanwhile samples 256 (and, prioritized, updates 256 priorities)
in a loop, whose rate is reported too. Runs are interleaved: every repetition
runs every configuration for every buffer back to back, and the table shows
medians over repetitions. Memory is read from ``/proc`` during the 4-writer
learner runs with chunks of 64: RSS and PSS summed over the process tree, and
the PSS of the shared-memory mappings (files in ``/dev/shm``) summed over the
tree - PSS divides a shared page among the processes mapping it, so it counts
shared memory once, while RSS counts it once per process.

``--smoke`` runs a tiny size in a few seconds. cpprb is optional
(``pip install -e ".[bench-peers]"``); without it only xreplay runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from s2_transitions import BATCH, SHAPES, chunk
from xreplay.samplers import PrioritizedSampler
from xreplay.shared import SharedTransitionBuffer

CTX = mp.get_context("fork")  # writers start in milliseconds and inherit the buffer (cpprb needs it)


class XReplay:
    """xreplay's SharedTransitionBuffer; writers get a handle from ``writer()``."""

    name = "xreplay"

    def __init__(self, capacity: int, prioritized: bool):
        sampler = PrioritizedSampler(capacity, alpha=0.6, beta=0.4) if prioritized else "uniform"
        spec = {k: (s, torch.float32) for k, s in SHAPES.items()}
        self.buf = SharedTransitionBuffer(capacity, spec, sampler=sampler, seed=0)
        self.prioritized = prioritized

    def fill(self, capacity: int, rng: np.random.Generator) -> None:
        data = chunk(rng, 1000)
        writer = self.buf.writer()
        for _ in range(-(-capacity // 1000)):
            writer.extend(data)
        writer.close()
        len(self.buf)  # the learner drains the publications

    def handle(self) -> Any:
        return self.buf.writer()

    @staticmethod
    def adder(handle: Any, data: dict[str, np.ndarray]) -> Any:
        if data["obs"].shape[0] == 1:
            single = {k: v[0] for k, v in data.items()}
            return lambda: handle.add(single)
        return lambda: handle.extend(data)

    @staticmethod
    def finish(handle: Any) -> None:
        handle.close()  # leaves the writer table

    def learner_step(self, priorities: np.ndarray) -> None:
        batch = self.buf.sample(BATCH)
        if self.prioritized:
            self.buf.update_priorities(batch, priorities)

    def shm_paths(self) -> tuple[str, ...]:
        return (self.buf.path,)

    def close(self) -> None:
        self.buf.close()


class Cpprb:
    """cpprb's MPReplayBuffer / MPPrioritizedReplayBuffer (shared memory, explorers add, one learner samples)."""

    name = "cpprb"

    def __init__(self, capacity: int, prioritized: bool):
        import cpprb

        env = {k: {"shape": s if s else 1} for k, s in SHAPES.items()}
        if prioritized:
            self.buf = cpprb.MPPrioritizedReplayBuffer(capacity, env, alpha=0.6, ctx=CTX)
        else:
            self.buf = cpprb.MPReplayBuffer(capacity, env, ctx=CTX)
        self.prioritized = prioritized

    def fill(self, capacity: int, rng: np.random.Generator) -> None:
        size = min(1000, capacity)  # cpprb refuses a batch larger than its capacity
        data = chunk(rng, size)
        for _ in range(-(-capacity // size)):
            self.buf.add(**data)

    def handle(self) -> Any:
        return self.buf

    @staticmethod
    def adder(handle: Any, data: dict[str, np.ndarray]) -> Any:
        return lambda: handle.add(**data)

    @staticmethod
    def finish(handle: Any) -> None:
        pass

    def learner_step(self, priorities: np.ndarray) -> None:
        if self.prioritized:
            batch = self.buf.sample(BATCH, beta=0.4)
            self.buf.update_priorities(batch["indexes"], priorities)
        else:
            self.buf.sample(BATCH)

    def shm_paths(self) -> tuple[str, ...]:
        return ("/dev/shm/",)

    def close(self) -> None:
        pass


def available() -> list[type]:
    """Return the implementations that can run here."""
    impls: list[type] = [XReplay]
    try:
        import cpprb  # noqa: F401

        impls.append(Cpprb)
    except ImportError:
        print("cpprb not installed: pip install cpprb (extra bench-peers); xreplay runs alone", file=sys.stderr)
    return impls


def writer_main(impl: type, handle: Any, size: int, seed: int, barrier: Any, stop: Any, rates: Any, i: int) -> None:
    """Add chunks of ``size`` until ``stop`` is set; store this writer's transitions per second in ``rates[i]``."""
    torch.set_num_threads(1)
    add = impl.adder(handle, chunk(np.random.default_rng(seed), size))
    add()
    barrier.wait()
    start, count = time.perf_counter(), 0
    while not stop.value:
        for _ in range(16):
            add()
        count += 16 * size
    rates[i] = count / (time.perf_counter() - start)
    impl.finish(handle)


def anonymous(pid: int) -> int:
    """Return the anonymous (private, not file-backed) memory of ``pid`` in bytes."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(pids: list[int], shm: tuple[str, ...]) -> dict[str, float]:
    """Return RSS and PSS summed over ``pids``, and the PSS of their mappings of files under ``shm`` prefixes."""
    total = {"rss": 0.0, "pss": 0.0, "shm_pss": 0.0, "learner_anonymous": float(anonymous(pids[0]))}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as smaps:
                current = ""
                for line in smaps:
                    head = line.split(None, 1)[0]
                    if "-" in head and not head.endswith(":"):
                        parts = line.split()
                        current = parts[5] if len(parts) > 5 else ""
                    elif head == "Rss:":
                        total["rss"] += int(line.split()[1]) * 1024
                    elif head == "Pss:":
                        pss = int(line.split()[1]) * 1024
                        total["pss"] += pss
                        if current and any(current.startswith(p) for p in shm):
                            total["shm_pss"] += pss
        except OSError:
            continue
    return total


def run(impl: Any, writers: int, size: int, learner: bool, seconds: float, measure_memory: bool) -> dict[str, float]:
    """Run one configuration; return the aggregate insert rate, the learner's loop rate and (optionally) memory."""
    barrier, stop, rates = CTX.Barrier(writers + 1), CTX.RawValue("i", 0), CTX.RawArray("d", writers)
    handles = [impl.handle() for _ in range(writers)]
    procs = [
        CTX.Process(target=writer_main, args=(type(impl), h, size, i, barrier, stop, rates, i), daemon=True)
        for i, h in enumerate(handles)
    ]
    for p in procs:
        p.start()
    priorities = np.random.default_rng(1).random(BATCH) + 1e-3
    barrier.wait()
    start, loops = time.perf_counter(), 0
    deadline = start + seconds
    if learner:
        while time.perf_counter() < deadline:
            impl.learner_step(priorities)
            loops += 1
    else:
        time.sleep(seconds)
    elapsed = time.perf_counter() - start
    out = {"insert": 0.0, "learner": loops / elapsed if learner else float("nan")}
    if measure_memory:
        out.update(memory([os.getpid(), *(p.pid for p in procs)], impl.shm_paths()))
    stop.value = 1
    for p in procs:
        p.join(30)
        if p.exitcode != 0:
            raise RuntimeError(f"{impl.name} writer exited with {p.exitcode}")
    for h in handles:
        impl.finish(h)  # the parent's copies (never attached here)
    out["insert"] = float(sum(rates))
    return out


def lock_costs(calls: int = 100_000) -> dict[str, float]:
    """Return microseconds per lock + unlock of the reservation locks considered, uncontended, in this process."""
    from xreplay.shared.locks import MUTEX_BYTES, FlockLock, RobustMutex, initialize

    costs = {}
    memory = np.zeros(MUTEX_BYTES, dtype=np.uint8)
    candidates: dict[str, Any] = {"multiprocessing.Lock": CTX.Lock()}
    if initialize(memory) == "mutex":
        candidates["robust pthread mutex (ctypes)"] = RobustMutex(memory)
    with open(os.devnull, "rb") as null:
        candidates["thread lock + flock"] = FlockLock(null.fileno())
        for name, lock in candidates.items():
            start = time.perf_counter()
            for _ in range(calls):
                with lock:
                    pass
            costs[name] = (time.perf_counter() - start) / calls * 1e6
    return costs


def memory_run(name: str, prioritized: bool, capacity: int, seconds: float) -> dict[str, float]:
    """Return the memory of one buffer in a process of its own, measured while 4 writers add chunks of 64."""
    torch.set_num_threads(1)
    impl_cls = {cls.name: cls for cls in available()}[name]
    small = impl_cls(16, prioritized)  # imports, numba's compilation, first-use allocations: not the buffer's
    small.fill(16, np.random.default_rng(1))
    small.learner_step(np.ones(BATCH))
    before = anonymous(os.getpid())
    impl = impl_cls(capacity, prioritized)
    impl.fill(capacity, np.random.default_rng(0))
    got = run(impl, 4, 64, True, seconds, True)
    got["learner_anonymous"] -= before
    impl.close()
    small.close()
    return got


def main(argv: list[str] | None = None) -> None:
    """Run S6 and print medians and ratios (xreplay / cpprb)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny size, a few seconds")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--writers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--chunks", type=int, nargs="*", default=[1, 64])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs (a subprocess each)")
    parser.add_argument("--memory", help=argparse.SUPPRESS)  # "name:kind": one memory run, printed as JSON
    args = parser.parse_args(argv)
    if args.memory:
        name, kind = args.memory.split(":")
        print(json.dumps(memory_run(name, kind == "prioritized", args.capacity, args.seconds)))
        return
    if args.smoke:
        args.capacity, args.reps, args.seconds, args.writers, args.chunks = 4096, 1, 0.1, [2], [64]
        args.no_memory = True
    torch.set_num_threads(1)
    payload = args.capacity * sum(4 * int(np.prod(s)) for s in SHAPES.values())
    impls = available()
    rng = np.random.default_rng(0)
    buffers = {}
    for cls in impls:
        for prioritized in (False, True):
            buffers[(cls.name, prioritized)] = impl = cls(args.capacity, prioritized)
            impl.fill(args.capacity, rng)
    configs = [(w, c, lrn) for w in args.writers for c in args.chunks for lrn in (False, True)]
    results: dict[tuple, dict[str, list[float]]] = {}
    for _ in range(args.reps):
        for w, c, lrn in configs:
            for (name, prioritized), impl in buffers.items():
                got = run(impl, w, c, lrn, args.seconds, False)
                cell = results.setdefault((name, prioritized, w, c, lrn), {})
                for key, value in got.items():
                    cell.setdefault(key, []).append(value)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"S6 capacity={args.capacity} reps={args.reps} seconds={args.seconds} payload={payload / 2**20:.1f} MiB; "
          f"{os.cpu_count()} cores; {load}")
    names = [cls.name for cls in impls]
    table: dict[str, Any] = {}
    print(f"{'kind':12s}{'W':>3s}{'chunk':>6s}{'learner':>8s}" + "".join(f"{n + ' ins/s':>16s}" for n in names)
          + ("".join(f"{n + ' loops/s':>17s}" for n in names) + f"{'insert x':>10s}{'loop x':>8s}"
             if len(names) > 1 else ""))
    for prioritized in (False, True):
        kind = "prioritized" if prioritized else "uniform"
        for w, c, lrn in configs:
            med = {n: {k: float(np.median(v)) for k, v in results[(n, prioritized, w, c, lrn)].items()} for n in names}
            row = f"{kind:12s}{w:3d}{c:6d}{'yes' if lrn else 'no':>8s}"
            row += "".join(f"{med[n]['insert']:16.4g}" for n in names)
            if len(names) > 1:
                row += "".join(f"{med[n]['learner']:17.4g}" for n in names)
                row += f"{med['xreplay']['insert'] / med['cpprb']['insert']:10.2f}"
                row += f"{med['xreplay']['learner'] / med['cpprb']['learner']:8.2f}" if lrn else f"{'':8s}"
            print(row)
            table[f"{kind} W={w} chunk={c} learner={lrn}"] = med
    for impl in buffers.values():
        impl.close()
    costs = lock_costs(10_000 if args.smoke else 200_000)
    print("reservation lock, lock + unlock uncontended (us): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    table["lock costs (us)"] = costs
    if not args.no_memory:
        print(f"memory of one buffer while 4 writers add chunks of 64 and the learner samples (MiB; payload "
              f"{payload / 2**20:.1f}), each in a process tree of its own:")
        print(f"  {'buffer':22s}{'tree RSS':>10s}{'tree PSS':>10s}{'shm PSS':>10s}{'learner anon':>14s}"
              f"{'(shm PSS + learner anon) / payload':>36s}")
    for cls in [] if args.no_memory else impls:
        for prioritized in (False, True):
            kind = "prioritized" if prioritized else "uniform"
            out = subprocess.run(
                [sys.executable, __file__, "--memory", f"{cls.name}:{kind}", "--capacity", str(args.capacity),
                 "--seconds", str(args.seconds)],
                capture_output=True, text=True, check=True,
            )
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = (mem["shm_pss"] + mem["learner_anonymous"]) / payload
            print(f"  {cls.name + ' ' + kind:22s}{mem['rss'] / 2**20:10.1f}{mem['pss'] / 2**20:10.1f}"
                  f"{mem['shm_pss'] / 2**20:10.1f}{mem['learner_anonymous'] / 2**20:14.1f}{ratio:36.3f}")
            table[f"memory {cls.name} {kind}"] = mem
    if args.json:
        with open(args.json, "w") as out:
            json.dump(table, out, indent=1)


if __name__ == "__main__":
    main()
