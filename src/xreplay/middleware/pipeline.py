"""An ordered middleware pipeline with typed hooks.

A middleware is any object with some of the hooks ``on_push``, ``on_sample``,
``on_update``, ``on_delete`` and ``on_clear``. Each hook receives ``chain``
(the rest of the pipeline) followed by the caller's arguments exactly as the
caller wrote them, and returns the action's result; calling ``chain`` runs
the next middleware, or the buffer's own method after the last one. The first
middleware in the list is the outermost. A middleware without a hook for an
action is skipped for that action.

A plain callable ``mw(action, chain, *args, **kwargs)`` (the convention of
DI-engine's middleware) is adapted once, in :func:`hook_for`: its hook for
every action is the callable with the action name bound in front. An object
with at least one ``on_<action>`` hook is a typed middleware even when it is
also callable that way, and is skipped for the actions it has no hook for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from xreplay.errors import ArgumentError

__all__ = ["ACTIONS", "Hook", "Middleware", "compose", "hook_for", "run_pipeline"]

ACTIONS = ("push", "sample", "update", "delete", "clear")

Hook = Callable[..., Any]
"""A hook or a chain: ``hook(chain, *args, **kwargs)``, ``chain(*args, **kwargs)``."""


class Middleware(Protocol):
    """What a typed middleware may implement (every hook is optional)."""

    def on_push(self, chain: Hook, *args: Any, **kwargs: Any) -> Any:
        """Wrap a push."""

    def on_sample(self, chain: Hook, *args: Any, **kwargs: Any) -> Any:
        """Wrap a sample."""


def hook_for(entry: Any, action: str) -> Hook | None:
    """Return ``entry``'s hook for ``action``, or ``None`` when it does not take part.

    Args:
        entry: A typed middleware (with ``on_<action>`` methods) or a
            callable ``entry(action, chain, *args, **kwargs)``.
        action: One of :data:`ACTIONS`.

    Returns:
        A callable ``hook(chain, *args, **kwargs)`` or ``None``.

    """
    hook = getattr(entry, "on_" + action, None)
    if hook is not None:
        return hook
    if _is_typed(entry):
        return None  # a typed middleware that does not handle this action
    if callable(entry):
        return lambda chain, *args, **kwargs: entry(action, chain, *args, **kwargs)
    raise ArgumentError(f"middleware {entry!r} is neither callable nor has an on_{action} hook")


def _is_typed(entry: Any) -> bool:
    """Return whether ``entry`` has a hook for any action (then it is called only through its hooks)."""
    return any(getattr(entry, "on_" + action, None) is not None for action in ACTIONS)


def compose(entries: Sequence[Any], action: str, terminal: Hook) -> Hook:
    """Return ``action``'s pipeline over ``entries`` (first = outermost) as one callable ending in ``terminal``.

    Args:
        entries: Middleware in registration order.
        action: The action name.
        terminal: The buffer's own method.

    Returns:
        A callable taking the caller's arguments and returning the outermost middleware's result.

    Example:
        >>> class Double:
        ...     def on_sample(self, chain, *args, **kwargs):
        ...         return 2 * chain(*args, **kwargs)
        >>> compose([Double(), Double()], "sample", lambda n: n)(3), compose([Double()], "push", lambda n: n)(3)
        (12, 3)

    """
    chain = terminal
    for entry in reversed(list(entries)):
        hook = hook_for(entry, action)
        if hook is not None:
            chain = _bind(hook, chain)
    return chain


def run_pipeline(entries: Sequence[Any], action: str, terminal: Hook, args: tuple, kwargs: dict) -> Any:
    """Run ``action`` through ``entries`` (first = outermost), ending in ``terminal``.

    Args:
        entries: Middleware in registration order; read now, so later additions affect later calls.
        action: The action name.
        terminal: The buffer's own method.
        args: Positional arguments as the caller gave them.
        kwargs: Keyword arguments as the caller gave them.

    Returns:
        Whatever the outermost middleware returns.

    """
    return compose(entries, action, terminal)(*args, **kwargs)


def _bind(hook: Hook, chain: Hook) -> Hook:
    """Return a callable that runs ``hook`` with ``chain`` as its continuation."""

    def link(*args: Any, **kwargs: Any) -> Any:
        return hook(chain, *args, **kwargs)

    return link
