"""The ``xreplay demo`` subcommand: arguments, dispatch to a demo, one clear line for every bad input."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from xreplay.demos import DEMOS
from xreplay.demos.common import DemoError, RunFolder, peak_rss_mib

__all__ = ["add_demo_parser", "run_demo_command"]


def add_demo_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``commands`` (an argparse subparsers object) and return its parser."""
    listing = "; ".join(f"{name}: {text}" for name, text in DEMOS.items())
    demo = commands.add_parser(
        "demo",
        help="train an agent through xreplay (dqn, qmix, r2d2); needs xreplay[demo]",
        description=f"Train an agent through xreplay. Demos: {listing}.",
    )
    demo.add_argument("name", nargs="?", default="dqn", help=f"which demo: {', '.join(DEMOS)} (default dqn)")
    demo.add_argument("--out", help="run folder: checkpoints and curve.png (default ./xreplay-demo-NAME)")
    demo.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (dqn) from its last checkpoint")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    demo.add_argument("--steps", type=int, help="step budget (dqn, r2d2: environment steps; qmix: env steps)")
    demo.add_argument("--minutes", type=float, help="qmix: training budget in minutes (default 9)")
    demo.add_argument("--per", action="store_true", help="qmix: prioritized episode replay (pymarl2)")
    demo.add_argument("--checkpoint-every", type=int, help="dqn: steps between checkpoints (default 10000)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=run_demo_command)
    return demo


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo named by ``args``; print one line and return 2 on bad input, 130 when interrupted."""
    name = args.name
    if name not in DEMOS:
        return _fail(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)} (e.g. `xreplay demo dqn`)")
    if args.resume is not None and name != "dqn":
        return _fail(f"the {name} demo does not checkpoint; --resume continues dqn runs (`xreplay demo --resume DIR`)")
    out = Path(args.resume or args.out or f"xreplay-demo-{name}")
    try:
        if args.resume is not None:
            RunFolder(out, name).latest()  # a folder that is not this demo's checkpoint: say so first
        module = importlib.import_module(f"xreplay.demos.{name}")
        code = int(module.main(args, out))
    except DemoError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"\n{_interrupted(name, out)}", file=sys.stderr)
        return 130
    peak = peak_rss_mib()
    if peak is not None:
        print(f"memory      peak resident {peak:,.0f} MiB")
    return code


def _interrupted(name: str, out: Path) -> str:
    """Return the line telling how to continue an interrupted run."""
    if name != "dqn":
        return f"xreplay demo {name}: interrupted; this demo does not checkpoint, run it again to start over"
    try:
        _config, folder = RunFolder(out, name).latest()
    except DemoError:
        return "xreplay demo: interrupted before the first checkpoint; nothing to resume, run it again"
    resume = f"xreplay demo --resume {os.fspath(out)}"
    return f"xreplay demo: interrupted; the last checkpoint {folder} is intact: continue with `{resume}`"


def _fail(message: str) -> int:
    """Print ``message`` as one line on stderr and return the usage-error code."""
    print(f"xreplay demo: {message}", file=sys.stderr)
    return 2
