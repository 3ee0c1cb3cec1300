"""Workload S1: QMIX on SMAC MarineMicro_MvsM_4 episodes (5000 x 61 buffer), side by side.

The data is what a PyMARL runner produces: episodes of random lengths 20..61 (steps past an
episode's end are zeros, ``filled`` marks the steps it has), in the dtypes PyMARL declares (actions
int64, avail_actions int32, terminated uint8, the rest float32). Inserts cycle through a pool of such
batches, so the lengths vary from call to call; the buffers sampled from are filled with them too.

Measures, with torch threads = 1 and medians of repeated rounds (variants interleaved):
  (i)   insert one episode into a full, wrapping buffer (episodes/s),
  (ii)  the same with batches of 8,
  (iii) uniform sample of 32 episodes without replacement (samples/s, GB/s of returned bytes),
  (iv)  RSS growth of a full buffer (each variant in a fresh process).
Variants: xreplay native (``EpisodeBuffer.add(episodes, lengths=...)``), the same with full-length
episodes only (its own row), xreplay's PyMARL layer (default and compact), TorchRL's ReplayBuffer
over LazyTensorStorage (if installed), and two physical limits on PyMARL's layout (per-field slice
copy for inserts, per-field ``index_select(out=)`` into preallocated outputs for samples).

    python benchmarks/s1_episodes.py            # full run (a few minutes)
    python benchmarks/s1_episodes.py --smoke    # tiny sizes, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xreplay import EpisodeBuffer, Field, OneHot, Scheme
from xreplay.compat.pymarl import EpisodeBatch, ReplayBuffer
from xreplay.compat.pymarl import OneHot as PyMARLOneHot

N_AGENTS, N_ACTIONS, LIMIT = 4, 10, 60  # MarineMicro_MvsM_4: 4 agents, 10 actions, episode limit 60
T = LIMIT + 1


def marine_micro_scheme() -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    """Return PyMARL's (scheme, groups, preprocess) for QMIX on MarineMicro_MvsM_4."""
    scheme = {
        "state": {"vshape": 68},
        "obs": {"vshape": 40, "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
    }
    preprocess = {"actions": ("actions_onehot", [PyMARLOneHot(out_dim=N_ACTIONS)])}
    return scheme, {"agents": N_AGENTS}, preprocess


# PyMARL's layout: name -> (per-step shape, dtype), including the one-hot copy and filled.
PYMARL_LAYOUT = {
    "state": ((68,), torch.float32),
    "obs": ((N_AGENTS, 40), torch.float32),
    "actions": ((N_AGENTS, 1), torch.int64),
    "avail_actions": ((N_AGENTS, N_ACTIONS), torch.int32),
    "reward": ((1,), torch.float32),
    "terminated": ((1,), torch.uint8),
    "actions_onehot": ((N_AGENTS, N_ACTIONS), torch.float32),
    "filled": ((1,), torch.int64),
}
SAMPLE_BYTES_PER_STEP = sum(
    int(np.prod(s)) * torch.empty((), dtype=d).element_size() for s, d in PYMARL_LAYOUT.values()
)


def native_scheme() -> Scheme:
    """Return the MarineMicro scheme for xreplay's native EpisodeBuffer (compact storage dtypes)."""
    return Scheme(
        {
            "state": Field((68,)),
            "obs": Field((40,), group="agents"),
            "actions": Field((1,), dtype=torch.long, group="agents", storage_dtype=torch.uint8),
            "actions_onehot": Field((N_ACTIONS,), group="agents", derived=OneHot("actions", N_ACTIONS)),
            "avail_actions": Field((N_ACTIONS,), dtype=torch.int32, group="agents", storage_dtype=torch.bool),
            "reward": Field((1,)),
            "terminated": Field((1,), dtype=torch.uint8, storage_dtype=torch.bool),
        },
        groups={"agents": N_AGENTS},
    )


MIN_LENGTH = 20  # shortest episode of the random lengths (the longest is T)
POOL = 8  # insert batches cycled through, so that the lengths vary between calls


def episode_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Return ``n`` random episode lengths in ``[MIN_LENGTH, T]`` (int64)."""
    return np.random.default_rng(seed).integers(MIN_LENGTH, T + 1, n)


def random_episodes(n: int, seed: int = 0, lengths: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Return ``n`` synthetic episodes as native-field tensors, zero past ``lengths`` (full when None)."""
    g = torch.Generator().manual_seed(seed)
    data = {
        "state": torch.randn(n, T, 68, generator=g),
        "obs": torch.randn(n, T, N_AGENTS, 40, generator=g),
        "actions": torch.randint(0, N_ACTIONS, (n, T, N_AGENTS, 1), generator=g),
        "avail_actions": torch.randint(0, 2, (n, T, N_AGENTS, N_ACTIONS), generator=g, dtype=torch.int32),
        "reward": torch.randn(n, T, 1, generator=g),
        "terminated": torch.randint(0, 2, (n, T, 1), generator=g, dtype=torch.uint8),
    }
    if lengths is not None:
        past = torch.arange(T)[None, :] >= torch.from_numpy(lengths)[:, None]  # [n, T]: steps after the end
        for value in data.values():
            value[past] = 0  # a runner's batch holds zeros there
    return data


def pymarl_batch(n: int, seed: int = 0, lengths: np.ndarray | None = None) -> EpisodeBatch:
    """Return a compat EpisodeBatch of ``n`` episodes, each written up to its length (as a runner does)."""
    scheme, groups, preprocess = marine_micro_scheme()
    batch = EpisodeBatch(scheme, groups, n, T, preprocess=preprocess)
    data = random_episodes(n, seed, lengths)
    if lengths is None:
        batch.update(data)
        return batch
    for i, length in enumerate(lengths.tolist()):  # set-up only: filled marks the steps written
        batch.update({k: v[i : i + 1, :length] for k, v in data.items()}, bs=slice(i, i + 1), ts=slice(0, length))
    return batch


def _cycle(items: list[Any]) -> Callable[[], Any]:
    """Return a function giving the items in turn, round and round."""
    position = [0]

    def next_item() -> Any:
        position[0] = (position[0] + 1) % len(items)
        return items[position[0]]

    return next_item


# -- variants: each returns (insert(batch_of_n) -> None, sample32() -> bytes) ---------------------


def xreplay_native(capacity: int, full: bool = False) -> dict[str, Callable[..., Any]]:
    """Native EpisodeBuffer with compact storage, written with ``lengths`` (all ``T`` when ``full``)."""
    buffer = EpisodeBuffer(native_scheme(), capacity, T, seed=0)

    def batch(n: int, seed: int) -> tuple[dict[str, torch.Tensor], np.ndarray | None]:
        lengths = None if full else episode_lengths(n, seed)
        return random_episodes(n, seed, lengths), lengths

    for start in range(0, capacity, 256):
        episodes, lengths = batch(min(256, capacity - start), start)
        buffer.add(episodes, lengths=lengths)
    pools = {n: _cycle([batch(n, 99 + k) for k in range(POOL)]) for n in (1, 8)}

    def insert(n: int) -> None:
        episodes, lengths = pools[n]()
        buffer.add(episodes, lengths=lengths)

    return {"insert": insert, "sample": lambda: buffer.sample(32), "obj": buffer}


def xreplay_compat(capacity: int, compact: bool) -> dict[str, Callable[..., Any]]:
    """PyMARL-compatible ReplayBuffer, default or compact layout."""
    scheme, groups, preprocess = marine_micro_scheme()
    buffer = ReplayBuffer(scheme, groups, capacity, T, preprocess=preprocess, compact=compact)
    for start in range(0, capacity, 256):
        n = min(256, capacity - start)
        buffer.insert_episode_batch(pymarl_batch(n, start, episode_lengths(n, start)))
    pools = {n: _cycle([pymarl_batch(n, 99 + k, episode_lengths(n, 99 + k)) for k in range(POOL)]) for n in (1, 8)}
    return {
        "insert": lambda n: buffer.insert_episode_batch(pools[n]()),
        "sample": lambda: buffer.sample(32),
        "obj": buffer,
    }


def limit_layout(capacity: int) -> dict[str, Callable[..., Any]]:
    """Physical limits on PyMARL's layout: per-field slice copy and per-field index_select(out=)."""
    columns = {k: torch.zeros((capacity, T, *s), dtype=d) for k, (s, d) in PYMARL_LAYOUT.items()}
    for v in columns.values():
        v.random_(0, 2)
    sources = {n: {k: torch.ones((n, T, *s), dtype=d) for k, (s, d) in PYMARL_LAYOUT.items()} for n in (1, 8)}
    outs = {k: torch.empty((32, T, *s), dtype=d) for k, (s, d) in PYMARL_LAYOUT.items()}
    rng = np.random.default_rng(0)
    cursor = [0]

    def insert(n: int) -> None:
        i = cursor[0]
        cursor[0] = (i + n) % (capacity - n)
        for k, column in columns.items():
            column[i : i + n].copy_(sources[n][k])

    def sample() -> None:
        index = torch.from_numpy(rng.choice(capacity, 32, replace=False))
        for k, column in columns.items():
            torch.index_select(column, 0, index, out=outs[k])

    return {"insert": insert, "sample": sample, "obj": columns}


def torchrl_buffer(capacity: int) -> dict[str, Callable[..., Any]] | None:
    """TorchRL ReplayBuffer over LazyTensorStorage of [61]-step episodes, sampling without replacement."""
    try:
        from tensordict import TensorDict
        from torchrl.data import LazyTensorStorage
        from torchrl.data import ReplayBuffer as TorchRLBuffer
        from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    except Exception:  # noqa: BLE001 - any import failure means the optional peer is unavailable
        return None

    def episodes(n: int, seed: int) -> Any:
        lengths = episode_lengths(n, seed)
        fields = {k: torch.zeros((n, T, *s), dtype=d) for k, (s, d) in PYMARL_LAYOUT.items()}
        fields.update(random_episodes(n, seed, lengths))
        fields["filled"][:] = (torch.arange(T)[None, :] < torch.from_numpy(lengths)[:, None]).unsqueeze(-1)
        return TensorDict(fields, batch_size=[n])

    buffer = TorchRLBuffer(storage=LazyTensorStorage(capacity), sampler=SamplerWithoutReplacement(), batch_size=32)
    for start in range(0, capacity, 256):
        buffer.extend(episodes(min(256, capacity - start), start))
    pools = {n: _cycle([episodes(n, 99 + k) for k in range(POOL)]) for n in (1, 8)}
    return {"insert": lambda n: buffer.extend(pools[n]()), "sample": lambda: buffer.sample(), "obj": buffer}


VARIANTS: dict[str, Callable[[int], dict[str, Callable[..., Any]] | None]] = {
    "xreplay native (compact)": xreplay_native,
    "xreplay native, full length": lambda c: xreplay_native(c, full=True),
    "xreplay compat (default)": lambda c: xreplay_compat(c, False),
    "xreplay compat (compact)": lambda c: xreplay_compat(c, True),
    "torchrl LazyTensorStorage": torchrl_buffer,
    "limit (PyMARL layout)": limit_layout,
}


DATA = (
    f"data: episodes of random lengths {MIN_LENGTH}..{T} (zeros past the end; 'full length' row: all {T}), "
    f"{N_AGENTS} agents, {N_ACTIONS} actions; state f32[68], obs f32[{N_AGENTS},40], actions int64[{N_AGENTS},1], "
    f"avail_actions int32[{N_AGENTS},{N_ACTIONS}], reward f32[1], terminated uint8[1]; inserts cycle {POOL} batches"
)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
CLOCK = ["wall"]  # the clock per_op_seconds reads (--clock)


def per_op_seconds(ops: dict[str, Callable[[], Any]], iters: int, reps: int) -> dict[str, float]:
    """Return, per op, the median over ``reps`` rounds of the mean seconds per call.

    Rounds interleave the ops (A, B, C, A, B, C, ...) so that a noisy neighbour
    slows every variant alike and the ratios stay meaningful. With ``--clock cpu`` the time is this
    thread's CPU time, which leaves out the time the thread waited for a core on a shared machine.
    """
    clock = CLOCKS[CLOCK[0]]
    times: dict[str, list[float]] = {name: [] for name in ops}
    for op in ops.values():
        op()  # warm up
    for _ in range(reps):
        for name, op in ops.items():
            start = clock()
            for _ in range(iters):
                op()
            times[name].append((clock() - start) / iters)
    return {name: statistics.median(t) for name, t in times.items()}


def rss_growth_mib(variant: str, capacity: int) -> float | None:
    """Build and fill ``variant`` in a fresh process and return its RSS growth in MiB."""
    code = (
        "import sys, json, torch; torch.set_num_threads(1); sys.path.insert(0, 'benchmarks');"
        "import s1_episodes as b; r0 = b.rss_mib(); v = b.VARIANTS[sys.argv[1]](int(sys.argv[2]));"
        "b.release_free_heap(); print(json.dumps(None if v is None else b.rss_mib() - r0))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, variant, str(capacity)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so RSS counts live buffers only."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def rss_mib() -> float:
    """Return this process's resident set size in MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def run(
    capacity: int, iters: int, reps: int, rss: bool, only: list[str] | None = None
) -> list[dict[str, Any]]:
    """Measure every available variant (those starting with a prefix in ``only``) side by side, one row each."""
    variants = {}
    for name, build in VARIANTS.items():
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        variant = build(capacity)
        if variant is None:
            print(f"  {name}: not installed, skipped", file=sys.stderr)
        else:
            variants[name] = variant
    insert1 = per_op_seconds({k: (lambda v=v: v["insert"](1)) for k, v in variants.items()}, iters * 4, reps)
    insert8 = per_op_seconds({k: (lambda v=v: v["insert"](8)) for k, v in variants.items()}, iters, reps)
    sample = per_op_seconds({k: v["sample"] for k, v in variants.items()}, iters, reps)
    variants.clear()
    rows = []
    for name in insert1:
        row: dict[str, Any] = {"variant": name, "insert1": 1 / insert1[name], "insert8": 8 / insert8[name]}
        row["sample32"] = 1 / sample[name]
        row["gbps"] = row["sample32"] * 32 * T * SAMPLE_BYTES_PER_STEP / 1e9
        row["rss_mib"] = rss_growth_mib(name, capacity) if rss else None
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print medians and ratios against the physical limits."""
    limit = next((r for r in rows if r["variant"].startswith("limit")), rows[-1])
    print(
        f"{'variant':28} {'insert 1 ep/s':>14} {'x limit':>8} {'insert 8 ep/s':>14} {'x limit':>8} "
        f"{'sample32 /s':>12} {'GB/s':>6} {'x limit':>8} {'RSS MiB':>8}"
    )
    for r in rows:
        rss = f"{r['rss_mib']:.0f}" if r["rss_mib"] is not None else "-"
        print(
            f"{r['variant']:28} {r['insert1']:14,.0f} {r['insert1'] / limit['insert1']:8.2f} "
            f"{r['insert8']:14,.0f} {r['insert8'] / limit['insert8']:8.2f} {r['sample32']:12,.0f} "
            f"{r['gbps']:6.2f} {r['sample32'] / limit['sample32']:8.2f} {rss:>8}"
        )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run S1 and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--capacity", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--no-rss", action="store_true", help="skip the per-variant RSS processes")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", help="variants whose names start so (and the limit)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time or this thread's CPU time")
    args = parser.parse_args(argv)
    CLOCK[0] = args.clock
    only = None if args.only is None else [*args.only, "limit"]
    torch.set_num_threads(1)
    capacity, iters, reps = (64, 3, 2) if args.smoke else (args.capacity, args.iters, args.reps)
    print(
        f"S1 MarineMicro_MvsM_4: buffer {capacity} x {T}, torch {torch.__version__}, 1 thread, median of {reps}"
        f" ({args.clock} clock)"
    )
    print(DATA)
    rows = run(capacity, iters, reps, rss=not args.no_rss, only=only)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
