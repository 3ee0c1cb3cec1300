"""``xreplay bench``: run the benchmarks S1-S5 of a source checkout at one size and print the ratio table.

The benchmark scripts stay in the repository's ``benchmarks/`` folder (they
compare against peers that the package does not depend on); this command
finds that folder (``--benchmarks DIR``, else ``./benchmarks``, else the
checkout an editable install points into), runs each chosen script's
``main`` with the arguments of the chosen size, lets it print its own table,
then prints one summary of xreplay-vs-peer ratios (higher is better for
xreplay) and, with ``--plot``, draws them as a bar chart. Peers that are not
installed are skipped by the scripts themselves.

S1-S5's size arguments live here (:data:`SIZES`). Any other ``sN_*.py`` script in
the folder joins by defining ``BENCH_SIZES = {"smoke": [...], "medium": [...],
"full": [...]}`` (the arguments of its ``main``); it then runs with the others
(its table is printed, it adds no summary rows).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SIZES", "Ratio", "add_bench_parser", "discover", "find_benchmarks", "ratios", "run_bench"]

#: Workload -> size -> arguments of the script's ``main``.
SIZES: dict[str, dict[str, list[str]]] = {
    "s1": {
        "smoke": ["--smoke"],
        "medium": ["--capacity", "1000", "--iters", "50", "--reps", "3", "--no-rss"],
        "full": [],
    },
    "s2": {
        "smoke": ["--smoke", "--no-rss"],
        "medium": ["--capacity", "100000", "--reps", "3", "--calls", "100", "--no-rss"],
        "full": [],
    },
    "s3": {"smoke": ["--smoke"], "medium": ["--repeats", "3"], "full": []},
    "s4": {"smoke": ["--smoke"], "medium": ["--reps", "10"], "full": []},
    "s5": {"smoke": ["--smoke"], "medium": ["--capacity", "1000", "--reps", "3"], "full": []},
}
SCRIPTS = {
    "s1": "s1_episodes.py",
    "s2": "s2_transitions.py",
    "s3": "s3_ding.py",
    "s4": "s4_sequences.py",
    "s5": "s5_checkpoint.py",
}

#: One summary row: (workload, operation, baseline, ratio); ratio > 1 means xreplay is better.
Ratio = tuple[str, str, str, float]


class BenchmarksNotFoundError(LookupError):
    """No ``benchmarks/`` folder with the S1-S5 scripts was found."""


def find_benchmarks(explicit: str | None = None) -> Path:
    """Return the folder holding the benchmark scripts.

    Raises:
        BenchmarksNotFoundError: None of the candidate folders holds them.
    """
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "benchmarks", Path(__file__).parents[2] / "benchmarks"]
    for folder in candidates:
        if (folder / SCRIPTS["s1"]).is_file():
            return folder.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise BenchmarksNotFoundError(
        f"no benchmark scripts in {tried}: xreplay bench runs the benchmarks/ folder of a source checkout; "
        f"run it from the repository root or pass --benchmarks DIR"
    )


def discover(folder: Path) -> dict[str, str]:
    """Return workload -> script name: S1-S5 and every other ``sN_*.py`` that defines ``BENCH_SIZES``."""
    found = dict(SCRIPTS)
    for path in sorted(folder.glob("s[0-9]*_*.py")):
        workload = path.name.split("_", 1)[0]
        if workload not in found and "BENCH_SIZES" in path.read_text():
            found[workload] = path.name
    return found


def _load(folder: Path, script: str) -> ModuleType:
    """Import one benchmark script from ``folder`` (which goes on ``sys.path`` for their shared helpers)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    path = folder / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # the scripts' RSS subprocesses import each other by name
    spec.loader.exec_module(module)
    return module


def _s1(rows: list[dict[str, Any]]) -> list[Ratio]:
    """Ratios of S1: xreplay variants over the physical limit and over TorchRL."""
    by_name = {row["variant"]: row for row in rows}
    out: list[Ratio] = []
    for peer in ("limit (PyMARL layout)", "torchrl LazyTensorStorage"):
        if peer not in by_name:
            continue
        for op in ("insert1", "insert8", "sample32"):
            for name in ("xreplay native (compact)", "xreplay compat (default)"):
                if name in by_name:
                    out.append(("S1", f"{op} {name}", peer, by_name[name][op] / by_name[peer][op]))
    return out


def _s2(table: dict[str, dict[str, float]]) -> list[Ratio]:
    """Ratios of S2: xreplay over cpprb for every rate."""
    if "cpprb" not in table:
        return []
    return [
        ("S2", op, "cpprb", table["xreplay"][op] / table["cpprb"][op])
        for op in table["xreplay"]
        if op.endswith("/s)") and table["cpprb"].get(op)
    ]


def _s3(rows: dict[str, dict[str, Any]]) -> list[Ratio]:
    """Ratios of S3: xreplay over DI-engine (rates), DI-engine over xreplay (bytes)."""
    out: list[Ratio] = []
    for case, row in rows.items():
        ding, ours = row.get("ding"), row.get("xreplay")
        if ding and ours:
            out.append(("S3", case, "DI-engine 0.5.3", ding / ours if "bytes" in case else ours / ding))
    return out


def _s4(results: dict[int, float]) -> list[Ratio]:
    """Ratio of S4: time at the smaller size over time at the larger (1 means size does not matter)."""
    small, large = sorted(results)
    return [("S4", f"sample 256 x 80 at {large:,} steps", f"at {small:,} steps", results[small] / results[large])]


def _s5(r: dict[str, float]) -> list[Ratio]:
    """Ratios of S5: baselines' seconds over xreplay's."""
    return [
        ("S5", "save (fsync, atomic)", "numpy.save + fsync", r["numpy_fsync"] / r["xreplay_fsync"]),
        ("S5", "save (fsync, atomic)", "torch.save + fsync", r["torch_fsync"] / r["xreplay_fsync"]),
        ("S5", "incremental save, 1% new", "xreplay full save", r["xreplay_fsync"] / r["incremental"]),
        ("S5", "load (read + crc32)", "numpy.load", r["numpy_load"] / r["load_read"]),
        ("S5", "load (mmap)", "numpy.load", r["numpy_load"] / r["load_mmap"]),
    ]


_RATIOS: dict[str, Callable[[Any], list[Ratio]]] = {"s1": _s1, "s2": _s2, "s3": _s3, "s4": _s4, "s5": _s5}


def ratios(workload: str, result: Any) -> list[Ratio]:
    """Return the summary rows of one workload's result (empty when the script returned none)."""
    if result is None or workload not in _RATIOS:
        return []
    return [row for row in _RATIOS[workload](result) if math.isfinite(row[3])]


def run_bench(workloads: Sequence[str], size: str, folder: Path) -> list[Ratio]:
    """Run ``workloads`` at ``size`` from ``folder`` (each prints its table) and return every summary row."""
    rows: list[Ratio] = []
    scripts = discover(folder)
    for workload in workloads:
        module = _load(folder, scripts[workload])
        sizes = SIZES.get(workload) or getattr(module, "BENCH_SIZES", {})
        print(f"\n== {workload.upper()} ({scripts[workload]}, {size}) ==", flush=True)
        result = module.main(list(sizes[size]))
        rows += ratios(workload, result)
    return rows


def print_ratios(rows: Sequence[Ratio]) -> None:
    """Print the summary table."""
    print("\n== xreplay vs baselines (ratio > 1: xreplay better) ==")
    if not rows:
        print("no peer measured: install peers with pip install -c constraints.txt 'xreplay[bench-peers]'")
        return
    width = max(len(op) for _w, op, _b, _r in rows)
    for workload, op, base, ratio in rows:
        print(f"{workload}  {op:{width}s}  vs {base:28s} {ratio:8.2f}x")


def plot_ratios(rows: Sequence[Ratio], path: Path) -> Path:
    """Draw the summary rows as horizontal bars (log scale) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{w} {op} vs {base}" for w, op, base, _r in rows]
    values = [r for *_rest, r in rows]
    figure, axes = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5), dpi=100)
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    axes.barh(range(len(rows)), [v - 1.0 for v in values], left=1.0, color=colors)  # bars grow from 1 either way
    axes.set_yticks(range(len(rows)), labels, fontsize=7)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xscale("log")
    axes.invert_yaxis()
    axes.set_xlabel("ratio (> 1: xreplay better)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _command(args: argparse.Namespace) -> int:
    """Run ``xreplay bench``."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("xreplay bench: --plot needs matplotlib: pip install 'xreplay[plot]'", file=sys.stderr)
        return 2
    try:
        folder = find_benchmarks(args.benchmarks)
    except BenchmarksNotFoundError as exc:
        print(f"xreplay bench: {exc}", file=sys.stderr)
        return 2
    scripts = discover(folder)
    chosen = [w.lower() for w in (args.only or scripts)]
    unknown = [w for w in chosen if w not in scripts]
    if unknown:
        print(f"xreplay bench: unknown workload {unknown[0]!r}; choose among {', '.join(scripts)}", file=sys.stderr)
        return 2
    rows = run_bench(chosen, args.size, folder)
    print_ratios(rows)
    if args.plot and rows:
        print(f"plot        {plot_ratios(rows, Path(args.plot))}")
    return 0


def add_bench_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``commands`` (an argparse subparsers object) and return its parser."""
    bench = commands.add_parser("bench", help="run benchmarks S1-S5 from a source checkout and print ratios")
    bench.add_argument(
        "--size",
        choices=("smoke", "medium", "full"),
        default="medium",
        help="smoke: seconds; medium: about a minute each; full: the README's figures",
    )
    bench.add_argument("--only", nargs="+", metavar="SN", help="workloads to run (default: all found)")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the ratios as a bar chart")
    bench.add_argument("--benchmarks", metavar="DIR", help="folder of the benchmark scripts")
    bench.set_defaults(run=_command)
    return bench
