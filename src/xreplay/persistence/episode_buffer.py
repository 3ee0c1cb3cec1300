"""Checkpoint state of :class:`~xreplay.buffers.EpisodeBuffer`: rows, lengths, cursor, RNG, sampler.

The adapter (:data:`EPISODE_BUFFER`, kind ``episode_buffer``) also checks a
checkpoint before it is loaded: the scheme and layout, rows of
``capacity x row_bytes``, lengths of ``capacity`` int32 values within
``[0, max_seq_length]``, a writer whose cursor and size fit the capacity, and
a numpy generator state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.errors import CheckpointMismatchError
from xreplay.persistence.codec import (
    check_layout,
    check_rng,
    check_writer,
    decode_layout,
    decode_scheme,
    encode_layout,
    encode_scheme,
)
from xreplay.persistence.codec import check_scheme as check_encoded_scheme
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.samplers import (
    build_sampler,
    sampler_arrays,
    sampler_state,
    sampler_structure,
    validate_sampler,
)
from xreplay.persistence.schema import Validator
from xreplay.scheme import Scheme
from xreplay.storage.memmap import MemmapStorage
from xreplay.storage.tensor import TensorStorage

__all__ = [
    "EPISODE_BUFFER",
    "EpisodeBufferAdapter",
    "buffer_state",
    "check_device",
    "check_lengths",
    "check_scheme",
    "restore_buffer",
    "storage_from_rows",
]


def buffer_state(buffer: EpisodeBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the checkpoint ``(meta, arrays)`` of an episode buffer from its public state; arrays are views."""
    storage = buffer.storage
    state = buffer.state_dict()
    writer = state["writer"]
    meta: dict[str, Any] = {
        "structure": {
            "scheme": encode_scheme(buffer.scheme),
            "capacity": buffer.capacity,
            "layout": encode_layout(storage.layout),
        },
        "state": {
            "writer": writer,
            "rng": state["rng"],
            "sampler": {"type": type(buffer.sampler).__name__, "state": None},
            "device": str(buffer.device),
        },
        "ring": {
            "arrays": ["rows", "lengths"],
            "capacity": writer["capacity"],
            "cursor": writer["cursor"],
            "writes": writer["writes"],
            **({"clears": writer["clears"]} if "clears" in writer else {}),
        },
    }
    config = sampler_structure(buffer.sampler, "an episode buffer")
    sampler, sampler_data = sampler_state(state["sampler"])
    if config != {"type": "uniform"}:  # written only when not the default, so older readers see the same format
        meta["structure"]["sampler"] = config
        meta["state"]["sampler"]["state"] = sampler
    if isinstance(storage, MemmapStorage):  # its file is the rows when saved into its own directory
        meta["live"] = {"rows": storage}
    return meta, {"rows": state["storage"]["rows"], "lengths": state["lengths"], **sampler_data}


def check_device(v: Validator, key: str, device: Any) -> None:
    """Check the saved device string at ``key`` when it will be used (no ``device`` option given)."""
    saved = v.string(key)
    try:
        parsed = torch.device(saved)
    except (RuntimeError, ValueError) as exc:
        raise v.fail(key, f"must be a torch device ({exc})", saved) from None
    if device is None and parsed.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointMismatchError(
            f"{v.path} was saved on {saved} but torch sees no CUDA device here; load it with device='cpu'", v.path
        )


def check_lengths(v: Validator, lengths: np.ndarray, max_seq_length: int, key: str = "arrays.lengths") -> None:
    """Raise unless every episode length lies in ``[0, max_seq_length]``."""
    bad = (lengths < 0) | (lengths > max_seq_length)
    if bad.any():
        slot = int(np.flatnonzero(bad)[0])
        raise v.fail(key, f"must hold lengths in [0, {max_seq_length}] (slot {slot})", int(lengths[slot]))


def _validate(v: Validator) -> None:
    """Check an ``episode_buffer`` checkpoint's metadata before any of its files is opened."""
    capacity = v.integer("structure.capacity", low=0, high=2**40)
    scheme = check_encoded_scheme(v, "structure.scheme")
    layout = check_layout(v, "structure.layout", scheme)
    v.array_shape("rows", (capacity, layout.row_bytes), "|u1")
    v.array_shape("lengths", (capacity,), "<i4")
    check_writer(v, "state.writer", capacity)
    v.string("ring.arrays[0]", v.sequence("ring.arrays", length=2)[0], choices={"rows"})
    v.string("ring.arrays[1]", v.get("ring.arrays")[1], choices={"lengths"})
    check_rng(v, "state.rng")
    kind = v.string("state.sampler.type", choices={"UniformSampler", "PrioritizedSampler"})
    if v.optional("structure.sampler") is None:
        if kind != "UniformSampler" or v.get("state.sampler.state") is not None:
            raise v.fail("state.sampler.state", "must be null for a UniformSampler", v.get("state.sampler.state"))
    elif validate_sampler(v, capacity, "state.sampler.state") != {"UniformSampler": "uniform"}.get(kind, "prioritized"):
        raise v.fail("state.sampler.type", "must name the sampler of structure.sampler", kind)
    v.string("state.device")


class EpisodeBufferAdapter:
    """Saves, checks and restores an :class:`~xreplay.buffers.EpisodeBuffer` (kind ``episode_buffer``)."""

    kind = "episode_buffer"

    def state(self, buffer: EpisodeBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the buffer's ``(meta, arrays)``."""
        return buffer_state(buffer)

    def validate(self, v: Validator) -> None:
        """Check a checkpoint's metadata (see the module docstring)."""
        _validate(v)

    def memory_needed(self, document: dict[str, Any], mmap: bool) -> int:
        """Return the bytes a restore allocates besides the arrays: a host copy of the lengths."""
        return 4 * int(document["structure"]["capacity"])

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> EpisodeBuffer:
        """Return the buffer of a checked checkpoint (``device``, ``scheme`` options)."""
        return restore_buffer(EpisodeBuffer, meta, arrays, **options)


EPISODE_BUFFER = EpisodeBufferAdapter()
register_kind(EPISODE_BUFFER, classes=(EpisodeBuffer,))


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


def storage_from_rows(
    scheme: Scheme, layout_info: dict[str, Any], rows: np.ndarray, live: dict[str, Any] | None = None
) -> TensorStorage:
    """Return a storage over loaded ``rows``: a MemmapStorage over its file when ``live``, else a TensorStorage.

    ``live`` is what ``load(mmap="shared")`` passes for a rows file: its path, map, row checksums and data offset.
    """
    layout = decode_layout(scheme, layout_info)
    if live is not None:
        return MemmapStorage.attach(
            scheme, layout, rows, live["file"], live["map"], live["row_crc"], live.get("data_offset", 0)
        )
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
    v = Validator(meta.get("path", "the checkpoint"), meta)
    check_scheme(structure["scheme"], scheme, meta.get("path", "the checkpoint"))
    saved = decode_scheme(structure["scheme"])
    check_lengths(v, np.asarray(arrays["lengths"]), int(structure["layout"]["max_seq_length"]))
    live = meta.get("live", {}).get("rows")
    mapped = bool(meta.get("mapped")) or isinstance(arrays["rows"], np.memmap)
    if not mapped and device is None:
        check_device(v, "state.device", device)
    storage = storage_from_rows(saved, structure["layout"], arrays["rows"], live)
    target = torch.device(device if device is not None else ("cpu" if mapped else state["device"]))
    storage = storage.to(target)
    layout = storage.layout
    capacity = int(structure["capacity"])
    sampler = build_sampler(structure.get("sampler", {"type": "uniform"}), capacity)
    buffer = cls(saved, capacity, layout.max_seq_length, storage=storage, sampler=sampler)
    with v.restoring("state"):
        buffer.load_state_dict(
            {
                "writer": state["writer"],
                "rng": state["rng"],
                "sampler": sampler_arrays(state["sampler"]["state"], arrays),
                "lengths": np.asarray(arrays["lengths"]),
            }
        )
    return buffer
