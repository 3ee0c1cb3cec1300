"""Checkpoint state of :class:`~xreplay.buffers.TransitionBuffer`: columns, cursor, RNG, sampler, side stores.

The columns are ring arrays (``columns/<field>``, leading dimension the
capacity), so saving again to the same path writes only the slots written
since. A prioritized buffer adds its sampler's tree leaves
(``sampler.priorities``: ``priority ** alpha`` per slot, NaN where never
written) and slot generations, and keeps its max priority, beta schedule and
step, stale-update count and pending inserts in the metadata. A buffer that
stores next observations once (``next_obs_from``) adds its side store.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xreplay.buffers.columns import ColumnSpec, _numpy_dtype
from xreplay.errors import CheckpointError, CheckpointMismatchError
from xreplay.persistence.codec import decode_dtype, decode_rng, encode_dtype, encode_rng
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.schedules import ConstantSchedule, LinearSchedule, Schedule

if TYPE_CHECKING:
    from xreplay.buffers.transitions import TransitionBuffer

__all__ = ["decode_schedule", "encode_schedule", "restore_transition_buffer", "transition_buffer_state"]



def _column(position: int) -> str:
    """Return the array name of the column at ``position`` of the saved field order (file names stay unique)."""
    return f"column{position}"


def encode_schedule(schedule: Schedule) -> dict[str, Any]:
    """Return a beta schedule as JSON.

    Raises:
        CheckpointError: The schedule is an arbitrary callable, which cannot be saved.
    """
    if isinstance(schedule, ConstantSchedule):
        return {"type": "constant", "value": float(schedule.value)}
    if isinstance(schedule, LinearSchedule):
        return {"type": "linear", **dataclasses.asdict(schedule)}
    raise CheckpointError(
        f"cannot checkpoint beta schedule {schedule!r}: only ConstantSchedule and LinearSchedule are saved"
    )


def decode_schedule(info: dict[str, Any]) -> Schedule:
    """Return the schedule of :func:`encode_schedule`."""
    fields = {k: v for k, v in info.items() if k != "type"}
    return ConstantSchedule(**fields) if info["type"] == "constant" else LinearSchedule(**fields)


def _sampler_structure(sampler: Any) -> dict[str, Any]:
    """Return a sampler's configuration (what must match for an incremental save)."""
    if not isinstance(sampler, PrioritizedSampler):
        return {"type": "uniform"}
    return {
        "type": "prioritized",
        "alpha": sampler.alpha,
        "beta": encode_schedule(sampler.beta),
        "epsilon": sampler.epsilon,
        "stratified": sampler.stratified,
    }


def transition_buffer_state(buffer: TransitionBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the checkpoint ``(meta, arrays)`` of a transition buffer; column arrays are views, not copies."""
    storage, writer = buffer.storage, buffer.writer
    columns = [_column(i) for i in range(len(storage.specs))]
    store = buffer._next
    structure = {
        "capacity": buffer.capacity,
        "fields": {name: {"shape": list(s.shape), "dtype": encode_dtype(s.dtype)} for name, s in storage.specs.items()},
        "sampler": _sampler_structure(buffer.sampler),
        "next_obs_from": buffer.next_obs_from,
        "next_obs": buffer.next_obs,
        "next_pairs": None if store is None else [list(pair) for pair in store.pairs],
        "n_step": None if buffer.n_step is None else dataclasses.asdict(buffer.n_step),
    }
    arrays: dict[str, Any] = {_column(i): storage.columns[name] for i, name in enumerate(storage.specs)}
    state: dict[str, Any] = {
        "writer": writer.state_dict(),
        "rng": encode_rng(buffer.rng),
        "device": str(buffer.device),
        "last_sample": buffer._last_sample is not None,
    }
    if isinstance(buffer.sampler, PrioritizedSampler):
        sampler = buffer.sampler.state_dict()
        arrays["sampler.priorities"] = sampler.pop("leaves")
        arrays["sampler.generations"] = sampler.pop("generations")
        state["sampler"] = sampler
    if buffer._last_sample is not None:
        arrays["last_sample.indices"], arrays["last_sample.generations"] = buffer._last_sample
    if store is not None:
        state["next"] = {"rows": store.rows, "newest": store.newest}
        arrays["next.slot_row"] = store.slot_row
        arrays["next.free"] = store.free
        state["next"]["values"] = sorted(store.values.keys() & {n for n, _o in store.pairs})
        state["next"]["pending"] = bool(store.pending)
        for i, (name, _obs) in enumerate(store.pairs):
            if name in store.values:
                arrays[f"next.values{i}"] = store.values[name]
            if store.pending:
                arrays[f"next.pending{i}"] = store.pending[name][None]  # [1, *item]: scalars become 1-d
    meta = {
        "structure": structure,
        "state": state,
        "ring": {"arrays": columns, "capacity": writer.capacity, "cursor": writer.cursor, "writes": writer.writes},
    }
    return meta, arrays


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
    config = structure["sampler"]
    sampler: str | PrioritizedSampler = "uniform"
    if config["type"] == "prioritized":
        sampler = PrioritizedSampler(
            int(structure["capacity"]),
            alpha=config["alpha"],
            beta=decode_schedule(config["beta"]),
            epsilon=config["epsilon"],
            stratified=config["stratified"],
        )
    saved_n_step = structure.get("n_step")
    if n_step is None and saved_n_step is not None:
        from xreplay.buffers.n_step import NStepReturns

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
    )
    fields = structure["fields"]
    specs = {name: ColumnSpec(tuple(info["shape"]), decode_dtype(info["dtype"])) for name, info in fields.items()}
    if specs:
        buffer.storage.allocate(specs)
        for i, name in enumerate(specs):
            column = buffer.storage.columns[name]
            column.copy_(torch.from_numpy(np.asarray(arrays[_column(i)])).to(column.device))
    buffer.writer.load_state_dict(state["writer"])
    buffer.rng = decode_rng(state["rng"])
    if isinstance(buffer.sampler, PrioritizedSampler):
        buffer.sampler.load_state_dict(
            {**state["sampler"], "leaves": arrays["sampler.priorities"], "generations": arrays["sampler.generations"]}
        )
    if state.get("last_sample"):
        buffer._last_sample = (
            np.array(arrays["last_sample.indices"], dtype=np.int64),
            np.array(arrays["last_sample.generations"]),
        )
    if structure["next_pairs"] is not None:
        from xreplay.buffers.transitions import _NextObsStore

        pairs = [(str(a), str(b)) for a, b in structure["next_pairs"]]
        store = _NextObsStore(buffer.capacity, pairs)
        store.slot_row = np.array(arrays["next.slot_row"], dtype=np.int32)
        store.free = np.array(arrays["next.free"], dtype=np.int32)
        store.rows, store.newest = int(state["next"]["rows"]), int(state["next"]["newest"])
        kept = set(state["next"]["values"])
        store.values = {name: np.array(arrays[f"next.values{i}"]) for i, (name, _o) in enumerate(pairs) if name in kept}
        if state["next"]["pending"]:
            store.pending = {name: np.array(arrays[f"next.pending{i}"][0]) for i, (name, _o) in enumerate(pairs)}
        store.dtypes = {obs: dtype for _n, obs in pairs if (dtype := _numpy_dtype(specs[obs].dtype)) is not None}
        buffer._next = store
    return buffer
