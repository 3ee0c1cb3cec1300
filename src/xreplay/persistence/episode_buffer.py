"""Checkpoint state of :class:`~xreplay.buffers.EpisodeBuffer`: rows, lengths, cursor, RNG, sampler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.errors import CheckpointMismatchError
from xreplay.persistence.codec import decode_layout, decode_rng, decode_scheme, encode_layout, encode_rng, encode_scheme
from xreplay.scheme import Scheme
from xreplay.storage.tensor import TensorStorage

if TYPE_CHECKING:
    from xreplay.buffers.episodes import EpisodeBuffer

__all__ = ["buffer_state", "check_scheme", "component_state", "restore_buffer", "storage_from_rows"]


def component_state(component: Any, prefix: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Return a component's ``checkpoint_state()`` with its arrays renamed ``prefix.name`` (None, {} if stateless)."""
    state = getattr(component, "checkpoint_state", None)
    if state is None:
        return None, {}
    meta, arrays = state()
    return meta, {f"{prefix}.{name}": array for name, array in arrays.items()}


def buffer_state(buffer: EpisodeBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the checkpoint ``(meta, arrays)`` of an episode buffer; arrays are views, not copies."""
    storage, writer = buffer.storage, buffer.writer
    sampler_meta, sampler_arrays = component_state(buffer.sampler, "sampler")
    meta: dict[str, Any] = {
        "structure": {
            "scheme": encode_scheme(buffer.scheme),
            "capacity": buffer.capacity,
            "layout": encode_layout(storage.layout),
        },
        "state": {
            "writer": writer.state_dict(),
            "rng": encode_rng(buffer.rng),
            "sampler": {"type": type(buffer.sampler).__name__, "state": sampler_meta},
            "device": str(buffer.device),
        },
        "ring": {
            "arrays": ["rows", "lengths"],
            "capacity": writer.capacity,
            "cursor": writer.cursor,
            "writes": writer.writes,
        },
    }
    flush = getattr(storage, "checkpoint_flush", None)
    if flush is not None:  # a MemmapStorage: its file is the checkpoint's rows when saved into its directory
        meta["live"] = {"rows": flush()}
    return meta, {"rows": storage.rows, "lengths": buffer._host_lengths, **sampler_arrays}


def check_scheme(saved: dict[str, Any], expected: Scheme | None, where: Any) -> None:
    """Raise CheckpointMismatchError when ``expected`` is given and differs from the saved scheme."""
    if expected is None:
        return
    mine = encode_scheme(expected)
    if mine != saved:
        differ = sorted(set(mine["fields"]) ^ set(saved["fields"])) or [
            n for n in mine["fields"] if mine["fields"][n] != saved["fields"].get(n)
        ]
        raise CheckpointMismatchError(
            f"{where} holds a buffer of another scheme (fields that differ: {differ or 'groups'}); "
            f"load it without scheme= or with the scheme it was saved with",
            where,
        )


def storage_from_rows(scheme: Scheme, layout_info: dict[str, Any], rows: np.ndarray) -> TensorStorage:
    """Return a storage over loaded ``rows``: a MemmapStorage for a shared map of its file, else a TensorStorage."""
    layout = decode_layout(scheme, layout_info)
    if isinstance(rows, np.memmap) and rows.mode == "r+":
        from xreplay.storage.memmap import MemmapStorage

        return MemmapStorage.attach(scheme, layout, rows)
    return TensorStorage.wrap(scheme, layout, torch.from_numpy(rows))


def restore_buffer(
    cls: type[EpisodeBuffer],
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    device: str | torch.device | None = None,
    scheme: Scheme | None = None,
) -> EpisodeBuffer:
    """Return an episode buffer rebuilt from a checkpoint (on its saved device unless told; CPU when mapped)."""
    structure, state = meta["structure"], meta["state"]
    check_scheme(structure["scheme"], scheme, meta.get("path", "the checkpoint"))
    saved = decode_scheme(structure["scheme"])
    storage = storage_from_rows(saved, structure["layout"], arrays["rows"])
    mapped = isinstance(arrays["rows"], np.memmap)
    target = torch.device(device if device is not None else ("cpu" if mapped else state["device"]))
    storage = storage.to(target)
    layout = storage.layout
    buffer = cls(saved, int(structure["capacity"]), layout.max_seq_length, storage=storage)
    buffer._restore(state["writer"], decode_rng(state["rng"]), arrays["lengths"])
    restore = getattr(buffer.sampler, "restore_state", None)
    sampler_meta = state["sampler"]["state"]
    if restore is not None and sampler_meta is not None:
        restore(sampler_meta, {k.removeprefix("sampler."): v for k, v in arrays.items() if k.startswith("sampler.")})
    return buffer
