"""Checkpoint state of :class:`~xreplay.buffers.TransitionBuffer`: columns, cursor, RNG, sampler, side stores.

The columns are ring arrays (``columns/<field>``, leading dimension the
capacity), so saving again to the same path writes only the slots written
since. A prioritized buffer adds its sampler's tree leaves
(``sampler.priorities``: ``priority ** alpha`` per slot, NaN where never
written) and slot generations, and keeps its max priority, beta schedule and
step, stale-update count and pending inserts in the metadata. A buffer that
stores next observations once (``next_obs_from``) adds its side store.

The adapter (:data:`TRANSITION_BUFFER`, kind ``transition_buffer``) checks a
checkpoint before loading it: field shapes and dtypes against the column
arrays, a writer within the capacity, the sampler's configuration and known
schedule kinds, the generator state, and the side store's row indices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from xreplay.buffers.n_step import NStepReturns
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.errors import CheckpointMismatchError
from xreplay.persistence.codec import (
    _DTYPES,
    check_rng,
    check_writer,
    decode_dtype,
)
from xreplay.persistence.episode_buffer import check_device
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.samplers import (
    build_sampler,
    sampler_arrays,
    sampler_state,
    sampler_structure,
    validate_sampler,
)
from xreplay.persistence.schema import Validator
from xreplay.storage.dtypes import numpy_dtype

__all__ = [
    "TRANSITION_BUFFER",
    "TransitionBufferAdapter",
    "restore_transition_buffer",
    "transition_buffer_state",
]


def _column(position: int) -> str:
    """Return the array name of the column at ``position`` of the saved field order (file names stay unique)."""
    return f"column{position}"


def transition_buffer_state(buffer: TransitionBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the checkpoint ``(meta, arrays)`` of a transition buffer from its public state; arrays are views."""
    public = buffer.state_dict()
    specs, columns = public["storage"]["specs"], public["storage"]["columns"]
    store = public["next"]
    structure = {
        "capacity": buffer.capacity,
        "fields": {name: {"shape": list(info["shape"]), "dtype": info["dtype"]} for name, info in specs.items()},
        "sampler": sampler_structure(buffer.sampler, "a transition buffer"),
        "next_obs_from": buffer.next_obs_from,
        "next_obs": buffer.next_obs,
        "next_pairs": None if store is None else store["pairs"],
        "n_step": None if buffer.n_step is None else dataclasses.asdict(buffer.n_step),
    }
    if buffer.stream is not None:  # next observations linked per stream (TransitionBuffer(stream=...))
        structure["stream"] = buffer.stream
    arrays: dict[str, Any] = {_column(i): columns[name] for i, name in enumerate(specs)}
    writer, last = public["writer"], public["last_sample"]
    state: dict[str, Any] = {
        "writer": writer,
        "rng": public["rng"],
        "device": str(buffer.device),
        "last_sample": last is not None,
    }
    sampler, sampler_data = sampler_state(public["sampler"])
    if sampler is not None:
        state["sampler"] = sampler
        arrays.update(sampler_data)
    if last is not None:
        arrays["last_sample.indices"], arrays["last_sample.generations"] = last["indices"], last["generations"]
    if store is not None:
        names = [name for name, _obs in store["pairs"]]
        state["next"] = {
            "rows": store["rows"],
            "newest": store["newest"],
            "values": sorted(store["values"]),
            "pending": bool(store["pending"]),
        }
        arrays["next.slot_row"], arrays["next.free"] = store["slot_row"], store["free"]
        for i, name in enumerate(names):
            if name in store["values"]:
                arrays[f"next.values{i}"] = store["values"][name]
            if store["pending"]:
                arrays[f"next.pending{i}"] = store["pending"][name][None]  # [1, *item]: scalars become 1-d
        streams = store.get("streams")
        if streams is not None:
            tables = {"successor": streams["successor"], "stream_newest": streams["stream_newest"]}
            tables.update({f"stream_pending{names.index(n)}": v for n, v in streams["pending"].items()})
            state["next"]["stream_tables"] = sorted(tables)
            arrays.update({f"next.{name}": value for name, value in tables.items()})
    meta = {
        "structure": structure,
        "state": state,
        "ring": {
            "arrays": [_column(i) for i in range(len(specs))],
            "capacity": writer["capacity"],
            "cursor": writer["cursor"],
            "writes": writer["writes"],
            **({"clears": writer["clears"]} if "clears" in writer else {}),
        },
    }
    return meta, arrays


def _validate_next(v: Validator, fields: dict[str, Any], capacity: int) -> None:
    """Check the next-observation configuration and side store."""
    source = v.get("structure.next_obs_from")
    v.string("structure.next_obs")
    pairs = v.get("structure.next_pairs")
    if source is None:
        if pairs is not None:
            raise v.fail("structure.next_pairs", "must be null without next_obs_from", pairs)
        return
    v.string("structure.next_obs_from")
    if pairs is None:
        return  # nothing written yet
    kept = v.mapping("state.next")
    rows = v.integer("state.next.rows", low=0, high=2**40)
    values = v.sequence("state.next.values", kept.get("values"), max_length=4096)
    for i, pair in enumerate(v.sequence("structure.next_pairs", max_length=4096)):
        v.string(f"structure.next_pairs[{i}][0]", v.sequence(f"structure.next_pairs[{i}]", pair, length=2)[0])
        obs = v.string(f"structure.next_pairs[{i}][1]", pair[1], choices=fields)
        if rows:  # side rows hold a value of every next-observation field
            v.array_shape(f"next.values{i}", (rows, *fields[obs]["shape"]))
        if v.boolean("state.next.pending", kept.get("pending")):
            v.array_shape(f"next.pending{i}", (1, *fields[obs]["shape"]))
    expected = sorted(str(pair[0]) for pair in pairs) if rows else []
    if values != expected:
        raise v.fail("state.next.values", f"must be {expected}: the fields whose side rows are stored", values)
    v.integer("state.next.newest", low=-1, high=capacity - 1)
    v.array_shape("next.slot_row", (capacity,), "<i4")
    if v.optional("structure.stream") is not None:
        from xreplay.buffers.next_obs import MAX_STREAMS

        v.string("structure.stream", choices=fields)
        tables = v.sequence("state.next.stream_tables", max_length=4096)
        if "successor" in tables:
            v.array_shape("next.successor", (capacity,), "<i4")
            entry = v.array_entry("next.stream_newest")
            count = v.integer(
                "arrays.next.stream_newest.shape[0]",
                v.sequence("arrays.next.stream_newest.shape", entry["shape"], length=1)[0],
                low=0,
                high=MAX_STREAMS,
            )
            v.array_shape("next.stream_newest", (count,), "<i8")
            for i, pair in enumerate(pairs):
                if f"stream_pending{i}" in tables:
                    v.array_shape(f"next.stream_pending{i}", (count, *fields[pair[1]]["shape"]))
    v.string("arrays.next.free.dtype", v.array_entry("next.free")["dtype"], choices={"<i4"})


def _validate(v: Validator) -> None:
    """Check a ``transition_buffer`` checkpoint's metadata before any of its files is opened."""
    capacity = v.integer("structure.capacity", low=0, high=2**40)
    fields = v.mapping("structure.fields")
    for i, (name, info) in enumerate(fields.items()):
        v.mapping(f"structure.fields.{name}", info)
        shape = v.shape(f"structure.fields.{name}.shape")
        dtype = v.string(f"structure.fields.{name}.dtype", choices=_DTYPES)
        host = numpy_dtype(decode_dtype(dtype))
        v.array_shape(_column(i), (capacity, *shape), None if host is None else np.dtype(host).str)
    ring = v.sequence("ring.arrays", length=len(fields))
    for i, name in enumerate(ring):
        v.string(f"ring.arrays[{i}]", name, choices={_column(i)})
    check_writer(v, "state.writer", capacity)
    check_rng(v, "state.rng")
    v.string("state.device")
    v.boolean("state.last_sample")
    validate_sampler(v, capacity)
    _validate_next(v, fields, capacity)
    n_step = v.get("structure.n_step")
    if n_step is not None:
        v.mapping("structure.n_step")
        with v.restoring("structure.n_step"):
            NStepReturns(**n_step)


def _check_values(v: Validator, meta: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Check the array values the buffer indexes with: sampled slots and side-store rows."""
    capacity = int(meta["structure"]["capacity"])
    if meta["state"].get("last_sample"):
        indices = np.asarray(arrays.get("last_sample.indices", np.zeros(0)))
        generations = np.asarray(arrays.get("last_sample.generations", np.zeros(0)))
        if indices.ndim != 1 or generations.shape != indices.shape or indices.dtype.kind not in "iu":
            raise v.fail("arrays.last_sample.indices", "must be 1-d integers matching last_sample.generations")
        if indices.size and (indices.min() < 0 or indices.max() >= capacity):
            raise v.fail("arrays.last_sample.indices", f"must hold slots in [0, {capacity})")
    if meta["structure"].get("next_pairs") is not None:
        rows = int(meta["state"]["next"]["rows"])
        slot_row, free = np.asarray(arrays["next.slot_row"]), np.asarray(arrays["next.free"])
        used = slot_row[slot_row >= 0]
        if slot_row.min(initial=0) < -1 or used.max(initial=-1) >= rows or free.ndim != 1:
            raise v.fail("arrays.next.slot_row", f"must hold -1 or side rows in [0, {rows})")
        taken = np.concatenate([used, free]).astype(np.int64)
        if taken.size != rows or np.unique(taken).size != rows or (rows and (taken.min() < 0 or taken.max() >= rows)):
            raise v.fail("arrays.next.free", f"and next.slot_row must share the {rows} side rows, each once")
        for name in meta["state"]["next"].get("stream_tables", []):
            if name in ("successor", "stream_newest"):
                links = np.asarray(arrays[f"next.{name}"])
                if links.size and (links.min() < -1 or links.max() >= capacity):
                    raise v.fail(f"arrays.next.{name}", f"must hold -1 or slots in [0, {capacity})")


class TransitionBufferAdapter:
    """Saves, checks and restores a :class:`~xreplay.buffers.TransitionBuffer` (kind ``transition_buffer``)."""

    kind = "transition_buffer"

    def state(self, buffer: TransitionBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the buffer's ``(meta, arrays)``."""
        return transition_buffer_state(buffer)

    def validate(self, v: Validator) -> None:
        """Check a checkpoint's metadata (see the module docstring)."""
        _validate(v)

    def memory_needed(self, document: dict[str, Any], mmap: bool) -> int:
        """Return the bytes a restore allocates: the columns are copied into new storage."""
        from xreplay.persistence.schema import entry_nbytes

        names = document.get("ring", {}).get("arrays", [])
        return sum(entry_nbytes(document["arrays"][name]) for name in names)

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> TransitionBuffer:
        """Return the buffer of a checked checkpoint (``device``, ``n_step`` options)."""
        return restore_transition_buffer(TransitionBuffer, meta, arrays, **options)


TRANSITION_BUFFER = TransitionBufferAdapter()
register_kind(TRANSITION_BUFFER, classes=(TransitionBuffer,))


def restore_transition_buffer(
    cls: type[TransitionBuffer],
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    device: str | torch.device | None = None,
    n_step: Any = None,
) -> TransitionBuffer:
    """Return a transition buffer rebuilt from a checkpoint (on its saved device unless told).

    Raises:
        CheckpointMismatchError: ``n_step`` differs from the saved n-step configuration.
    """
    structure, state = meta["structure"], meta["state"]
    v = Validator(meta.get("path", "the checkpoint"), meta)
    _check_values(v, meta, arrays)
    if device is None:
        check_device(v, "state.device", device)
    config = structure["sampler"]
    sampler = build_sampler(config, int(structure["capacity"]))
    saved_n_step = structure.get("n_step")
    if n_step is None and saved_n_step is not None:
        n_step = NStepReturns(**saved_n_step)
    elif n_step is not None and dataclasses.asdict(n_step) != saved_n_step:
        raise CheckpointMismatchError(
            f"{meta.get('path')} was saved with n_step {saved_n_step}, not {n_step}", meta.get("path")
        )
    buffer = cls(
        int(structure["capacity"]),
        sampler=sampler,
        device=device if device is not None else state["device"],
        n_step=n_step,
        next_obs_from=structure["next_obs_from"],
        next_obs=structure["next_obs"],
        stream=structure.get("stream"),
    )
    fields = structure["fields"]
    public: dict[str, Any] = {
        "writer": state["writer"],
        "rng": state["rng"],
        "sampler": {},
        "last_sample": None,
        "next": None,
        "storage": {"specs": fields, "columns": {name: arrays[_column(i)] for i, name in enumerate(fields)}},
    }
    public["sampler"] = sampler_arrays(state.get("sampler"), arrays)
    if state.get("last_sample"):
        public["last_sample"] = {
            "indices": arrays["last_sample.indices"],
            "generations": arrays["last_sample.generations"],
        }
    if structure["next_pairs"] is not None:
        pairs = [(str(a), str(b)) for a, b in structure["next_pairs"]]
        kept, tables = set(state["next"]["values"]), state["next"].get("stream_tables", [])
        store: dict[str, Any] = {
            "pairs": pairs,
            "rows": int(state["next"]["rows"]),
            "newest": int(state["next"]["newest"]),
            "slot_row": arrays["next.slot_row"],
            "free": arrays["next.free"],
            "values": {name: arrays[f"next.values{i}"] for i, (name, _o) in enumerate(pairs) if name in kept},
            "pending": {},
        }
        if state["next"]["pending"]:
            store["pending"] = {name: np.array(arrays[f"next.pending{i}"][0]) for i, (name, _o) in enumerate(pairs)}
        if structure.get("stream") is not None:
            store["streams"] = {
                "successor": arrays["next.successor"] if "successor" in tables else np.full(buffer.capacity, -1),
                "stream_newest": arrays["next.stream_newest"] if "stream_newest" in tables else np.zeros(0),
                "pending": {
                    name: arrays[f"next.stream_pending{i}"]
                    for i, (name, _o) in enumerate(pairs)
                    if f"stream_pending{i}" in tables
                },
            }
        public["next"] = store
    with v.restoring("state"):
        buffer.load_state_dict(public)
    return buffer
