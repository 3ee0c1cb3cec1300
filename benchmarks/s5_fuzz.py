"""S5 safety: 1,000 fuzzed checkpoints (byte flips, truncations, deleted or renamed files, crafted metadata,
traversal paths, links and pipes, pickled payloads) against load, mmap load, shared load + save, verify, inspect.

Target: 0 load silently different, read or write outside their folder, or run code; each is refused with a typed
CheckpointError naming the file or key (or, for a harmless change, loads exactly as saved).

    python benchmarks/s5_fuzz.py              # 1,000 cases (about a minute)
    python benchmarks/s5_fuzz.py --smoke      # 20 cases (CI)
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fuzzer lives in tests/persistence

from tests.persistence.fuzzing import FAILURES, Fuzzer, tally  # noqa: E402


def main(argv: list[str] | None = None) -> collections.Counter:
    """Run the fuzzer and print verdicts per mutation family."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20 cases for CI")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    n = 20 if args.smoke else args.cases
    root = Path(tempfile.mkdtemp(prefix="xreplay-fuzz-"))
    start = time.perf_counter()
    try:
        cases = Fuzzer(root, args.seed).run(n)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"S5 fuzz: {n} fuzzed xreplay checkpoints (seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    families: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in cases:
        families[case.mutation.split()[0].split("=")[0]][case.verdict] += 1
    verdicts = ["refused", "unchanged", "as written", *FAILURES]
    widths = [max(8, len(v) + 1) for v in verdicts]
    print(f"{'mutation':16}" + "".join(f"{v:>{w}}" for v, w in zip(verdicts, widths, strict=True)))
    for family, counts in sorted(families.items()):
        print(f"{family[:16]:16}" + "".join(f"{counts[v]:{w}d}" for v, w in zip(verdicts, widths, strict=True)))
    totals = tally(cases)
    print(f"{'total':16}" + "".join(f"{totals[v]:{w}d}" for v, w in zip(verdicts, widths, strict=True)))
    errors = collections.Counter(c.detail.split(":")[0] for c in cases if c.verdict == "refused")
    print("refused with: " + ", ".join(f"{name} {count}" for name, count in errors.most_common()))
    failed = [c for c in cases if c.failed]
    for case in failed[:20]:
        print(f"FAILED {case.kind} | {case.mutation} | {case.reader} | {case.verdict} | {case.detail[:200]}")
    print(f"target: 0 failures of {n}: {not failed}")
    return totals


if __name__ == "__main__":
    main()
