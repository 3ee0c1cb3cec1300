"""Checkpoints of a shared episode buffer: the ``episode_buffer`` state of a snapshot plus the priorities.

Kind ``shared_episode_buffer``: the metadata and arrays of an
``episode_buffer`` checkpoint (the published episodes, oldest first, in slots
``0..n-1``), and, for a prioritized buffer, the sampler's configuration under
``structure.priorities``, its counters under ``state.priorities`` and the
arrays ``priorities.leaves`` / ``priorities.generations``. Loading checks the
episode part with the ``episode_buffer`` rules and the priority part with its
own, then writes the episodes into a new shared buffer, which is what
:func:`xreplay.persistence.load` returns for this kind.
"""

from __future__ import annotations

from typing import Any

from xreplay.buffers.episodes import EpisodeBuffer
from xreplay.persistence.episode_buffer import EPISODE_BUFFER
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.samplers import check_schedule, decode_schedule, encode_schedule
from xreplay.persistence.schema import Validator
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.shared.episodes import KIND, SharedEpisodeBuffer
from xreplay.shared.snapshots import fresh_sampler, snapshot_priorities

__all__ = ["KIND", "SHARED_EPISODE_BUFFER", "EpisodeCheckpoint", "SharedEpisodeAdapter"]
_GENERATIONS = ("<i4", "<i8", "<u4", "<u8")


class EpisodeCheckpoint:
    """The content of one save: a local snapshot of the episodes and a sampler with their priorities (or None)."""

    def __init__(self, buffer: EpisodeBuffer, priorities: PrioritizedSampler | None):
        """Hold what is saved."""
        self.buffer = buffer
        self.priorities = priorities

    @classmethod
    def of(cls, shared: SharedEpisodeBuffer) -> EpisodeCheckpoint:
        """Return the checkpoint content of ``shared`` (its published episodes, oldest first, and their priorities)."""
        local, kept = shared._snapshot()
        source = shared.sampler
        if source is None:
            return cls(local, None)
        copy = fresh_sampler(source, shared.capacity)
        if kept.size:
            copy.insert_range(0, int(kept.size))
        snapshot_priorities(source, copy, kept)
        return cls(local, copy)

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the ``episode_buffer`` state with the priorities added."""
        meta, arrays = EPISODE_BUFFER.state(self.buffer)
        sampler = self.priorities
        meta["structure"]["priorities"] = None
        if sampler is not None:
            meta["structure"]["priorities"] = {
                "alpha": sampler.alpha,
                "beta": encode_schedule(sampler.beta),
                "epsilon": sampler.epsilon,
                "stratified": sampler.stratified,
            }
            state = sampler.state_dict()
            arrays["priorities.leaves"] = state.pop("leaves")
            arrays["priorities.generations"] = state.pop("generations")
            meta["state"]["priorities"] = state
        return meta, arrays

    @classmethod
    def checkpoint_validate(cls, v: Validator) -> None:
        """Check the metadata: the ``episode_buffer`` rules, then the priority section."""
        EPISODE_BUFFER.validate(v)
        if v.get("structure.priorities") is None:
            return
        v.mapping("structure.priorities")
        v.number("structure.priorities.alpha", low=0.0)
        check_schedule(v, "structure.priorities.beta")
        v.number("structure.priorities.epsilon", low=0.0)
        v.boolean("structure.priorities.stratified")
        v.mapping("state.priorities")
        capacity = v.integer("structure.capacity", low=0, high=2**40)
        v.array_shape("priorities.leaves", (capacity,), "<f8")
        v.array_shape("priorities.generations", (capacity,), _GENERATIONS)

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> SharedEpisodeBuffer:
        """Return a new shared buffer with the checkpoint's episodes and priorities (``options``: as ``__init__``)."""
        local = EPISODE_BUFFER.restore(meta, arrays, device="cpu")
        config = meta["structure"].get("priorities")
        sampler = None
        if config is not None:
            sampler = PrioritizedSampler(
                int(meta["structure"]["capacity"]),
                alpha=config["alpha"],
                beta=decode_schedule(config["beta"]),
                epsilon=config["epsilon"],
                stratified=config["stratified"],
            )
            with Validator(meta.get("path", "the checkpoint"), meta).restoring("state.priorities"):
                sampler.load_state_dict(
                    {
                        **meta["state"]["priorities"],
                        "leaves": arrays["priorities.leaves"],
                        "generations": arrays["priorities.generations"],
                    }
                )
        return SharedEpisodeBuffer.from_buffer(local, priorities=sampler, **options)


class SharedEpisodeAdapter:
    """Saves, checks and restores a :class:`~xreplay.shared.SharedEpisodeBuffer` (kind ``shared_episode_buffer``)."""

    kind = KIND

    def state(self, shared: SharedEpisodeBuffer) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the ``episode_buffer`` state of ``shared``'s published episodes, with their priorities."""
        return EpisodeCheckpoint.of(shared).checkpoint_state()

    def lock(self, shared: SharedEpisodeBuffer) -> Any:
        """Return no lock: the snapshot is taken under the learner's own lock."""
        import contextlib

        return contextlib.nullcontext()

    def validate(self, v: Validator) -> None:
        """Check the metadata (see :meth:`EpisodeCheckpoint.checkpoint_validate`)."""
        EpisodeCheckpoint.checkpoint_validate(v)

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> SharedEpisodeBuffer:
        """Return a new shared buffer holding the checkpoint."""
        return EpisodeCheckpoint.from_checkpoint(meta, arrays, **options)


SHARED_EPISODE_BUFFER = SharedEpisodeAdapter()
register_kind(SHARED_EPISODE_BUFFER, classes=(SharedEpisodeBuffer,))
