"""The checkpoint protocol, and the registry that maps a checkpoint's ``kind`` to the adapter that restores it.

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

Adapters are registered as objects with :func:`register_kind`, together with
the classes they save: the native kinds by :mod:`xreplay.persistence` itself,
the legacy kinds by :mod:`xreplay.compat.pymarl` and :mod:`xreplay.compat.ding`
when they are imported. A checkpoint of a kind nobody registered yet is looked
up among the installed ``xreplay.checkpoint_kinds`` entry points (the package
metadata names the compat adapters there), so ``xreplay.load`` opens any
checkpoint without the caller importing its layer first.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

from xreplay.errors import CheckpointError, CheckpointMismatchError

__all__ = ["ENTRY_POINT_GROUP", "CheckpointAdapter", "adapter_for", "adapter_of_kind", "kind_of", "register_kind"]

ENTRY_POINT_GROUP = "xreplay.checkpoint_kinds"
"""Entry-point group naming adapters (``kind = "module:attribute"``) of kinds registered on import."""


class CheckpointAdapter(Protocol):
    """Saves and restores one kind of object.

    ``restore(meta, arrays, **options)`` returns a new object rebuilt from ``state``'s output; each
    kind names the options it takes (``device``, ``scheme``...).
    """

    kind: str

    def state(self, obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` describing ``obj``."""

    @property
    def restore(self) -> Callable[..., Any]:
        """Return the function that rebuilds an object from ``(meta, arrays, **options)``."""


_KINDS: dict[str, CheckpointAdapter] = {}  # kind -> adapter
_CLASSES: dict[type, str] = {}  # exact class -> kind


def register_kind(adapter: CheckpointAdapter, classes: tuple[type, ...] = ()) -> None:
    """Register ``adapter`` as the saver of exactly ``classes`` and the restorer of its ``kind``.

    Example:
        >>> class Counter:
        ...     value = 0
        >>> class CounterAdapter:
        ...     kind = "example.counter"
        ...     def state(self, obj): return {"structure": {}, "state": {"value": obj.value}}, {}
        ...     def restore(self, meta, arrays): return Counter()
        >>> register_kind(CounterAdapter(), classes=(Counter,))
        >>> adapter_for(Counter()).kind
        'example.counter'
    """
    _KINDS[str(adapter.kind)] = adapter
    for cls in classes:
        _CLASSES[cls] = str(adapter.kind)


def _from_entry_points(kind: str) -> CheckpointAdapter | None:
    """Return the adapter an installed entry point names for ``kind`` (importing it registers it), or None."""
    for point in entry_points(group=ENTRY_POINT_GROUP, name=kind):
        point.load()  # importing the adapter's module registers it (and its classes)
        if kind in _KINDS:
            return _KINDS[kind]
    return None


def adapter_of_kind(kind: str) -> CheckpointAdapter:
    """Return the adapter that restores ``kind``.

    Raises:
        CheckpointMismatchError: No adapter is registered for ``kind``.
    """
    adapter = _KINDS.get(kind) or _from_entry_points(kind)
    if adapter is None:
        raise CheckpointMismatchError(
            f"checkpoint kind {kind!r} is unknown to this xreplay (known: {sorted(_KINDS)}); "
            f"import the module that registers it"
        )
    return adapter


def kind_of(cls: type) -> str:
    """Return the kind registered for exactly ``cls``.

    Raises:
        CheckpointError: ``cls`` has no registered adapter.
    """
    kind = _CLASSES.get(cls)
    if kind is None:
        # A subclass may carry state its parent's adapter does not know (priorities, say): refuse, never drop it.
        raise CheckpointError(
            f"cannot checkpoint a {cls.__name__}: no adapter is registered for exactly this class "
            f"(an adapter of a parent class could silently drop the subclass's state); see register_kind"
        )
    return kind


def adapter_for(obj: Any) -> CheckpointAdapter:
    """Return the adapter that saves ``obj``.

    Raises:
        CheckpointError: ``obj`` is of a type that cannot be checkpointed.
    """
    return _KINDS[kind_of(type(obj))]
