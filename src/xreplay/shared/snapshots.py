"""Copies between a shared buffer and a local one: generator state, ring order, priorities.

A shared buffer is checkpointed by copying its published items, oldest first,
into the local buffer of the same kind, which the existing persistence format
saves; a new learner reopens a checkpoint by writing a loaded local buffer's
items, in the same order, into a new shared buffer. Item ``j`` of that order
lands in slot ``j`` either way, which is how the priorities follow.

Example:
    >>> from xreplay.writers import RingWriter
    >>> ring = RingWriter(4); ring.commit(6)
    >>> ring_order(ring).tolist()
    [2, 3, 0, 1]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.writers import RingWriter

__all__ = ["copy_rng", "fresh_sampler", "ring_order", "snapshot_priorities"]


def copy_rng(source: np.random.Generator, target: Any) -> None:
    """Give ``target.rng`` a generator in ``source``'s exact state (an independent copy)."""
    generator = np.random.Generator(type(source.bit_generator)())
    generator.bit_generator.state = source.bit_generator.state
    target.rng = generator


def ring_order(writer: RingWriter) -> np.ndarray:
    """Return the slots of a local ring's items, oldest first."""
    if writer.size < writer.capacity:
        return np.arange(writer.size, dtype=np.int64)
    return np.concatenate([np.arange(writer.cursor, writer.capacity), np.arange(0, writer.cursor)]).astype(np.int64)


def fresh_sampler(like: PrioritizedSampler, capacity: int) -> PrioritizedSampler:
    """Return an empty prioritized sampler of ``capacity`` slots with ``like``'s settings and tree back end."""
    return PrioritizedSampler(
        capacity,
        alpha=like.alpha,
        beta=like.beta,
        epsilon=like.epsilon,
        stratified=like.stratified,
        backend=like.tree.backend,
    )


def snapshot_priorities(source: PrioritizedSampler, target: PrioritizedSampler, source_slots: np.ndarray) -> None:
    """Give slot ``j`` of ``target`` the priority of slot ``source_slots[j]`` of ``source`` (same alpha).

    The target's slots ``[0, len(source_slots))`` must hold the copied items already; the max priority,
    the beta schedule's step and the stale-update count follow too.
    """
    k = int(source_slots.shape[0])
    target.total()  # flush the target's recorded inserts: they must not overwrite the copied leaves later
    state = target.state_dict()
    leaves = np.array(state["leaves"], dtype=np.float64)
    leaves[:k] = source.priorities(source_slots)
    state.update(
        leaves=leaves,
        max_priority=source.max_priority,
        samples_drawn=source.samples_drawn,
        stale_updates=source.stale_updates,
    )
    target.load_state_dict(state)
