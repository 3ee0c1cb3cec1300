"""Workload S5: checkpoints of the full S1 buffer (MarineMicro_MvsM_4, 5000 x 61, native compact storage).

Measures, in one run with medians of repeated runs:
  (i)   full save with xreplay.persistence (fsync on and off) against numpy.save of the same arrays
        (rows and lengths; with and without fsync) and torch.save of the same tensors,
  (ii)  an incremental save after 1% new episodes, against the full save (fsync on and off: with fsync
        its time is mostly the latency of the 4 fsyncs a commit needs: two files, metadata, directory),
  (iii) load: read and verify, load(mmap=True) verified (the default: the files are streamed through
        the checksum) and load(mmap=True, verify=False), against numpy.load,
  (iv)  extra resident memory while saving (peak RSS sampled every millisecond, minus RSS before).
Targets: full save <= 1.2x numpy.save+fsync; incremental <= 5% of full; mmap load < 50 ms; extra RAM <= 10%.

    python benchmarks/s5_checkpoint.py            # full run (about a minute)
    python benchmarks/s5_checkpoint.py --smoke    # tiny sizes, seconds (CI)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s1_episodes import T, native_scheme, random_episodes, rss_mib
from xreplay import EpisodeBuffer
from xreplay.persistence import load, save


def build_buffer(capacity: int) -> EpisodeBuffer:
    """Return a full native S1 buffer of ``capacity`` episodes."""
    buffer = EpisodeBuffer(native_scheme(), capacity, T, seed=0)
    for start in range(0, capacity, 256):
        buffer.add(random_episodes(min(256, capacity - start), start))
    return buffer


def _fsync_file(file: Path) -> None:
    """Flush one file to disk."""
    fd = os.open(file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def numpy_save(arrays: dict[str, np.ndarray], directory: Path, fsync: bool) -> None:
    """numpy.save each array into ``directory`` (the baseline)."""
    directory.mkdir()
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", array)
        if fsync:
            _fsync_file(directory / f"{name}.npy")


def torch_save(tensors: dict[str, torch.Tensor], directory: Path, fsync: bool) -> None:
    """torch.save the tensors into one file."""
    directory.mkdir()
    torch.save(tensors, directory / "buffer.pt")
    if fsync:
        _fsync_file(directory / "buffer.pt")


def median_seconds(op: Callable[[Path], Any], root: Path, reps: int) -> float:
    """Return the median seconds of ``op(fresh_path)`` over ``reps`` runs (removal of old files not timed)."""
    times = []
    for i in range(reps + 1):
        target = root / f"run{i}"
        start = time.perf_counter()
        op(target)
        elapsed = time.perf_counter() - start
        if i:  # the first run warms up
            times.append(elapsed)
        shutil.rmtree(target)
    return statistics.median(times)


def incremental_seconds(
    buffer: EpisodeBuffer, root: Path, fraction: float, reps: int, fsync: bool = True
) -> tuple[float, int]:
    """Return the median seconds and bytes of a save after ``fraction`` of the capacity was rewritten."""
    path = root / "incremental"
    save(buffer, path, fsync=fsync)
    n = max(1, int(buffer.capacity * fraction))
    fresh = random_episodes(n, 7)
    times, sizes = [], []
    for _ in range(reps):
        buffer.add(fresh)
        start = time.perf_counter()
        report = save(buffer, path, fsync=fsync)
        times.append(time.perf_counter() - start)
        sizes.append(report.bytes_written)
        assert report.incremental
    shutil.rmtree(path)
    return statistics.median(times), int(statistics.median(sizes))


def load_seconds(path: Path, reps: int, **options: Any) -> float:
    """Return the median seconds of ``load(path, **options)``."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        loaded = load(path, **options)
        times.append(time.perf_counter() - start)
        del loaded
    return statistics.median(times)


def numpy_load_seconds(directory: Path, reps: int) -> float:
    """Return the median seconds of numpy.load of every array in ``directory``."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        _ = [np.load(f) for f in sorted(directory.glob("*.npy"))]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def extra_rss_while_saving(buffer: EpisodeBuffer, path: Path) -> float:
    """Return the peak RSS growth in MiB while saving ``buffer`` (sampled every millisecond)."""
    before = rss_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.001)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        save(buffer, path)
    finally:
        done.set()
        watcher.join()
    shutil.rmtree(path)
    return peak[0] - before


def run(capacity: int, reps: int, root: Path) -> dict[str, float]:
    """Measure every figure and return them."""
    buffer = build_buffer(capacity)
    arrays = {"rows": buffer.storage.rows.numpy(), "lengths": buffer._host_lengths}
    tensors = {"rows": buffer.storage.rows, "lengths": buffer._lengths}
    r: dict[str, float] = {"mib": buffer.storage.nbytes / 2**20}
    r["xreplay_fsync"] = median_seconds(lambda p: save(buffer, p), root, reps)
    r["xreplay_nofsync"] = median_seconds(lambda p: save(buffer, p, fsync=False), root, reps)
    r["numpy_fsync"] = median_seconds(lambda p: numpy_save(arrays, p, True), root, reps)
    r["numpy_nofsync"] = median_seconds(lambda p: numpy_save(arrays, p, False), root, reps)
    r["torch_fsync"] = median_seconds(lambda p: torch_save(tensors, p, True), root, reps)
    r["torch_nofsync"] = median_seconds(lambda p: torch_save(tensors, p, False), root, reps)
    r["incremental"], r["incremental_bytes"] = incremental_seconds(buffer, root, 0.01, reps)
    r["incremental_nofsync"], _ = incremental_seconds(buffer, root, 0.01, reps, fsync=False)
    save(buffer, root / "ckpt")
    numpy_save(arrays, root / "npy", False)
    r["load_read"] = load_seconds(root / "ckpt", reps)
    r["load_mmap"] = load_seconds(root / "ckpt", reps, mmap=True, verify=True)
    r["load_mmap_unverified"] = load_seconds(root / "ckpt", reps, mmap=True, verify=False)
    r["numpy_load"] = numpy_load_seconds(root / "npy", reps)
    r["extra_rss_mib"] = extra_rss_while_saving(buffer, root / "rss")
    return r


def print_table(r: dict[str, float]) -> None:
    """Print the figures, ratios and targets."""
    full = r["xreplay_fsync"]
    rows = [
        ("xreplay save (fsync, atomic)", full, full / r["numpy_fsync"], "vs numpy.save+fsync"),
        ("xreplay save (no fsync)", r["xreplay_nofsync"], r["xreplay_nofsync"] / r["numpy_nofsync"], "vs numpy.save"),
        ("numpy.save + fsync", r["numpy_fsync"], 1.0, ""),
        ("numpy.save", r["numpy_nofsync"], 1.0, ""),
        ("torch.save + fsync", r["torch_fsync"], r["torch_fsync"] / r["numpy_fsync"], "vs numpy.save+fsync"),
        ("torch.save", r["torch_nofsync"], r["torch_nofsync"] / r["numpy_nofsync"], "vs numpy.save"),
        ("xreplay incremental, 1% new", r["incremental"], r["incremental"] / full, "vs xreplay full save"),
        (
            "xreplay incremental, no fsync",
            r["incremental_nofsync"],
            r["incremental_nofsync"] / r["xreplay_nofsync"],
            "vs xreplay full save, no fsync",
        ),
        ("xreplay load (read + crc32)", r["load_read"], r["load_read"] / r["numpy_load"], "vs numpy.load"),
        ("xreplay load (mmap, verified)", r["load_mmap"], r["load_mmap"] / r["numpy_load"], "vs numpy.load"),
        (
            "xreplay load (mmap, verify=False)",
            r["load_mmap_unverified"],
            r["load_mmap_unverified"] / r["numpy_load"],
            "vs numpy.load",
        ),
        ("numpy.load", r["numpy_load"], 1.0, ""),
    ]
    print(f"{'operation':34} {'ms':>10} {'ratio':>8}  baseline")
    for name, seconds, ratio, base in rows:
        print(f"{name:34} {seconds * 1e3:10.2f} {ratio:8.3f}  {base}")
    print(f"incremental bytes written: {r['incremental_bytes'] / 2**20:.2f} MiB of {r['mib']:.1f} MiB")
    share = 100 * r["extra_rss_mib"] / r["mib"]
    print(f"extra RSS while saving: {r['extra_rss_mib']:.1f} MiB ({share:.1f}% of the buffer)")
    print(
        "targets: full save <= 1.2x numpy.save+fsync: {}; incremental <= 5% of full: {} (no fsync: {}); "
        "mmap load < 50 ms: {} verified, {} unverified; extra RAM <= 10%: {}".format(
            full / r["numpy_fsync"] <= 1.2,
            r["incremental"] / full <= 0.05,
            r["incremental_nofsync"] / r["xreplay_nofsync"] <= 0.05,
            r["load_mmap"] < 0.05,
            r["load_mmap_unverified"] < 0.05,
            share <= 10,
        )
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run S5 and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--capacity", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    capacity, reps = (64, 2) if args.smoke else (args.capacity, args.reps)
    root = Path(tempfile.mkdtemp(prefix="xreplay-s5-", dir=args.dir))
    try:
        print(f"S5 checkpoints, xreplay native S1 buffer {capacity} x {T}, torch {torch.__version__}, median of {reps}")
        r = run(capacity, reps, root)
        print_table(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return r


if __name__ == "__main__":
    main()
