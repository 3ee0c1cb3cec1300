"""Summaries of checkpoints for ``xreplay inspect``: kind, fields, fill, counters, priorities, and a plot.

The metadata is checked like a load checks it (its checksum, the shared rules
and the kind's rules) before any file it names is looked at, so inspecting a
crafted checkpoint never touches a file outside its folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.persistence.format import read_metadata
from xreplay.persistence.kinds import adapter_of_kind
from xreplay.persistence.loading import load_array
from xreplay.persistence.npy_files import file_headers
from xreplay.persistence.schema import check_document, contained_file

__all__ = ["plot_checkpoint", "require_matplotlib", "summarize"]


def _checked(path: Path) -> dict[str, Any]:
    """Return the metadata of ``path`` after the checks a load makes before opening files."""
    document = read_metadata(path)
    v = check_document(path, document)
    validate = getattr(adapter_of_kind(document["kind"]), "validate", None)
    if validate is not None:
        validate(v)
    return document


def _fill(meta: dict[str, Any]) -> tuple[int, int] | None:
    """Return (stored, capacity): from the writer state, or a DI-engine buffer's count; None when unknown."""
    state, structure = meta["state"], meta["structure"]
    writer = state.get("writer")
    if writer is not None:
        return int(writer["size"]), int(writer["capacity"])
    capacity = structure.get("capacity")
    if capacity is None:
        return None
    count = state.get("count")
    return (int(count) if count is not None else int(capacity)), int(capacity)


def _scheme_lines(meta: dict[str, Any]) -> list[str]:
    """Return one line per field of an episode scheme: name, shape with steps and group, dtype, stored dtype."""
    scheme = meta["structure"]["scheme"]
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


def _column_names(meta: dict[str, Any]) -> dict[str, str]:
    """Return array name -> field name for the columns of a transition checkpoint."""
    fields = meta["structure"].get("fields")
    if not isinstance(fields, dict) or meta["kind"] != "transition_buffer":
        return {}
    return {f"column{i}": name for i, name in enumerate(fields)}


def _field_lines(meta: dict[str, Any]) -> list[str]:
    """Return one line per field (episode scheme, or transition columns with their names)."""
    if meta["structure"].get("scheme") is not None:
        return _scheme_lines(meta)
    fields = meta["structure"].get("fields")
    if meta["kind"] != "transition_buffer" or not isinstance(fields, dict):
        return []
    lines = [
        f"  {name:20} {str(tuple(info['shape'])):18} {info['dtype']:9} stored: {info['dtype']}"
        for name, info in fields.items()
    ]
    pairs = meta["structure"].get("next_pairs") or []
    lines += [f"  {nxt:20} {'(as ' + obs + ' of the next slot)':18}" for nxt, obs in pairs]
    return lines


def _priorities(path: Path, meta: dict[str, Any]) -> np.ndarray | None:
    """Return the stored priorities of a checkpoint (an array whose name mentions priorit), over stored slots."""
    fill = _fill(meta)
    for name, entry in meta["arrays"].items():
        if "priorit" in name and not entry.get("live"):
            header = file_headers(meta)[name]
            values = np.asarray(load_array(path, entry, True, True, header), dtype=np.float64).reshape(-1)
            if fill is not None and values.shape[0] >= fill[1]:
                values = values[: fill[0]]
            return values[~np.isnan(values)]  # NaN: a slot never written
    return None


def _file_bytes(path: Path, entry: dict[str, Any]) -> int:
    """Return the bytes on disk of an array's files (base and deltas), 0 for missing ones."""
    total = 0
    for name in [entry["file"], *(d["file"] for d in entry.get("deltas", []))]:
        file = contained_file(path, name)
        total += file.stat().st_size if file.exists() else 0
    return total


def _numpy_lines(path: Path, meta: dict[str, Any]) -> list[str]:
    """Return how to read the checkpoint's arrays with numpy alone (and what numpy would miss)."""
    entries = meta["arrays"]
    raw = [name for name, entry in entries.items() if not str(entry["file"]).endswith(".npy")]
    with_deltas = [name for name, entry in entries.items() if entry.get("deltas")]
    lines = [f"numpy       numpy.load({str(path / '<file>')!r}, mmap_mode='r') opens each .npy file above"]
    layout = meta["structure"].get("layout")
    if "rows" in entries and str(entries["rows"]["file"]).endswith(".npy") and layout:
        if isinstance(layout, dict) and layout.get("order") == "step":
            lines.append(
                '            rows: one record per slot, step-major: ["steps"][field] per step (e.g. '
                '["steps"]["obs"]), ["episode"][field] per episode'
            )
        else:
            lines.append('            rows: one record per slot, one field per scheme field (e.g. ["obs"])')
    if raw:
        lines.append(f"            raw files without a .npy header (format 1 or 2): {', '.join(raw)}")
    if with_deltas:
        lines.append(
            f"            numpy sees {', '.join(with_deltas)} as of their base files, without the delta files; "
            f"xreplay.save(..., incremental=False) folds them into new .npy files"
        )
    return lines


def summarize(path: str | os.PathLike[str]) -> list[str]:
    """Return the lines ``xreplay inspect`` prints for the checkpoint at ``path``."""
    path = Path(path)
    meta = _checked(path)
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
    names = _column_names(meta)
    for name, entry in meta["arrays"].items():
        extra = "live memmap file" if entry.get("live") else f"{len(entry.get('deltas', []))} delta file(s)"
        label = f"{name} ({names[name]})" if name in names else name
        lines.append(
            f"  {label:20} {entry['dtype']:5} {str(tuple(entry['shape'])):18} "
            f"{_file_bytes(path, entry) / 2**20:9.2f} MiB, {extra}, {entry['file']}"
        )
    lines += _numpy_lines(path, meta)
    priorities = _priorities(path, meta)
    if priorities is not None and priorities.size:
        lines.append(
            f"priorities  min {priorities.min():.4g}  mean {priorities.mean():.4g}  max {priorities.max():.4g}  "
            f"(over {priorities.size} items)"
        )
    return lines


def require_matplotlib() -> Any:
    """Return ``matplotlib.pyplot`` (non-interactive backend).

    Raises:
        SystemExit: matplotlib (the ``plot`` extra) is not installed; the message names the install command.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("xreplay inspect --plot needs matplotlib: pip install 'xreplay[plot]'") from None
    return plt


def _lengths(path: Path, meta: dict[str, Any], stored: int) -> np.ndarray | None:
    """Return the episode lengths of the stored slots, None when the checkpoint has none."""
    entry = meta["arrays"].get("lengths")
    if entry is None or entry.get("live") or not stored:
        return None
    return np.asarray(load_array(path, entry, True, True, file_headers(meta)["lengths"]))[:stored]


def plot_checkpoint(path: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Write a PNG with the fill (and episode lengths) and, when present, the priority distribution.

    Raises:
        SystemExit: matplotlib (the ``plot`` extra) is not installed.
    """
    plt = require_matplotlib()
    path = Path(path)
    meta = _checked(path)
    priorities = _priorities(path, meta)
    figure, axes = plt.subplots(1, 2 if priorities is not None else 1, figsize=(10, 4), squeeze=False)
    stored, capacity = _fill(meta) or (0, 0)
    ax = axes[0][0]
    lengths = _lengths(path, meta, stored)
    if lengths is not None:
        ax.hist(lengths, bins=min(50, max(1, int(lengths.max()) + 1)))
        ax.set_xlabel("steps per stored episode")
        ax.set_ylabel("episodes")
    else:
        ax.barh([0], [capacity], color="0.85", label="capacity")
        ax.barh([0], [stored], color="C0", label="stored")
        ax.set_yticks([])
        ax.set_xlabel("items")
        ax.legend(loc="lower right")
    ax.set_title(f"fill {stored} / {capacity}")
    if priorities is not None:
        axes[0][1].hist(priorities, bins=50)
        axes[0][1].set_title(f"priority distribution ({priorities.size} items)")
    figure.suptitle(f"{meta['kind']}: {path.name}")
    figure.savefig(output, dpi=100)
    plt.close(figure)
