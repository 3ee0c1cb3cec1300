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

With ``--per-field``, what one ``.npy`` file per field (instead of one file of packed rows) would
cost, measured on the same buffer: the full save of the fields as separate files (the strided
copy of each chunk on the writing thread, or on a helper thread while the previous chunk is
written), interleaved with the saves above, and the copy back into packed rows that a load
(``mmap=True`` included: the storage samples packed rows) would need.

    python benchmarks/s5_checkpoint.py            # full run (about a minute)
    python benchmarks/s5_checkpoint.py --per-field  # also the per-field files (the smoke run always has them)
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
from xreplay.persistence.streams import CHUNK_BYTES, RunningCrc, fsync_dir, fsync_file, write_chunks
from xreplay.storage.npy import npy_header


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


def _field_file(directory: Path, name: str) -> Path:
    """Return the file of field ``name`` in a per-field folder."""
    return directory / f"{name.replace('/', '.')}.npy"


def per_field_save(buffer: EpisodeBuffer, directory: Path, pipelined: bool) -> None:
    """Write each field of the buffer's rows as its own ``.npy`` file (with a CRC-32), then the lengths; fsync all.

    ``pipelined``: a helper thread copies the next chunk of a strided column into contiguous memory
    while this thread writes the previous one (copies and writes release the GIL).
    """
    directory.mkdir()
    columns = buffer.storage.host_columns
    assert columns is not None
    files = []
    for name, column in columns.items():
        file = _field_file(directory, name)
        header = npy_header(column.dtype, column.shape)
        if pipelined:
            _write_pipelined(file, column, header)
        else:
            write_chunks(file, column, fsync=True, defer_fsync=True, header=header)
        files.append(file)
    lengths = buffer._host_lengths
    files.append(directory / "lengths.npy")
    write_chunks(files[-1], lengths, fsync=True, defer_fsync=True, header=npy_header(lengths.dtype, lengths.shape))
    for file in files:
        fsync_file(file)
    fsync_dir(directory)


def _write_pipelined(file: Path, column: np.ndarray, header: bytes) -> None:
    """Write ``header`` and ``column`` to ``file``, its contiguous chunks made by a helper thread one chunk ahead."""
    from concurrent.futures import ThreadPoolExecutor

    step = max(1, CHUNK_BYTES // max(column[:1].nbytes, 1))  # whole slots per chunk
    starts = range(0, column.shape[0], step)
    crc = RunningCrc()
    with ThreadPoolExecutor(max_workers=1) as pool, open(file, "xb", buffering=0) as out:
        out.write(header)
        pending = pool.submit(np.ascontiguousarray, column[0:step])
        for start in starts:
            chunk = pending.result()
            if start + step < column.shape[0]:
                pending = pool.submit(np.ascontiguousarray, column[start + step : start + 2 * step])
            data = chunk.reshape(-1).view(np.uint8).data
            crc.update(data)
            out.write(data)
        crc.value()


def repack_seconds(buffer: EpisodeBuffer, directory: Path, reps: int) -> float:
    """Return the median seconds to copy per-field files (numpy-mapped) back into packed rows, as a load would."""
    layout, capacity = buffer.storage.layout, buffer.capacity
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        rows = np.zeros((capacity, layout.row_bytes), np.uint8)
        for name, view in layout.views(torch.from_numpy(rows)).items():
            view.numpy()[...] = np.load(_field_file(directory, name), mmap_mode="r")
        times.append(time.perf_counter() - start)
        assert np.array_equal(rows, buffer.storage.rows.numpy())  # the files hold exactly the rows' fields
    return statistics.median(times)


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


def interleaved_seconds(ops: dict[str, Callable[[Path], Any]], root: Path, reps: int) -> dict[str, float]:
    """Return the median seconds of each ``op(fresh_path)``, the ops interleaved, after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    for i in range(reps + 1):
        for name, op in ops.items():
            target = root / f"run{i}-{len(times[name])}-{sorted(ops).index(name)}"
            start = time.perf_counter()
            op(target)
            elapsed = time.perf_counter() - start
            if i:
                times[name].append(elapsed)
            shutil.rmtree(target)
    return {name: statistics.median(t) for name, t in times.items()}


def run(capacity: int, reps: int, root: Path, per_field: bool = False) -> dict[str, float]:
    """Measure every figure and return them."""
    buffer = build_buffer(capacity)
    arrays = {"rows": buffer.storage.rows.numpy(), "lengths": buffer._host_lengths}
    tensors = {"rows": buffer.storage.rows, "lengths": buffer._lengths}
    r: dict[str, float] = {"mib": buffer.storage.nbytes / 2**20}
    if per_field:
        r.update(
            interleaved_seconds(
                {
                    "pf_numpy_fsync": lambda p: numpy_save(arrays, p, True),
                    "pf_xreplay_fsync": lambda p: save(buffer, p),
                    "per_field_serial": lambda p: per_field_save(buffer, p, pipelined=False),
                    "per_field_pipelined": lambda p: per_field_save(buffer, p, pipelined=True),
                },
                root,
                reps,
            )
        )
        per_field_save(buffer, root / "per-field", pipelined=False)
        r["per_field_repack"] = repack_seconds(buffer, root / "per-field", reps)
        shutil.rmtree(root / "per-field")
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
    if "per_field_serial" in r:
        base = r["pf_numpy_fsync"]
        print("one file per field (interleaved with the packed save and numpy.save+fsync of the same buffer):")
        for name, key in (
            ("numpy.save + fsync (rows, lengths)", "pf_numpy_fsync"),
            ("xreplay save (packed rows)", "pf_xreplay_fsync"),
            ("per-field files, copies inline", "per_field_serial"),
            ("per-field files, copies pipelined", "per_field_pipelined"),
        ):
            print(f"  {name:34} {r[key] * 1e3:10.2f} {r[key] / base:8.3f}  vs numpy.save+fsync")
        repack = r["per_field_repack"]
        print(f"  {'copy back into packed rows':34} {repack * 1e3:10.2f} {repack / r['load_mmap']:8.3f}  vs mmap load")
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
    parser.add_argument("--per-field", action="store_true", help="also measure one .npy file per field")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    capacity, reps = (64, 2) if args.smoke else (args.capacity, args.reps)
    root = Path(tempfile.mkdtemp(prefix="xreplay-s5-", dir=args.dir))
    try:
        print(f"S5 checkpoints, xreplay native S1 buffer {capacity} x {T}, torch {torch.__version__}, median of {reps}")
        r = run(capacity, reps, root, per_field=args.per_field or args.smoke)
        print_table(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return r


if __name__ == "__main__":
    main()
