"""``StringDispatch``: DI-engine's middleware calling convention over xreplay's typed hooks."""

from __future__ import annotations

from typing import Any

from xreplay.middleware import Hook

__all__ = ["StringDispatch"]


class StringDispatch:
    """Mixin giving a typed middleware DI-engine's calling convention.

    DI-engine calls a middleware as ``mw(action, chain, *args, **kwargs)``;
    this mixin dispatches that call to ``mw.on_<action>(chain, ...)`` and
    passes actions without a hook straight to ``chain``. xreplay's pipeline
    (:func:`xreplay.middleware.compose`) calls the ``on_<action>`` hooks
    directly, so the same object works in both.

    Example:
        >>> class Double(StringDispatch):
        ...     def on_sample(self, chain, *args, **kwargs):
        ...         return 2 * chain(*args, **kwargs)
        >>> Double()("sample", lambda n: n, 3), Double()("push", lambda n: n, 3)
        (6, 3)

    """

    def __call__(self, action: str, chain: Hook, *args: Any, **kwargs: Any) -> Any:
        """Dispatch ``action`` to its hook, or pass it through."""
        hook = getattr(self, "on_" + action, None)
        if hook is None:
            return chain(*args, **kwargs)
        return hook(chain, *args, **kwargs)
