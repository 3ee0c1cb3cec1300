"""``staleness_check``: delete records collected too many training iterations ago."""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.compat.ding.dispatch import StringDispatch
from xreplay.compat.ding.removers import Staleness

__all__ = ["StalenessCheck", "staleness_check"]


class StalenessCheck(StringDispatch):
    """Middleware that tags records with staleness and deletes the stale ones before sampling.

    Pushes must pass ``meta=`` by keyword with ``'train_iter_data_collected'``.
    ``sample``'s first positional argument (or keyword
    ``train_iter_sample_data``) is the current training iteration and is not
    forwarded. Every stored record gets ``meta['staleness']``; records with
    staleness strictly above ``max_staleness`` are deleted one by one through
    ``buffer_.delete``.

    Args:
        buffer_: The buffer to scan and delete from.
        max_staleness: Largest staleness kept.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=4)
        >>> buf = buf.use(staleness_check(buf, max_staleness=2))
        >>> _ = buf.push(0, meta={"train_iter_data_collected": 0})
        >>> _ = buf.push(1, meta={"train_iter_data_collected": 1})
        >>> [d.data for d in buf.sample(3, 1)]
        [1]

    """

    def __init__(self, buffer_: Any, max_staleness: float = float("inf")):
        self.buffer = buffer_
        self._staleness = Staleness(max_staleness)

    @property
    def max_staleness(self) -> float:
        """The largest staleness kept."""
        return self._staleness.max_staleness

    def on_push(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Check that ``meta=`` (keyword) holds ``'train_iter_data_collected'``."""
        meta = kwargs.get("meta")
        if meta is None or "train_iter_data_collected" not in meta:
            raise AssertionError(
                "staleness_check needs push(data, meta={'train_iter_data_collected': iter}) with meta as keyword"
            )
        return chain(*args, **kwargs)

    def on_sample(self, chain: Any, train_iter_sample_data: Any, *args: Any, **kwargs: Any) -> Any:
        """Tag staleness, delete stale records, then sample with the remaining arguments."""
        records = list(self.buffer.storage)
        if records:
            collected = np.array([r.meta["train_iter_data_collected"] for r in records])
            staleness = self._staleness.staleness(collected, train_iter_sample_data)
            for record, value in zip(records, staleness.tolist(), strict=False):
                record.meta["staleness"] = value
            for record, due in zip(records, (staleness > self.max_staleness).tolist(), strict=False):
                if due:
                    self.buffer.delete(record.index)
        return chain(*args, **kwargs)


def staleness_check(buffer_: Any, max_staleness: float = float("inf")) -> StalenessCheck:
    """Return a ``StalenessCheck`` middleware for ``buffer_``.

    Args:
        buffer_: The buffer to scan and delete from.
        max_staleness: Largest staleness kept.

    Returns:
        The middleware.

    """
    return StalenessCheck(buffer_, max_staleness)
