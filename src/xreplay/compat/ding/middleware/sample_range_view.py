"""``sample_range_view``: restrict sampling to a positional range of the buffer."""

from __future__ import annotations

from typing import Any

from xreplay.compat.ding.dispatch import StringDispatch

__all__ = ["SampleRangeView", "sample_range_view"]


class SampleRangeView(StringDispatch):
    """Middleware that samples only storage positions ``start:end``.

    Negative bounds count from the buffer's capacity (``size + value``), as
    DI-engine does. Only positional sample arguments are forwarded (caller
    keywords are dropped, as in DI-engine).

    Args:
        buffer_: The buffer whose ``size`` resolves negative bounds.
        start: First position, or ``None``.
        end: Position after the last, or ``None``.

    Raises:
        AssertionError: both bounds are ``None``.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=4)
        >>> _ = [buf.push(x) for x in range(4)]
        >>> view = buf.view().use(sample_range_view(buf, start=-1))
        >>> [d.data for d in view.sample(1)]
        [3]

    """

    def __init__(self, buffer_: Any, start: int | None = None, end: int | None = None):
        if start is None and end is None:
            raise AssertionError("sample_range_view needs start or end")
        if start and start < 0:
            start = buffer_.size + start
        if end and end < 0:
            end = buffer_.size + end
        self.sample_range = slice(start, end)

    def on_sample(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Sample within the range, forwarding positional arguments only."""
        return chain(*args, sample_range=self.sample_range)


def sample_range_view(buffer_: Any, start: int | None = None, end: int | None = None) -> SampleRangeView:
    """Return a ``SampleRangeView`` middleware.

    Args:
        buffer_: The buffer whose ``size`` resolves negative bounds.
        start: First position, or ``None``.
        end: Position after the last, or ``None``.

    Returns:
        The middleware.

    """
    return SampleRangeView(buffer_, start, end)
