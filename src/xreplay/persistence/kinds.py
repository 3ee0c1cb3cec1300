"""The checkpoint protocol, and the registry that maps a checkpoint's ``kind`` to the code that restores it.

A checkpointable object is described by an adapter with three members:

* ``kind``: a stable string stored in ``metadata.json`` (``"episode_buffer"``...);
* ``state(obj) -> (meta, arrays)``: ``meta`` is a JSON-able dict with the keys
  ``"structure"`` (what must match for an incremental save: scheme, layout,
  capacity...), ``"state"`` (counters, cursors, RNG and sampler state...) and
  optionally ``"ring"`` (``{"arrays": [...], "capacity", "cursor", "writes"}``:
  arrays whose leading dimension is a ring of slots written in order, so a
  later save can write only the slots written since); ``arrays`` maps names to
  numpy arrays or torch tensors, which are streamed to disk, never copied;
* ``restore(meta, arrays, **options) -> obj``: the inverse; ``arrays`` are numpy
  arrays (memory-mapped ones when loading with ``mmap``), already checked
  against their sizes and checksums; it checks the array values it relies on
  (lengths, indices...) before building anything.

Optional members:

* ``validate(validator)``: check the kind's rules on the untrusted
  ``metadata.json`` (capacity, shapes, cursors, known names), raising through
  the :class:`~xreplay.persistence.schema.Validator`; runs before any array
  file is opened. Without it only the shared rules apply.
* ``lock(obj)``: the context manager that stops ``obj``'s writers while a save
  copies it (default: ``obj.lock`` when present).
* ``memory_needed(document, mmap) -> int``: bytes ``restore`` allocates besides
  the arrays read, checked against free memory first.
* ``may_run_code``: True when ``restore`` may need to unpickle; it then gets
  the ``trusted`` flag of :func:`~xreplay.persistence.load`.

A class can instead carry the protocol itself: a ``checkpoint_kind`` class
attribute, a ``checkpoint_state()`` method and a ``from_checkpoint(meta,
arrays, **options)`` classmethod. Buffers from other modules plug in with
:func:`register_kind`; adapters are named by import path so nothing is imported
until a checkpoint of that kind is saved or loaded.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from xreplay.errors import CheckpointError, CheckpointMismatchError

__all__ = ["CheckpointAdapter", "adapter_for", "adapter_of_kind", "register_kind"]


class CheckpointAdapter(Protocol):
    """Saves and restores one kind of object."""

    kind: str

    def state(self, obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` describing ``obj``."""

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> Any:
        """Return a new object rebuilt from ``state``'s output."""


class _ClassProtocol:
    """Adapter over a class that implements the protocol itself."""

    def __init__(self, cls: type):
        """Wrap ``cls``."""
        self.cls = cls
        self.kind = str(cls.checkpoint_kind)  # type: ignore[attr-defined]

    def state(self, obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Call ``obj.checkpoint_state()``."""
        return obj.checkpoint_state()  # type: ignore[no-any-return]

    def restore(self, meta: dict[str, Any], arrays: dict[str, Any], **options: Any) -> Any:
        """Call ``cls.from_checkpoint``."""
        return self.cls.from_checkpoint(meta, arrays, **options)  # type: ignore[attr-defined]

    def validate(self, validator: Any) -> None:
        """Call ``cls.checkpoint_validate(validator)`` when the class has it."""
        check = getattr(self.cls, "checkpoint_validate", None)
        if check is not None:
            check(validator)


# kind -> "module:attribute" of a class with the protocol, or of an adapter object.
_KINDS: dict[str, str] = {
    "episode_buffer": "xreplay.persistence.episode_buffer:EPISODE_BUFFER",
    "transition_buffer": "xreplay.persistence.transition_buffer:TRANSITION_BUFFER",
    "memmap_storage": "xreplay.storage.memmap:MemmapStorage",
    "pymarl.prioritized_replay_buffer": "xreplay.compat.pymarl.checkpoint:PRIORITIZED_REPLAY_BUFFER",
    "pymarl.replay_buffer": "xreplay.compat.pymarl.checkpoint:REPLAY_BUFFER",
    "pymarl.episode_batch": "xreplay.compat.pymarl.checkpoint:EPISODE_BATCH",
    "ding.deque_buffer": "xreplay.compat.ding.checkpoint:DEQUE_BUFFER",
}
# "module.QualName" of a class without the protocol -> its kind.
_CLASSES: dict[str, str] = {
    "xreplay.compat.pymarl.replay_buffer.ReplayBuffer": "pymarl.replay_buffer",
    "xreplay.compat.pymarl.prioritized.PrioritizedReplayBuffer": "pymarl.prioritized_replay_buffer",
    "xreplay.compat.pymarl.episode_batch.EpisodeBatch": "pymarl.episode_batch",
    "xreplay.compat.ding.deque_buffer.DequeBuffer": "ding.deque_buffer",
}


def register_kind(kind: str, target: str, classes: tuple[str, ...] = ()) -> None:
    """Register ``target`` (``"module:attribute"``) as the restorer of checkpoints of ``kind``.

    Args:
        kind: The string stored in ``metadata.json``.
        target: A class with the protocol, or an adapter object.
        classes: ``"module.QualName"`` of classes without the protocol that ``target`` saves.
    """
    _KINDS[kind] = target
    for name in classes:
        _CLASSES[name] = kind


def adapter_of_kind(kind: str) -> CheckpointAdapter:
    """Return the adapter that restores ``kind``.

    Raises:
        CheckpointMismatchError: No adapter is registered for ``kind``.
    """
    target = _KINDS.get(kind)
    if target is None:
        raise CheckpointMismatchError(
            f"checkpoint kind {kind!r} is unknown to this xreplay (known: {sorted(_KINDS)}); "
            f"import the module that registers it"
        )
    module, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    return _ClassProtocol(found) if isinstance(found, type) else found  # type: ignore[no-any-return]


def adapter_for(obj: Any) -> CheckpointAdapter:
    """Return the adapter that saves ``obj``.

    Raises:
        CheckpointError: ``obj`` is of a type that cannot be checkpointed.
    """
    if hasattr(type(obj), "checkpoint_kind") and hasattr(obj, "checkpoint_state"):
        return _ClassProtocol(type(obj))
    cls = type(obj)
    kind = _CLASSES.get(f"{cls.__module__}.{cls.__qualname__}")
    if kind is not None:
        return adapter_of_kind(kind)
    # A subclass may carry state its parent's adapter does not know (priorities, say): refuse, never drop it.
    raise CheckpointError(
        f"cannot checkpoint a {cls.__name__}: it has no checkpoint_state() and no adapter registered for "
        f"exactly this class (an adapter of a parent class could silently drop the subclass's state)"
    )
