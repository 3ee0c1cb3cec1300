"""Workload S3: DI-engine style buffer of transitions, xreplay.compat.ding vs DI-engine 0.5.3.

Items are ``{obs: float32[17], next_obs: float32[17], action: float32[6],
reward: float, done: bool}`` in a buffer of capacity 100,000. Each case is
timed ``--repeats`` times and the median is reported; DI-engine is measured
in the same process when it is importable (it needs numpy<2, see the
README of this task: ``.venv-ding``). ``--smoke`` runs tiny sizes in seconds.

Usage: python benchmarks/s3_ding.py [--smoke] [--repeats 7] [--no-ding]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import random
import statistics
import time
import tracemalloc
import warnings

import numpy as np
import torch


def make_item(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "obs": rng.standard_normal(17, dtype=np.float32),
        "next_obs": rng.standard_normal(17, dtype=np.float32),
        "action": rng.standard_normal(6, dtype=np.float32),
        "reward": float(i % 7),
        "done": i % 100 == 99,
    }


def load_libs(want_ding: bool) -> dict:
    libs = {"xreplay": (importlib.import_module("xreplay.compat.ding"),) * 2}
    if want_ding:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                libs["ding"] = (
                    importlib.import_module("ding.data.buffer"),
                    importlib.import_module("ding.data.buffer.middleware"),
                )
        except ImportError:
            pass
    return libs


def filled(lib, capacity: int, items: list, env_groups: int = 0):
    buf = lib.DequeBuffer(size=capacity)
    for i in range(capacity):
        buf.push(items[i % len(items)], {"env": i % env_groups} if env_groups else None)
    return buf


def median_rate(fn, ops: int, repeats: int) -> float:
    """Return the median of ``ops / seconds`` over ``repeats`` runs of ``fn``."""
    rates = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        rates.append(ops / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_push(lib, mw, cfg, items):
    buf = filled(lib, cfg.capacity, items)
    n = cfg.push_ops

    def run():
        for i in range(n):
            buf.push(items[i % len(items)])

    return median_rate(run, n, cfg.repeats)


def bench_sample(lib, mw, cfg, items, capacity=None):
    buf = filled(lib, capacity or cfg.capacity, items[:1000])
    n = cfg.sample_ops

    def run():
        for _ in range(n):
            buf.sample(32)

    return median_rate(run, n, cfg.repeats)


def bench_clone_sample(lib, mw, cfg, items):
    buf = filled(lib, cfg.capacity, items)
    buf.use(mw.clone_object())
    n = cfg.sample_ops // 4

    def run():
        for _ in range(n):
            buf.sample(32)

    return median_rate(run, n, cfg.repeats)


def per_buffer(lib, mw, cfg, items):
    buf = lib.DequeBuffer(size=cfg.capacity)
    per = mw.PriorityExperienceReplay(buf, IS_weight=True)
    buf.use(per)
    for i in range(cfg.capacity):
        buf.push(dict(items[i % len(items)]), meta={"priority": 1.0 + i % 5})
    return buf, per


def bench_per_loop(lib, mw, cfg, items, batched=False):
    if batched and not hasattr(mw.PriorityExperienceReplay, "update_priorities"):
        return None  # an xreplay extension; DI-engine updates one record per call
    buf, per = per_buffer(lib, mw, cfg, items)
    n = cfg.per_ops
    rng = np.random.default_rng(0)

    def run():
        for _ in range(n):
            sample = buf.sample(256)
            prios = rng.uniform(0.1, 5.0, size=len(sample)).tolist()
            if batched:
                per.update_priorities([r.index for r in sample], prios)
                continue
            for rec, p in zip(sample, prios, strict=False):
                meta = rec.meta
                meta["priority"] = p
                buf.update(index=rec.index, data=None, meta=meta)

    return median_rate(run, n, cfg.repeats)


def bench_grouped(lib, mw, cfg, items):
    buf = filled(lib, cfg.capacity, items, env_groups=8)
    n = cfg.group_ops

    def run():
        for _ in range(n):
            buf.sample(32, groupby="env", unroll_len=cfg.unroll_len, replace=True)

    return median_rate(run, n, cfg.repeats)


def bench_memory(lib, mw, cfg, items):
    """Return bytes per stored item held by the buffer itself (payloads are created beforehand)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    buf = filled(lib, cfg.memory_items, items)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del buf
    return used / cfg.memory_items


CASES = [
    ("push into full buffer (items/s)", bench_push, "rate"),
    ("sample(32) @capacity (calls/s)", bench_sample, "rate"),
    (
        "sample(32) @1M (calls/s)",
        lambda lib, mw, cfg, items: bench_sample(lib, mw, cfg, items, cfg.big),
        "rate",
    ),
    ("PER loop: sample 256 + 256 update() (loops/s)", bench_per_loop, "rate"),
    (
        "PER loop: sample 256 + update_priorities (loops/s)",
        lambda lib, mw, cfg, items: bench_per_loop(lib, mw, cfg, items, batched=True),
        "rate",
    ),
    ("clone_object + sample(32) (calls/s)", bench_clone_sample, "rate"),
    ("grouped sample(32, env, unroll 40) (calls/s)", bench_grouped, "rate"),
    ("buffer memory per stored item (bytes)", bench_memory, "bytes"),
]


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run S3, print the table and return case -> library -> figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-ding", action="store_true", help="skip DI-engine even if installed")
    parser.add_argument("--only", default="", help="run only cases whose name contains this text")
    cfg = parser.parse_args(argv)
    torch.set_num_threads(1)
    if cfg.smoke:
        cfg.capacity, cfg.big, cfg.push_ops, cfg.sample_ops, cfg.per_ops, cfg.group_ops = (
            2000,
            5000,
            500,
            200,
            10,
            20,
        )
        cfg.unroll_len, cfg.memory_items, cfg.repeats = 10, 2000, min(cfg.repeats, 3)
    else:
        cfg.capacity, cfg.big, cfg.push_ops, cfg.sample_ops, cfg.per_ops, cfg.group_ops = (
            100_000,
            1_000_000,
            20_000,
            2000,
            40,
            20,
        )
        cfg.unroll_len, cfg.memory_items = 40, 100_000
    libs = load_libs(not cfg.no_ding and not cfg.smoke)
    items = [make_item(i) for i in range(min(cfg.capacity, 100_000))]
    versions = {"xreplay": importlib.import_module("xreplay").__version__}
    if "ding" in libs:
        versions["ding"] = importlib.metadata.version("DI-engine")
    print(
        f"S3 capacity={cfg.capacity} repeats={cfg.repeats} numpy={np.__version__} torch={torch.__version__} "
        + " ".join(f"{k}={v}" for k, v in versions.items())
    )
    header = f"{'case':52s} {'xreplay':>14s}" + (
        f" {'DI-engine':>14s} {'ratio':>8s}" if "ding" in libs else ""
    )
    print(header)
    print("-" * len(header))
    table = {}
    for name, fn, kind in CASES:
        if cfg.only not in name:
            continue
        row = {}
        for lib_name, (lib, mw) in libs.items():
            random.seed(0)
            np.random.seed(0)
            row[lib_name] = fn(lib, mw, cfg, items)
        table[name] = row
        line = f"{name:52s} {row['xreplay']:14,.1f}"
        if row.get("ding") is None and "ding" in libs:
            line += f" {'n/a':>14s}"
        elif "ding" in row:
            ratio = row["ding"] / row["xreplay"] if kind == "bytes" else row["xreplay"] / row["ding"]
            line += f" {row['ding']:14,.1f} {ratio:7.1f}x"
        print(line, flush=True)
    if "ding" in libs:
        print("ratio = xreplay / DI-engine for rates, DI-engine / xreplay for memory (higher is better)")
    return table


if __name__ == "__main__":
    main()
