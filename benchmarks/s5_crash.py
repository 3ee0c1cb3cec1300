"""S5 durability: SIGKILL a saving process 50 times per buffer kind (episode, MemmapStorage flushes, transition
prioritized, PyMARL, pymarl2 prioritized, DI-engine); after each kill the checkpoint must verify, load and hold
exactly the state of an uninterrupted buffer after as many writes.

    python benchmarks/s5_crash.py             # 50 kills per kind (about a minute)
    python benchmarks/s5_crash.py --smoke     # 1 kill per kind (CI)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the crash loop lives in tests/persistence

from tests.persistence.crashing import KillReport, crash_loop  # noqa: E402
from tests.persistence.kinds import KINDS  # noqa: E402


def main(argv: list[str] | None = None) -> list[KillReport]:
    """Run the crash loops and print one row per kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 kill per kind for CI")
    parser.add_argument("--kills", type=int, default=50)
    args = parser.parse_args(argv)
    kills = 1 if args.smoke else args.kills
    root = Path(tempfile.mkdtemp(prefix="xreplay-crash-"))
    reports = []
    print(f"S5 crash: {kills} SIGKILLs per kind of a process saving xreplay checkpoints in a loop")
    print(f"{'kind':20} {'kills':>6} {'mid-save':>9} {'verified':>9} {'exact':>6} {'writes':>7} {'s':>6}")
    try:
        for i, kind in enumerate(KINDS):
            start = time.perf_counter()
            report = crash_loop(kind, root, kills, seed=i)
            reports.append(report)
            print(
                f"{kind:20} {report.kills:6d} {report.during_save:9d} {report.verified:9d} {report.exact:6d} "
                f"{report.writes:7d} {time.perf_counter() - start:6.1f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = sum(r.kills for r in reports)
    good = sum(r.exact for r in reports)
    print(f"total: {good}/{total} kills left a loadable, verified checkpoint holding the exact saved state")
    return reports


if __name__ == "__main__":
    main()
