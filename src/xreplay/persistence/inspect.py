"""Summaries of checkpoints for ``xreplay inspect``: kind, fields, fill, counters, priorities, and a plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.persistence.checkpoint import _load_array
from xreplay.persistence.format import read_metadata

__all__ = ["plot_checkpoint", "summarize"]


def _fill(meta: dict[str, Any]) -> tuple[int, int] | None:
    """Return (stored, capacity) from a checkpoint's writer state, None when it has no ring."""
    writer = meta["state"].get("writer")
    if writer is None:
        capacity = meta["structure"].get("capacity")
        return None if capacity is None else (int(capacity), int(capacity))
    return int(writer["size"]), int(writer["capacity"])


def _field_lines(meta: dict[str, Any]) -> list[str]:
    """Return one line per field: name, per-step or per-episode shape, dtype and stored dtype."""
    scheme = meta["structure"].get("scheme")
    if scheme is None:
        return []
    layout = meta["structure"].get("layout", {})
    steps = layout.get("max_seq_length")
    overrides = layout.get("overrides", {})
    lines = []
    for name, field in scheme["fields"].items():
        group = scheme["groups"].get(field["group"]) if field["group"] else None
        shape = ([steps] if field["per_step"] else []) + ([group] if group else []) + field["shape"]
        stored = overrides.get(name) or field["storage_dtype"] or field["dtype"]
        if field["derived"] is not None and name not in overrides:
            stored = f"derived from {field['derived']['source']!r}"
        lines.append(f"  {name:20} {str(tuple(shape)):18} {field['dtype']:9} stored: {stored}")
    return lines


def _priorities(path: Path, meta: dict[str, Any]) -> np.ndarray | None:
    """Return the stored priorities of a checkpoint (an array whose name mentions priorit), mapped."""
    fill = _fill(meta)
    for name, entry in meta["arrays"].items():
        if "priorit" in name:
            values = np.asarray(_load_array(path, entry, True, False), dtype=np.float64).reshape(-1)
            return values[: fill[0]] if fill is not None and values.shape[0] >= fill[1] else values
    return None


def summarize(path: str | os.PathLike[str]) -> list[str]:
    """Return the lines ``xreplay inspect`` prints for the checkpoint at ``path``."""
    path = Path(path)
    meta = read_metadata(path)
    lines = [
        f"checkpoint  {path}",
        f"kind        {meta['kind']} (format version {meta['format_version']}, "
        f"written by xreplay {meta['written_by']})",
        f"saves       generation {meta['generation']}, lineage {meta['lineage']}",
    ]
    fill = _fill(meta)
    if fill is not None:
        lines.append(f"fill        {fill[0]} / {fill[1]} ({100 * fill[0] / max(fill[1], 1):.1f}%)")
    writer = meta["state"].get("writer")
    if writer is not None:
        lines.append(f"counters    writes {writer['writes']}, cursor {writer['cursor']}")
    fields = _field_lines(meta)
    if fields:
        lines += ["fields", *fields]
    lines.append("arrays")
    for name, entry in meta["arrays"].items():
        nbytes = os.path.getsize(path / entry["file"]) if (path / entry["file"]).exists() else 0
        extra = "live memmap file" if entry.get("live") else f"{len(entry.get('deltas', []))} delta file(s)"
        lines.append(
            f"  {name:20} {entry['dtype']:5} {str(tuple(entry['shape'])):18} {nbytes / 2**20:9.2f} MiB, {extra}"
        )
    priorities = _priorities(path, meta)
    if priorities is not None and priorities.size:
        lines.append(
            f"priorities  min {priorities.min():.4g}  mean {priorities.mean():.4g}  max {priorities.max():.4g}  "
            f"(over {priorities.size} items)"
        )
    return lines


def plot_checkpoint(path: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Write a PNG with the fill (and episode lengths) and, when present, the priority distribution.

    Raises:
        SystemExit: matplotlib (the ``plot`` extra) is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("xreplay inspect --plot needs matplotlib: pip install 'xreplay[plot]'") from None
    path = Path(path)
    meta = read_metadata(path)
    priorities = _priorities(path, meta)
    figure, axes = plt.subplots(1, 2 if priorities is not None else 1, figsize=(10, 4), squeeze=False)
    fill = _fill(meta) or (0, 0)
    lengths = meta["arrays"].get("lengths")
    ax = axes[0][0]
    if lengths is not None and fill[0]:
        values = np.asarray(_load_array(path, lengths, True, False))[: fill[0]]
        ax.hist(values, bins=min(50, max(1, int(values.max()) + 1)))
        ax.set_xlabel("steps per stored episode")
    ax.set_title(f"fill {fill[0]} / {fill[1]}")
    if priorities is not None:
        axes[0][1].hist(priorities, bins=50)
        axes[0][1].set_title("priority distribution")
    figure.suptitle(f"{meta['kind']}: {path.name}")
    figure.savefig(output, dpi=100)
    plt.close(figure)
