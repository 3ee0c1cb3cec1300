"""DI-engine's abstract ``Buffer`` and the ``apply_middleware`` decorator."""

from __future__ import annotations

import abc
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from xreplay.compat.ding import integration
from xreplay.middleware import compose

__all__ = ["Buffer", "apply_middleware"]

F = TypeVar("F", bound=Callable[..., Any])


def apply_middleware(action: str) -> Callable[[F], F]:
    """Route a buffer method through the buffer's middleware (first registered = outermost).

    The call holds the buffer's re-entrant lock, so middleware may call back
    into the buffer and other threads wait for the whole call.

    Args:
        action: The action name passed to string-dispatched middleware
            (``push``, ``sample``, ``update``, ``delete`` or ``clear``).

    Returns:
        A decorator for the method.

    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapped(buffer: Any, *args: Any, **kwargs: Any) -> Any:
            with buffer._lock:
                middleware = buffer._middleware
                if not middleware:
                    return method(buffer, *args, **kwargs)
                # The composed pipeline is cached per action while the list holds the same objects.
                ids = tuple(map(id, middleware))
                cached = buffer._chains.get(action)
                if cached is None or cached[0] != ids:
                    entries = tuple(middleware)  # held, so their ids stay unique while cached
                    cached = (ids, compose(entries, action, functools.partial(method, buffer)), entries)
                    buffer._chains[action] = cached
                return cached[1](*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


class Buffer(abc.ABC):
    """Abstract DI-engine buffer: a capacity, a middleware list and the buffer API.

    Subclasses implement ``push``, ``sample``, ``update``, ``delete``,
    ``save_data``, ``load_data``, ``count``, ``clear`` and ``get``. ``len()``
    and indexing make any buffer a map-style dataset for a torch DataLoader.
    When DI-engine is imported, subclasses are registered as virtual
    subclasses of its ``Buffer`` so its framework accepts them.

    Args:
        size: The capacity.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=4).use(lambda action, chain, *a, **k: chain(*a, **k))
        >>> len(buf._middleware), buf.size
        (1, 4)

    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._middleware: list[Any] = []
        self._lock = threading.RLock()
        self._chains: dict[str, tuple] = {}  # action -> (middleware ids, composed pipeline, middleware)
        integration.register_if_loaded()  # DI-engine may have been imported since

    @abc.abstractmethod
    def push(self, data: Any, meta: dict | None = None) -> Any:
        """Store one item."""

    @abc.abstractmethod
    def sample(self, *args: Any, **kwargs: Any) -> Any:
        """Return a sample of stored items."""

    @abc.abstractmethod
    def update(self, index: str, data: Any = None, meta: dict | None = None) -> bool:
        """Replace an item's data and/or meta."""

    @abc.abstractmethod
    def delete(self, index: Any) -> None:
        """Remove items by index."""

    @abc.abstractmethod
    def save_data(self, file_name: str) -> None:
        """Write the stored items to ``file_name``."""

    @abc.abstractmethod
    def load_data(self, file_name: str) -> None:
        """Replace the stored items by those in ``file_name``."""

    @abc.abstractmethod
    def count(self) -> int:
        """Return the number of stored items."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every item."""

    @abc.abstractmethod
    def get(self, idx: int) -> Any:
        """Return the item at storage position ``idx``."""

    def use(self, func: Callable[..., Any]) -> Buffer:
        """Append ``func`` to the middleware list and return this buffer (chainable)."""
        self._middleware.append(func)
        return self

    def view(self) -> Buffer:
        """Return ``copy.copy(self)``: a buffer sharing this one's items (see the subclass)."""
        return copy.copy(self)

    def __copy__(self) -> Buffer:
        raise NotImplementedError(f"{type(self).__name__} does not support view()")

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, idx: int) -> Any:
        return self.get(idx)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)  # locks do not pickle; a copy gets its own
        state.pop("_chains", None)  # closures over this buffer; rebuilt on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._chains = {}


integration.register_if_loaded(Buffer)
