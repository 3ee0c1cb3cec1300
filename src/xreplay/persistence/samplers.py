"""How a buffer's sampler is checkpointed: its configuration, its plain state and its arrays.

A uniform sampler is ``{"type": "uniform"}`` (plus ``"replace": false`` when
it draws without replacement) and holds no state. A prioritized sampler is
``{"type": "prioritized", "alpha", "beta", "epsilon", "stratified"}`` in the
structure, its counters in ``state.sampler``, and two arrays: the tree leaves
(``sampler.priorities``: ``priority ** alpha`` per slot, NaN where never
written) and the slot generations (``sampler.generations``). Other samplers
(sequence samplers) are refused with a typed error naming them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xreplay.errors import CheckpointError
from xreplay.persistence.schema import Validator
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.schedules import ConstantSchedule, LinearSchedule, Schedule
from xreplay.samplers.uniform import UniformSampler

__all__ = [
    "build_sampler",
    "check_schedule",
    "decode_schedule",
    "encode_schedule",
    "sampler_arrays",
    "sampler_state",
    "sampler_structure",
    "validate_sampler",
]


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


def check_schedule(v: Validator, key: str) -> None:
    """Check an encoded beta schedule: a known kind with finite values."""
    kind = v.string(f"{key}.type", choices={"constant", "linear"})
    if kind == "constant":
        v.number(f"{key}.value")
    else:
        v.number(f"{key}.start")
        v.number(f"{key}.end")
        v.integer(f"{key}.steps", low=1)


def decode_schedule(info: dict[str, Any]) -> Schedule:
    """Return the schedule of :func:`encode_schedule`."""
    fields = {k: v for k, v in info.items() if k != "type"}
    return ConstantSchedule(**fields) if info["type"] == "constant" else LinearSchedule(**fields)


def sampler_structure(sampler: Any, what: str) -> dict[str, Any]:
    """Return a sampler's configuration (what must match for an incremental save).

    Raises:
        CheckpointError: The sampler is of a kind this format does not hold (a sequence sampler).
    """
    if type(sampler) is UniformSampler:
        return {"type": "uniform"} if sampler.replace else {"type": "uniform", "replace": False}
    if type(sampler) is not PrioritizedSampler:
        raise CheckpointError(
            f"cannot checkpoint {what} sampled by a {type(sampler).__name__}: checkpoints hold uniform and "
            f"prioritized samplers; save the data from a buffer with one of those"
        )
    return {
        "type": "prioritized",
        "alpha": sampler.alpha,
        "beta": encode_schedule(sampler.beta),
        "epsilon": sampler.epsilon,
        "stratified": sampler.stratified,
    }


def sampler_state(public: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Split a sampler's ``state_dict`` into its plain state (None when empty) and its named arrays."""
    if not public:
        return None, {}
    state = dict(public)
    arrays = {"sampler.priorities": state.pop("leaves"), "sampler.generations": state.pop("generations")}
    return state, arrays


def validate_sampler(v: Validator, capacity: int, state_key: str = "state.sampler") -> str:
    """Check the sampler configuration and, for a prioritized one, its state (at ``state_key``) and arrays."""
    kind = v.string("structure.sampler.type", choices={"uniform", "prioritized"})
    if kind == "uniform":
        if v.optional("structure.sampler.replace") is not None:
            v.boolean("structure.sampler.replace")
        return kind
    v.number("structure.sampler.alpha", low=0.0)
    check_schedule(v, "structure.sampler.beta")
    v.number("structure.sampler.epsilon", low=0.0)
    v.boolean("structure.sampler.stratified")
    v.mapping(state_key)
    v.array_shape("sampler.priorities", (capacity,), "<f8")
    v.array_shape("sampler.generations", (capacity,), ("<i4", "<i8", "<u4", "<u8"))
    return kind


def build_sampler(config: dict[str, Any], capacity: int) -> UniformSampler | PrioritizedSampler:
    """Return a new sampler of a checked configuration."""
    if config["type"] == "prioritized":
        return PrioritizedSampler(
            capacity,
            alpha=config["alpha"],
            beta=decode_schedule(config["beta"]),
            epsilon=config["epsilon"],
            stratified=config["stratified"],
        )
    return UniformSampler(replace=config.get("replace", True))


def sampler_arrays(state: dict[str, Any] | None, arrays: dict[str, Any]) -> dict[str, Any]:
    """Return the ``state_dict`` a restored sampler loads: its plain state plus its arrays ({} when uniform)."""
    if not state:
        return {}
    return {**state, "leaves": arrays["sampler.priorities"], "generations": arrays["sampler.generations"]}
