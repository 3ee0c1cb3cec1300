"""The state of a TransitionBuffer as plain data and arrays, and the checks a state passes before it is adopted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xreplay.buffers.next_obs import NextObsStore
from xreplay.buffers.priority_updates import check_last_sample
from xreplay.errors import ArgumentError
from xreplay.random_state import generator_from_state, generator_state
from xreplay.samplers.base import Sampler
from xreplay.storage.columns import ColumnStorage
from xreplay.writers import RingWriter

__all__ = ["check_transition_state", "transition_state"]


def transition_state(
    writer: RingWriter,
    rng: np.random.Generator,
    sampler: Sampler,
    last: tuple[np.ndarray, np.ndarray] | None,
    store: NextObsStore | None,
    storage: ColumnStorage,
) -> dict[str, Any]:
    """Return a transition buffer's state from its parts (arrays are views, the rest plain data)."""
    return {
        "writer": writer.state_dict(),
        "rng": generator_state(rng),
        "sampler": sampler.state_dict(),
        "last_sample": None if last is None else {"indices": last[0], "generations": last[1]},
        "next": None if store is None else store.state_dict(),
        "storage": storage.state_dict(),
    }


def check_transition_state(
    state: Mapping[str, Any], storage: ColumnStorage, next_obs_from: str | None, stream: str | None
) -> tuple[np.random.Generator, tuple[np.ndarray, np.ndarray] | None, NextObsStore | None]:
    """Check every part of ``state`` but the sampler's against a buffer; return its generator, last sample, store.

    Raises:
        ArgumentError: A part is missing or does not fit (capacity, shapes, slots out of range).
    """
    missing = [k for k in ("writer", "rng", "sampler", "storage") if k not in state]
    if missing:
        raise ArgumentError(f"transition buffer state lacks {missing}; expected the keys of state_dict()")
    rng = generator_from_state(state["rng"])
    RingWriter(storage.capacity).load_state_dict(state["writer"])  # checks it
    last = check_last_sample(state.get("last_sample"), storage.capacity)
    store = None
    if state.get("next") is not None:
        if next_obs_from is None:
            raise ArgumentError("transition buffer state has next observations; this buffer has no next_obs_from")
        pairs = [(str(a), str(b)) for a, b in state["next"]["pairs"]]
        store = NextObsStore(storage.capacity, pairs, streams=stream is not None)
        store.load_state_dict(state["next"])
    storage.check_state_dict(state["storage"])
    return rng, last, store
