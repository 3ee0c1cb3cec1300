"""The ``xreplay`` command: ``xreplay demo`` and ``xreplay inspect PATH``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

import torch

__all__ = ["main"]


def _version() -> str:
    """Return the installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xreplay")
    except PackageNotFoundError:
        from xreplay import __version__

        return __version__


def _progress_bar(iterable: Iterable[int], desc: str) -> Iterable[int]:
    """Wrap ``iterable`` in a tqdm progress bar (the ``demo`` extra)."""
    try:
        from tqdm import tqdm
    except ImportError:
        raise SystemExit("xreplay demo needs tqdm: pip install 'xreplay[demo]'") from None
    return tqdm(iterable, desc=desc, unit="it", leave=True)


def _demo(args: argparse.Namespace) -> int:
    """Run the seed scenario and print its figures."""
    from xreplay.demo import run_demo

    torch.set_num_threads(args.threads)
    print(
        f"xreplay demo: QMIX on SMAC MarineMicro_MvsM_4 shapes (4 agents, 10 actions, obs 40, state 68),\n"
        f"max_seq_length 61, ReplayBuffer of {args.buffer_size} episodes "
        f"({'compact' if args.compact else 'PyMARL'} layout), batches of {args.batch_size}"
    )
    report = run_demo(
        episodes=args.episodes,
        buffer_size=args.buffer_size,
        samples=args.samples,
        batch_size=args.batch_size,
        compact=args.compact,
        seed=args.seed,
        progress=_progress_bar,
    )
    print(f"collected   {report.episodes} episodes, {report.steps} filled steps in {report.collect_s:.1f} s")
    print(f"insert      {report.insert_eps_per_s:,.0f} episodes/s (insert_episode_batch)")
    print(
        f"sample      {report.sample_per_s:,.0f} samples/s of {args.batch_size} episodes (sample, max_t_filled, slice)"
    )
    print(f"storage     {report.storage_mib:.1f} MiB allocated for {args.buffer_size} x 61 steps")
    print(f"memory      process grew by {report.rss_growth_mib:.1f} MiB")
    print(f"learner     last masked TD statistic {report.loss:.4f}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    """Print a checkpoint's summary and optionally plot it."""
    from xreplay.errors import CheckpointError
    from xreplay.persistence.inspect import plot_checkpoint, summarize

    try:
        print("\n".join(summarize(args.path)))
    except CheckpointError as exc:
        print(f"xreplay inspect: {exc}", file=sys.stderr)
        return 1
    if args.plot is not None:
        plot_checkpoint(args.path, args.plot)
        print(f"plot        {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command."""
    parser = argparse.ArgumentParser(prog="xreplay", description="Fast, correct experience replay.")
    parser.add_argument("--version", action="version", version=f"xreplay {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the MarineMicro QMIX replay scenario end to end")
    demo.add_argument("--episodes", type=int, default=400, help="episodes to collect (default 400)")
    demo.add_argument("--buffer-size", type=int, default=5000, help="episodes the buffer holds (default 5000)")
    demo.add_argument("--samples", type=int, default=300, help="learner batches to sample (default 300)")
    demo.add_argument("--batch-size", type=int, default=32, help="episodes per batch (default 32)")
    demo.add_argument("--compact", action="store_true", help="store the buffer in compact lossless dtypes")
    demo.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    demo.set_defaults(run=_demo)
    inspect = commands.add_parser("inspect", help="summarize a checkpoint saved by xreplay.persistence")
    inspect.add_argument("path", help="checkpoint directory")
    inspect.add_argument("--plot", metavar="FILE.png", help="also plot fill and priorities (needs xreplay[plot])")
    inspect.set_defaults(run=_inspect)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
