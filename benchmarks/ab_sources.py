"""Compare two xreplay source trees on S1 or S2: alternate runs, then medians and new/base ratios.

Each round runs the benchmark once per tree (the order alternates between rounds), in a fresh process
with ``PYTHONPATH`` set to the tree's ``src``; the table gives, per operation, the median over rounds of
each run's own median, and their ratio. Used to check that a change does not slow the hot paths::

    git worktree add /tmp/base main   # or: git archive main src | tar -x -C /tmp/base
    python benchmarks/ab_sources.py s2 /tmp/base/src src --rounds 6 -- --capacity 200000 --reps 5 --calls 200 \\
        --no-rss --impls xreplay xreplay-numpy xreplay-next
    python benchmarks/ab_sources.py s1 /tmp/base/src src --rounds 6 -- --capacity 2000 --reps 5 --iters 100 --no-rss
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"s1": "s1_episodes", "s2": "s2_transitions"}


def run_once(script: str, src: str, args: list[str]) -> dict[str, dict[str, float]]:
    """Return ``{variant: {metric: value}}`` of one run of ``script`` against the source tree ``src``."""
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(src).resolve()))
    if script == "s2":
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, str(ROOT / "benchmarks" / "s2_transitions.py"), *args, "--json", out.name]
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
            return json.load(open(out.name))
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import s1_episodes as b; "
        f"rows = b.main({args!r}); print('JSON' + json.dumps(rows))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    rows = json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith("JSON"))[4:])
    return {row["variant"]: {k: v for k, v in row.items() if isinstance(v, int | float)} for row in rows}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, alternate the runs and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", choices=sorted(SCRIPTS))
    parser.add_argument("base", help="the baseline tree's src folder")
    parser.add_argument("new", help="the changed tree's src folder")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(own)
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"base": [], "new": []}
    for round_number in range(args.rounds):
        order = ("base", "new") if round_number % 2 == 0 else ("new", "base")
        for name in order:
            runs[name].append(run_once(args.script, getattr(args, name), passthrough))
    print(f"xreplay A/B {args.script}: {args.rounds} alternating rounds, medians over rounds")
    print(f"{'variant':28s} {'metric':30s} {'base':>12s} {'new':>12s} {'new/base':>9s}")
    for variant, metrics in runs["base"][0].items():
        for metric in metrics:
            if "RSS" in metric or "limit" in metric:
                continue
            base = statistics.median(run[variant][metric] for run in runs["base"])
            new = statistics.median(run[variant][metric] for run in runs["new"])
            print(f"{variant:28s} {metric:30s} {base:12.4g} {new:12.4g} {new / base:9.3f}")


if __name__ == "__main__":
    main()
