"""The ``xreplay`` command: ``xreplay demo [NAME]``, ``xreplay bench`` and ``xreplay inspect PATH``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xreplay.bench import add_bench_parser
from xreplay.demos.command import add_demo_parser

__all__ = ["main"]


def _version() -> str:
    """Return the installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xreplay")
    except PackageNotFoundError:
        from xreplay.version import __version__

        return __version__


def _inspect(args: argparse.Namespace) -> int:
    """Print a checkpoint's summary and optionally plot it."""
    from xreplay.errors import CheckpointError
    from xreplay.persistence.inspect import plot_checkpoint, require_matplotlib, summarize

    if args.plot is not None:
        require_matplotlib()  # before any output: a missing extra is said first, not after the summary
    try:
        print("\n".join(summarize(args.path)))
        if args.plot is not None:
            plot_checkpoint(args.path, args.plot)
            print(f"plot        {args.plot}")
    except CheckpointError as exc:
        print(f"xreplay inspect: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command."""
    parser = argparse.ArgumentParser(prog="xreplay", description="Fast, correct experience replay.")
    parser.add_argument("--version", action="version", version=f"xreplay {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(commands)
    add_bench_parser(commands)
    inspect = commands.add_parser("inspect", help="summarize a checkpoint saved by xreplay.persistence")
    inspect.add_argument("path", help="checkpoint directory")
    inspect.add_argument("--plot", metavar="FILE.png", help="also plot fill and priorities (needs xreplay[plot])")
    inspect.set_defaults(run=_inspect)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
