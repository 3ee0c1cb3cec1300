"""``clone_object``: copy payloads on push and samples on the way out."""

from __future__ import annotations

from typing import Any

from xreplay.compat.ding.data import fastcopy
from xreplay.compat.ding.dispatch import StringDispatch

__all__ = ["CloneObject", "clone_object"]


class CloneObject(StringDispatch):
    """Middleware that stores a copy of each pushed payload and returns copies of sampled records.

    Copies are :func:`~xreplay.compat.ding.data.fastcopy` copies: deep for
    nested plain lists, dicts, tensors and arrays only.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=2).use(clone_object())
        >>> payload = [1]
        >>> _ = buf.push(payload); payload.append(2)
        >>> buf.sample(1)[0].data
        [1]

    """

    def on_push(self, chain: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Push a copy of ``data``."""
        return chain(fastcopy(data), *args, **kwargs)

    def on_sample(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Return a copy of the sample."""
        return fastcopy(chain(*args, **kwargs))


def clone_object() -> CloneObject:
    """Return a ``CloneObject`` middleware (DI-engine's factory name).

    Returns:
        The middleware.

    """
    return CloneObject()
