"""Full-state snapshots of every buffer kind, compared bit for bit to prove a refused call changed nothing.

A snapshot holds the stored bytes, counters, cursors, sampler and priority state and the states of
every random generator a buffer or its compat layer draws from (its own generator, numpy's global
one, Python's ``random``). Two snapshots compare equal only when every array is bit-identical.
"""

from __future__ import annotations

import pickle
import random
from typing import Any

import numpy as np
import torch

from xreplay.buffers.episode_writer import EpisodeWriter
from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.buffers.transitions import TransitionBuffer
from xreplay.compat.ding import DequeBuffer
from xreplay.compat.pymarl import EpisodeBatch, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.samplers.prioritized import PrioritizedSampler


def _bytes(value: Any) -> Any:
    """Return a comparable, bit-exact form of arrays and tensors (nested containers walked)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return ("tensor", str(value.dtype), tuple(value.shape), value.contiguous().view(torch.uint8).numpy().tobytes()
                if value.numel() else b"")
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, np.ascontiguousarray(value).tobytes())
    if isinstance(value, dict):
        return tuple(sorted((str(k), _bytes(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_bytes(v) for v in value)
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


def global_rngs() -> tuple:
    """Return the states of numpy's global generator and Python's ``random``."""
    return _bytes(np.random.get_state()), random.getstate()


def _prioritized(sampler: PrioritizedSampler) -> tuple:
    state = sampler.state_dict()
    return _bytes(state), _bytes(sampler.tree.sums), _bytes(sampler.tree.mins)


def _next_store(store: Any) -> tuple:
    if store is None:
        return ()
    fields = ("slot_row", "values", "free", "rows", "newest", "pending", "dtypes", "successor", "stream_newest",
              "stream_pending")
    return tuple(_bytes(getattr(store, name, None)) for name in fields)


def episode_buffer(buffer: EpisodeBuffer) -> tuple:
    """Return the full state of an :class:`EpisodeBuffer`."""
    storage = buffer.storage
    return (
        _bytes(storage.rows),
        tuple((c.name, str(c.dtype), c.offset, c.mask) for c in storage.layout.columns.values()),
        _bytes(buffer._host_lengths),
        _bytes(buffer.writer.state_dict()),
        _bytes(buffer.rng.bit_generator.state),
    )


def episode_writer(writer: EpisodeWriter) -> tuple:
    """Return the full state of an :class:`EpisodeWriter` and of its buffer."""
    return _bytes(writer._staged), writer.step, episode_buffer(writer.buffer)


def transition_buffer(buffer: TransitionBuffer) -> tuple:
    """Return the full state of a :class:`TransitionBuffer`."""
    sampler = _prioritized(buffer.sampler) if isinstance(buffer.sampler, PrioritizedSampler) else ()
    return (
        tuple((name, spec.shape, str(spec.dtype)) for name, spec in buffer.storage.specs.items()),
        _bytes(dict(buffer.storage.columns)),
        _bytes(buffer.writer.state_dict()),
        _bytes(buffer.rng.bit_generator.state),
        sampler,
        _next_store(buffer._next),
        _bytes(buffer._last_sample),
        getattr(buffer, "_warned_apart", False),
    )


def pymarl(batch: EpisodeBatch) -> tuple:
    """Return the full state of a PyMARL ``EpisodeBatch``, ``ReplayBuffer`` or ``PrioritizedReplayBuffer``."""
    storage = batch._storage
    state: list[Any] = [
        batch.batch_size,
        batch.max_seq_length,
        list(batch.scheme),
        _bytes(storage.rows) if storage is not None else None,
        tuple((c.name, str(c.dtype), c.offset, c.mask) for c in storage.layout.columns.values()) if storage else (),
        global_rngs(),
    ]
    if isinstance(batch, ReplayBuffer):
        state += [_bytes(batch._writer.state_dict()), batch.buffer_size]
    if isinstance(batch, PrioritizedReplayBuffer):
        state += [_prioritized(batch._sampler), batch.beta, _bytes(batch._last_sample)]
    return tuple(state)


def ding(buffer: DequeBuffer) -> tuple:
    """Return the full state of a DI-engine ``DequeBuffer`` and its ``PriorityExperienceReplay`` middleware."""
    store = buffer._store
    records = [None if r is None else (r.index, pickle.dumps((r.data, r.meta))) for r in store.items]
    state: list[Any] = [
        records,
        _bytes(store.generation),
        _bytes(store.order),
        _bytes(store.where),
        store.head,
        store.count,
        store.version,
        list(store._free),
        store._fresh,
        pickle.dumps({k: list(v) for k, v in buffer.meta_index.items()}),
        global_rngs(),
    ]
    for middleware in buffer._middleware:
        priorities = getattr(middleware, "_priorities", None)
        if priorities is not None:
            priorities.flush()  # collected leaf writes are part of the state: apply them (changes no result)
            state += [
                _prioritized(priorities.sampler),
                priorities.total(),
                _bytes(middleware._entered),
                middleware.max_priority,
                middleware.IS_weight_power_factor,
            ]
    return tuple(state)


def of(obj: Any) -> tuple:
    """Return the full state of any buffer kind (or episode writer)."""
    if isinstance(obj, EpisodeWriter):
        return episode_writer(obj)
    if isinstance(obj, EpisodeBuffer):
        return episode_buffer(obj)
    if isinstance(obj, TransitionBuffer):
        return transition_buffer(obj)
    if isinstance(obj, EpisodeBatch):
        return pymarl(obj)
    if isinstance(obj, DequeBuffer):
        return ding(obj)
    raise TypeError(f"no snapshot for {type(obj).__name__}")
