"""Before/after table of S1-S5 for two git revisions, each run with its own benchmark scripts and sources.

Each revision's whole tree is extracted (``git archive REV | tar -x``), so each side runs the S1-S5 scripts
of its own commit against its own ``src`` (the scripts follow the library's API, which changes between
commits). Every round runs each benchmark once per side, back to back, in a fresh process with
``PYTHONPATH=<tree>/src`` and one torch thread; the side that goes first alternates between rounds, so a
noisy neighbour slows both alike. The scripts' own ``main`` returns their figures (the contract
``xreplay bench`` relies on); a small driver writes them as JSON. Peers that a script measures in the same
run (the PyMARL-layout limit and TorchRL in S1, cpprb in S2, DI-engine in S3 with ``--ding-python``,
numpy/torch in S5) give, per side, xreplay's ratio to the peer; their own after/before ratios, listed as
control rows, run the same code on both sides and so show the noise floor.

The table gives per operation the median over rounds of each run's figure, the after/before speed ratio
(above 1: after is faster; times and bytes are inverted), the range of the per-round paired ratios, the
ratio to the peer on each side and their quotient (peer-normalised: machine noise that slows a whole run
cancels out), and flags every xreplay row whose after/before ratio is below 0.95x::

    python benchmarks/ab_trees.py                       # eaae662 vs HEAD, default sizes (~20 min on 2 cores)
    python benchmarks/ab_trees.py eaae662 main --rounds 5 --only s2 s4
    python benchmarks/ab_trees.py --ding-python /work/venvs/ding/bin/python --only s3   # with the DI-engine peer
    python benchmarks/ab_trees.py --smoke               # one round at the scripts' smoke sizes (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"s1": "s1_episodes", "s2": "s2_transitions", "s3": "s3_ding", "s4": "s4_sequences", "s5": "s5_checkpoint"}
#: Benchmark -> size -> arguments of the script's ``main``; the same on both sides.
SIZES: dict[str, dict[str, list[str]]] = {
    "s1": {
        "default": ["--capacity", "2000", "--iters", "100", "--reps", "5", "--no-rss"],
        "smoke": ["--smoke", "--no-rss"],
    },
    "s2": {
        "default": ["--capacity", "200000", "--reps", "5", "--calls", "200", "--no-rss"],
        "smoke": ["--smoke", "--no-rss"],
    },
    "s3": {"default": ["--repeats", "5"], "smoke": ["--smoke"]},
    "s4": {"default": ["--reps", "50"], "smoke": ["--smoke"]},
    "s5": {"default": ["--capacity", "2000", "--reps", "5"], "smoke": ["--smoke"]},
}
THRESHOLD = 0.95

# Runs in the fresh process: import the side's script from its own tree, check that xreplay comes from
# that tree's src, run main(args) and write what it returns as JSON.
DRIVER = r"""
import importlib, json, pathlib, sys
tree, script, out, args = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path.insert(0, str(tree / "benchmarks"))
import torch
torch.set_num_threads(1)
import xreplay
where = pathlib.Path(xreplay.__file__).resolve()
if not where.is_relative_to((tree / "src").resolve()):
    sys.exit(f"xreplay was imported from {where}, not from {tree / 'src'}: check PYTHONPATH and .pth files")
result = importlib.import_module(script).main(args)
if result is None:
    sys.exit(f"{script}.main returned nothing: the A/B needs its figures as a return value")
with open(out, "w") as f:
    json.dump(result, f, default=lambda o: o.item() if hasattr(o, "item") else str(o))
"""


@dataclass(frozen=True)
class Metric:
    """One figure of one run: an operation, its unit and value, and the peer measured beside it."""

    op: str
    unit: str
    value: float
    higher_is_better: bool = True
    peer: str | None = None
    peer_value: float | None = None
    control: bool = False  # a peer's or limit's own figure: the same code runs on both sides

    def __post_init__(self) -> None:
        for name in ("value", "peer_value"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool)) and value is not None:
                raise TypeError(f"{self.op}: {name} must be a number, got {value!r}")


@dataclass(frozen=True)
class Row:
    """One line of the table: medians over rounds and the ratios derived from them."""

    bench: str
    op: str
    unit: str
    before: float
    after: float
    ratio: float  # after/before speed: above 1 means after is faster (or smaller)
    paired: tuple[float, float]  # min and max of the per-round after/before speed ratios
    peer: str | None
    peer_before: float | None  # xreplay over the peer (speed), median over rounds, before
    peer_after: float | None
    control: bool

    @property
    def flagged(self) -> bool:
        """Whether this xreplay row is slower after than ``THRESHOLD`` times before."""
        return not self.control and self.ratio < THRESHOLD


def _speed(value: float, higher_is_better: bool) -> float:
    """Return ``value`` oriented so that larger is better."""
    return value if higher_is_better else 1.0 / value


def _split_unit(name: str) -> tuple[str, str]:
    """Split ``"add1 uniform (tr/s)"`` into ``("add1 uniform", "tr/s")``."""
    if name.endswith(")") and " (" in name:
        head, unit = name.rsplit(" (", 1)
        return head, unit[:-1]
    return name, ""


def s1_metrics(rows: list[dict[str, Any]]) -> list[Metric]:
    """Metrics of S1's rows; the peer of xreplay's variants is the PyMARL-layout limit the script reports."""
    by_name = {row["variant"]: row for row in rows}
    limit_name = next((name for name in by_name if name.startswith("limit")), None)
    out = []
    for name, row in by_name.items():
        ours = name.startswith("xreplay")
        peer = by_name[limit_name] if ours and limit_name else None
        for key, op, unit in (
            ("insert1", "insert 1", "ep/s"),
            ("insert8", "insert 8", "ep/s"),
            ("sample32", "sample 32", "calls/s"),
        ):
            if row.get(key) is not None:
                peer_value = peer[key] if peer else None
                out.append(
                    Metric(f"{name}: {op}", unit, row[key], True, limit_name if peer else None, peer_value, not ours)
                )
    return out


S2_PEERS = {"xreplay": "cpprb", "xreplay-numpy": "cpprb", "xreplay-next": "cpprb-next"}


def s2_metrics(table: dict[str, dict[str, float]]) -> list[Metric]:
    """Metrics of S2's rates (RSS figures are memory, left out); xreplay's peers as in the script's ratios."""
    out = []
    for impl, ops in table.items():
        ours = impl.startswith("xreplay")
        peer = S2_PEERS.get(impl) if S2_PEERS.get(impl) in table else None
        for key, value in ops.items():
            if not key.endswith("/s)"):
                continue
            op, unit = _split_unit(key)
            peer_value = table[peer].get(key) if peer else None
            out.append(Metric(f"{impl}: {op}", unit, value, True, peer, peer_value, not ours))
    return out


def s3_metrics(table: dict[str, dict[str, float | None]]) -> list[Metric]:
    """Metrics of S3's cases; DI-engine is the peer where the run measured it."""
    out = []
    for case, row in table.items():
        op, unit = _split_unit(case)
        higher = unit != "bytes"
        ding = row.get("ding")
        if row.get("xreplay") is not None:
            out.append(Metric(op, unit, row["xreplay"], higher, "DI-engine" if ding else None, ding))
        if ding:
            out.append(Metric(f"DI-engine: {op}", unit, ding, higher, control=True))
    return out


def s4_metrics(results: dict[str, float]) -> list[Metric]:
    """Metrics of S4: milliseconds of one sample of 256 slices at each stored size."""
    return [Metric(f"sample 256 x 80 from {int(size):,} steps", "ms", ms, False) for size, ms in results.items()]


S5_OURS = {  # key -> (operation, the peer's key)
    "xreplay_fsync": ("save (fsync, atomic)", "numpy_fsync"),
    "xreplay_nofsync": ("save (no fsync)", "numpy_nofsync"),
    "incremental": ("incremental save, 1% new", None),
    "incremental_nofsync": ("incremental save, 1% new, no fsync", None),
    "load_read": ("load (read + crc32)", "numpy_load"),
    "load_mmap": ("load (mmap, verified)", "numpy_load"),
    "load_mmap_unverified": ("load (mmap, verify=False)", "numpy_load"),
}
S5_PEERS = {
    "numpy_fsync": "numpy.save + fsync",
    "numpy_nofsync": "numpy.save",
    "torch_fsync": "torch.save + fsync",
    "torch_nofsync": "torch.save",
    "numpy_load": "numpy.load",
}


def s5_metrics(r: dict[str, float]) -> list[Metric]:
    """Metrics of S5 in milliseconds; numpy's save and load are the peers."""
    out = []
    for key, (op, peer) in S5_OURS.items():
        if r.get(key) is not None:
            peer_ms = r[peer] * 1e3 if peer and r.get(peer) else None
            out.append(Metric(op, "ms", r[key] * 1e3, False, S5_PEERS[peer] if peer_ms else None, peer_ms))
    out += [Metric(name, "ms", r[key] * 1e3, False, control=True) for key, name in S5_PEERS.items() if r.get(key)]
    return out


METRICS: dict[str, Callable[[Any], list[Metric]]] = {
    "s1": s1_metrics,
    "s2": s2_metrics,
    "s3": s3_metrics,
    "s4": s4_metrics,
    "s5": s5_metrics,
}


def _metrics(bench: str, side: str, result: Any) -> list[Metric]:
    """Return the metrics of one run, or say which script's result changed shape."""
    try:
        return METRICS[bench](result)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise RuntimeError(
            f"{SCRIPTS[bench]}.main of the {side} tree returned a result of another shape ({exc!r}): "
            f"teach {bench}_metrics in benchmarks/ab_trees.py to read it"
        ) from exc


def extract(repo: pathlib.Path, rev: str, into: pathlib.Path) -> str:
    """Extract revision ``rev`` of ``repo`` into ``into`` and return its short hash and subject.

    Raises:
        ValueError: ``repo`` has no commit ``rev``.
    """
    described = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%h %s", rev, "--"], capture_output=True, text=True
    )
    if described.returncode != 0:
        raise ValueError(f"no revision {rev!r} in {repo}: {described.stderr.strip()}")
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return described.stdout.strip()


def run_once(python: str, tree: pathlib.Path, bench: str, args: list[str]) -> Any:
    """Run benchmark ``bench`` of ``tree`` in a fresh process and return what its ``main`` returned."""
    with tempfile.TemporaryDirectory(prefix="xreplay-ab-out-") as tmp:
        out = pathlib.Path(tmp) / "result.json"
        env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        command = [python, "-c", DRIVER, str(tree), SCRIPTS[bench], str(out), json.dumps(args)]
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"{bench} in {tree} exited with {done.returncode}:\n{tail}")
        return json.loads(out.read_text())


def summarise(bench: str, before: list[list[Metric]], after: list[list[Metric]]) -> list[Row]:
    """Return one row per operation measured on both sides; ``before[i]``/``after[i]`` are round ``i``."""
    rows = []
    ops = [m.op for m in after[0]]
    for op in ops:
        pairs = [(_find(b, op), _find(a, op)) for b, a in zip(before, after, strict=True)]
        pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
        if not pairs:
            continue
        first = pairs[0][1]
        higher = first.higher_is_better
        med_b = statistics.median(b.value for b, _ in pairs)
        med_a = statistics.median(a.value for _, a in pairs)
        paired = [_speed(a.value, higher) / _speed(b.value, higher) for b, a in pairs]
        rows.append(
            Row(
                bench,
                op,
                first.unit,
                med_b,
                med_a,
                _speed(med_a, higher) / _speed(med_b, higher),
                (min(paired), max(paired)),
                first.peer,
                _peer_ratio([b for b, _ in pairs]),
                _peer_ratio([a for _, a in pairs]),
                first.control,
            )
        )
    return rows


def one_sided(bench: str, before: list[list[Metric]], after: list[list[Metric]]) -> list[str]:
    """Return the operations that only one side measured (a script renamed or added a figure)."""
    ops = {side: {m.op for run in runs for m in run} for side, runs in (("before", before), ("after", after))}
    return [
        f"{bench.upper()} {op} ({side} only)"
        for side, other in (("before", "after"), ("after", "before"))
        for op in sorted(ops[side] - ops[other])
    ]


def _find(metrics: list[Metric], op: str) -> Metric | None:
    """Return the metric of ``op`` in one run, if that run measured it."""
    return next((m for m in metrics if m.op == op), None)


def _peer_ratio(metrics: list[Metric]) -> float | None:
    """Median over rounds of xreplay's speed over its peer's, or None without a peer."""
    ratios = [
        _speed(m.value, m.higher_is_better) / _speed(m.peer_value, m.higher_is_better) for m in metrics if m.peer_value
    ]
    return statistics.median(ratios) if ratios else None


def _number(value: float) -> str:
    """Format a figure with about four significant digits."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def markdown(rows: Sequence[Row]) -> str:
    """Return the before/after table (xreplay rows, then the control rows) as markdown."""
    lines = [
        "| bench | operation | unit | before | after | after/before | paired range | peer | vs peer before "
        "| vs peer after | peer-normalised | |",
        "|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for control in (False, True):
        for row in (r for r in rows if r.control == control):
            peer_b = f"{row.peer_before:.2f}x" if row.peer_before else ""
            peer_a = f"{row.peer_after:.2f}x" if row.peer_after else ""
            normalised = f"{row.peer_after / row.peer_before:.3f}x" if row.peer_before and row.peer_after else ""
            flag = f"**below {THRESHOLD}x**" if row.flagged else ("control" if row.control else "")
            lines.append(
                f"| {row.bench.upper()} | {row.op} | {row.unit} | {_number(row.before)} | {_number(row.after)} "
                f"| {row.ratio:.3f}x | {row.paired[0]:.2f}-{row.paired[1]:.2f} | {row.peer or ''} "
                f"| {peer_b} | {peer_a} | {normalised} | {flag} |"
            )
    return "\n".join(lines)


def _load() -> str:
    """Return the 1, 5 and 15 minute load averages as text."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _run_pair(
    args: argparse.Namespace, sides: dict[str, pathlib.Path], bench: str, order: Sequence[str], label: str
) -> list[tuple[str, Any]]:
    """Run ``bench`` once per side in ``order`` and return (side, result) pairs.

    At smoke sizes the figures mean nothing, so both sides run at once and the check takes seconds; at
    any other size they run one after the other, never overlapping.
    """
    bench_args = list(SIZES[bench]["smoke" if args.smoke else "default"])
    python = args.ding_python if bench == "s3" and args.ding_python else sys.executable
    if bench == "s3" and not args.ding_python:
        bench_args.append("--no-ding")

    def one(side: str) -> tuple[str, Any]:
        start = time.perf_counter()
        result = run_once(python, sides[side], bench, bench_args)
        took = time.perf_counter() - start
        print(f"  {label} {bench} {side:6s} {took:6.1f} s  (load {_load()})", file=sys.stderr, flush=True)
        return side, result

    if args.smoke:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, order))
    return [one(side) for side in order]


def report(args: argparse.Namespace, rows: Sequence[Row], minutes: float, lonely: Sequence[str] = ()) -> None:
    """Print the sizes, the interpreter, the load, the table, the rows below the threshold and those not compared."""
    size = "smoke" if args.smoke else "default"
    benches = sorted({row.bench for row in rows})
    print(f"sizes ({size}): " + "; ".join(f"{b.upper()} {' '.join(SIZES[b][size])}" for b in benches))
    if "s3" in benches:
        print(f"S3 interpreter: {args.ding_python or sys.executable}" + ("" if args.ding_python else " (no DI-engine)"))
    print(f"took {minutes:.1f} min; load at end: {_load()}\n")
    print(markdown(rows))
    flagged = [f"{r.bench.upper()} {r.op}" for r in rows if r.flagged]
    print(f"\n{len(flagged)} xreplay row(s) below {THRESHOLD}x" + (": " + "; ".join(flagged) if flagged else ""))
    if lonely:
        print(f"not compared, measured on one side only: {'; '.join(lonely)}")


def compare(args: argparse.Namespace) -> list[Row]:
    """Extract both trees, alternate the runs over the rounds and return the table's rows."""
    benches = [b.lower() for b in (args.only or SCRIPTS)]
    work = pathlib.Path(tempfile.mkdtemp(prefix="xreplay-ab-trees-"))
    sides = {"before": work / "before", "after": work / "after"}
    try:
        labels = {}
        for name, rev in (("before", args.before), ("after", args.after)):
            sides[name].mkdir()
            labels[name] = extract(args.repo, rev, sides[name])
        print(f"xreplay A/B of whole trees: before = {labels['before']}; after = {labels['after']}")
        print(
            f"{args.rounds} rounds, order alternating, fresh process per run, 1 torch thread; load at start: {_load()}"
        )
        runs: dict[str, dict[str, list[list[Metric]]]] = {b: {"before": [], "after": []} for b in benches}
        raw: dict[str, dict[str, list[Any]]] = {b: {"before": [], "after": []} for b in benches}
        started = time.perf_counter()
        for round_number in range(args.rounds):
            order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
            for bench in benches:
                for side, result in _run_pair(args, sides, bench, order, f"round {round_number + 1}/{args.rounds}"):
                    raw[bench][side].append(result)
                    runs[bench][side].append(_metrics(bench, side, result))
        rows = [row for b in benches for row in summarise(b, runs[b]["before"], runs[b]["after"])]
        lonely = [op for b in benches for op in one_sided(b, runs[b]["before"], runs[b]["after"])]
        report(args, rows, (time.perf_counter() - started) / 60, lonely)
        if args.json:
            payload = {"labels": labels, "raw": raw, "rows": [r.__dict__ for r in rows]}
            pathlib.Path(args.json).write_text(json.dumps(payload, indent=1))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[Row]:
    """Parse the arguments, run the comparison, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", default="eaae662", help="the baseline revision (default eaae662)")
    parser.add_argument("after", nargs="?", default="HEAD", help="the revision to compare (default HEAD)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of runs (default 8; 1 with --smoke)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), metavar="SN", help="benchmarks to run")
    parser.add_argument("--smoke", action="store_true", help="the scripts' smoke sizes, one round: seconds")
    parser.add_argument("--ding-python", help="interpreter with DI-engine 0.5.3 for S3 (adds the DI-engine peer)")
    parser.add_argument("--repo", type=pathlib.Path, default=ROOT, help="the git repository (default: this one)")
    parser.add_argument("--json", help="also write the raw results and rows to this file")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 8
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return compare(args)


if __name__ == "__main__":
    main()
