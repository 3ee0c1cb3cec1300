"""What every demo shares: the extra check, replay timing, run folders with checkpoints, progress bars and plots.

A demo's run folder holds ``demo.json`` (which demo, its configuration and
the name of the latest complete checkpoint) and one folder per checkpoint
(``step-00020000/``: the replay buffer saved by :mod:`xreplay.persistence`,
``state.json`` with counters, RNG states and the curve so far, and
``model.pt`` with network and optimizer tensors, read back with
``torch.load(weights_only=True)``, so loading runs no code). A checkpoint
folder is complete before ``demo.json`` names it, and ``demo.json`` is
replaced atomically, so an interrupted save leaves the previous checkpoint
in force.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xreplay.errors import XReplayError

__all__ = [
    "DEMO_EXTRA",
    "DemoError",
    "ReplayClock",
    "RunFolder",
    "peak_rss_mib",
    "plot_curves",
    "progress_bar",
    "require_extra",
    "rng_state",
    "set_rng_state",
]

#: Import name -> distribution of the packages of ``pip install 'xreplay[demo]'``.
DEMO_EXTRA = {"gymnasium": "gymnasium", "lbforaging": "lbforaging", "tqdm": "tqdm", "matplotlib": "matplotlib"}
FORMAT = "xreplay-demo"
VERSION = 1


class DemoError(XReplayError):
    """A demo cannot run as asked (missing extra, unknown name, a folder that is not its checkpoint)."""


def require_extra(modules: Sequence[str]) -> None:
    """Raise :class:`DemoError` naming the install command when one of ``modules`` is missing.

    Raises:
        DemoError: A module of the ``demo`` extra is not installed.
    """
    missing = [DEMO_EXTRA.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DemoError(
            f"the demo extra is missing ({', '.join(missing)} not installed): pip install 'xreplay[demo]' "
            f"(in a checkout: make demo)"
        )


class ReplayClock:
    """Seconds spent in replay calls (write, sample, priority update) against the whole loop.

    Example:
        >>> clock = ReplayClock()
        >>> with clock.replay("sample"):
        ...     pass
        >>> sorted(clock.seconds), clock.calls["sample"]
        (['sample'], 1)
    """

    def __init__(self) -> None:
        """Start with nothing measured."""
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.loop_seconds = 0.0
        self._loop_start: float | None = None

    @contextlib.contextmanager
    def replay(self, what: str) -> Iterator[None]:
        """Time the block as replay work of kind ``what``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - start
            self.calls[what] = self.calls.get(what, 0) + 1

    def start_loop(self) -> None:
        """Start (or restart after a pause) the loop's wall clock."""
        self._loop_start = time.perf_counter()

    def pause_loop(self) -> None:
        """Stop the loop's clock (evaluations and checkpoints are not part of the loop)."""
        if self._loop_start is not None:
            self.loop_seconds += time.perf_counter() - self._loop_start
            self._loop_start = None

    @property
    def replay_seconds(self) -> float:
        """Return the seconds spent in replay calls."""
        return sum(self.seconds.values())

    def share(self) -> float:
        """Return replay's share of the loop time (0 before any loop time)."""
        loop = self.loop_seconds + (time.perf_counter() - self._loop_start if self._loop_start is not None else 0.0)
        return self.replay_seconds / loop if loop > 0 else 0.0

    def items_per_second(self, items: int) -> float:
        """Return ``items`` per second of replay time."""
        seconds = self.replay_seconds
        return items / seconds if seconds > 0 else 0.0

    def summary(self) -> str:
        """Return one line: the share and the per-call microseconds of each kind."""
        parts = ", ".join(
            f"{what} {1e6 * self.seconds[what] / max(self.calls[what], 1):.0f} us/call" for what in sorted(self.seconds)
        )
        return (
            f"{100 * self.share():.1f}% of the training loop ({self.replay_seconds:.1f} s of "
            f"{self.loop_seconds:.1f} s): {parts}"
        )


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return a numpy Generator's state as JSON-able data."""
    return dict(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Continue ``rng`` from a state returned by :func:`rng_state`."""
    rng.bit_generator.state = dict(state)


def peak_rss_mib() -> float | None:
    """Return this process's peak resident memory in MiB, or None where the platform does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def progress_bar(total: int, desc: str, initial: int = 0, disable: bool = False) -> Any:
    """Return a tqdm bar over ``total`` steps (the ``demo`` extra)."""
    require_extra(["tqdm"])
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=disable, dynamic_ncols=True)


def plot_curves(
    path: Path,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    lines: Mapping[str, float] | None = None,
) -> Path:
    """Write a PNG of ``label -> (x, y)`` curves with optional horizontal reference ``lines``; return its path."""
    require_extra(["matplotlib"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for label, (x, y) in curves.items():
        axes.plot(list(x), list(y), marker="o" if len(x) < 40 else None, markersize=3, label=label)
    styles = [("grey", "--"), ("tab:red", ":"), ("tab:green", "-.")]
    for (label, value), (color, style) in zip((lines or {}).items(), styles * 4, strict=False):
        axes.axhline(value, linestyle=style, color=color, linewidth=1, label=label)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


class RunFolder:
    """A demo's run folder: its ``demo.json``, checkpoints, and the files it writes (curves).

    Args:
        path: The folder.
        demo: Name of the demo the folder belongs to.
    """

    def __init__(self, path: str | os.PathLike[str], demo: str):
        """Bind to ``path``; nothing is read or written yet."""
        self.path = Path(path)
        self.demo = demo

    @property
    def index(self) -> Path:
        """Return the path of ``demo.json``."""
        return self.path / "demo.json"

    def start(self, config: Mapping[str, Any]) -> None:
        """Make the folder a fresh run of this demo with ``config`` (an old run of a demo there is replaced).

        Raises:
            DemoError: The folder exists, is not empty and is not a demo run folder.
        """
        if self.path.exists() and not self.path.is_dir():
            raise DemoError(f"{self.path} is a file; pass --out with a folder for the demo's run")
        if self.path.is_dir() and any(self.path.iterdir()) and not self.index.is_file():
            raise DemoError(
                f"{self.path} is not empty and holds no demo run (no demo.json); pass --out with a new or empty folder"
            )
        if self.index.is_file():
            for child in self.path.iterdir():  # only what an earlier run of a demo wrote
                if child.is_dir() and child.name.startswith("step-"):
                    shutil.rmtree(child)
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_index(
            {"format": FORMAT, "version": VERSION, "demo": self.demo, "config": dict(config), "latest": None}
        )

    def _write_index(self, index: Mapping[str, Any]) -> None:
        """Replace ``demo.json`` atomically."""
        _write_atomic(self.index, lambda p: p.write_text(json.dumps(index, indent=1)))

    def read_index(self) -> dict[str, Any]:
        """Return ``demo.json`` after checking that it is this demo's, with a checkpoint.

        Raises:
            DemoError: No demo.json, an unreadable one, another demo's, or no checkpoint yet.
        """
        if not self.index.is_file():
            raise DemoError(f"{self.path} is not a demo checkpoint (no demo.json); resume a folder a demo wrote")
        try:
            index = json.loads(self.index.read_text())
        except (OSError, ValueError) as exc:
            raise DemoError(f"{self.index} is unreadable ({exc}); it is not a demo checkpoint") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise DemoError(f"{self.index} is not a demo checkpoint (format {index.get('format')!r})")
        if index.get("version") != VERSION:
            raise DemoError(
                f"{self.index} has demo format version {index.get('version')}; this xreplay reads {VERSION}"
            )
        other = index.get("demo")
        if other != self.demo:
            raise DemoError(
                f"{self.path} holds a checkpoint of the {other!r} demo, not {self.demo!r}: "
                f"resume it with `xreplay demo {other} --resume {self.path}`"
            )
        latest = index.get("latest")
        if not isinstance(latest, str) or not latest.startswith("step-") or os.sep in latest or "/" in latest:
            raise DemoError(f"{self.path} holds no complete checkpoint yet; start the demo again without --resume")
        if not (self.path / latest).is_dir():
            raise DemoError(f"{self.path / latest} named by demo.json is missing; start the demo again")
        return index

    def checkpoint(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write checkpoint ``step`` with ``write(folder)``, then make it the latest and drop older ones."""
        name = f"step-{step:08d}"
        folder = self.path / name
        partial = self.path / f".{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        write(partial)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(partial, folder)
        index = json.loads(self.index.read_text())
        index["latest"] = name
        self._write_index(index)
        for child in self.path.iterdir():
            if child.is_dir() and child.name.startswith(("step-", ".step-")) and child.name != name:
                shutil.rmtree(child)
        return folder

    def latest(self) -> tuple[dict[str, Any], Path]:
        """Return ``(config, folder)`` of the latest checkpoint (see :meth:`read_index` for errors)."""
        index = self.read_index()
        return dict(index.get("config") or {}), self.path / index["latest"]


def save_state(folder: Path, state: Mapping[str, Any], tensors: Mapping[str, Any]) -> None:
    """Write ``state.json`` (JSON data) and ``model.pt`` (tensors and state dicts) into ``folder``."""
    (folder / "state.json").write_text(json.dumps(state))
    torch.save(dict(tensors), folder / "model.pt")


def load_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(state, tensors)`` saved by :func:`save_state`; tensors load without running code.

    Raises:
        DemoError: A file is missing or unreadable.
    """
    try:
        state = json.loads((folder / "state.json").read_text())
        tensors = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise DemoError(f"checkpoint {folder} is incomplete or damaged ({exc}); start the demo again") from None
    return state, tensors
