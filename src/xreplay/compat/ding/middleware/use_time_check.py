"""``use_time_check``: delete records once they were sampled ``max_use`` times."""

from __future__ import annotations

from typing import Any

import numpy as np

from xreplay.compat.ding.dispatch import StringDispatch
from xreplay.compat.ding.removers import MaxUse

__all__ = ["UseTimeCheck", "use_time_check"]


class UseTimeCheck(StringDispatch):
    """Middleware counting each record's uses, writing ``meta['use_count']`` and deleting worn-out records.

    After the inner sample returns, every returned record (each occurrence
    counts) gets its running count in ``meta['use_count']``; records whose
    count reached ``max_use`` are deleted through ``buffer_.delete`` (the
    buffer's whole middleware chain) and are still returned this time.

    Args:
        buffer_: The buffer to delete from.
        max_use: Uses after which a record is deleted.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=4)
        >>> buf = buf.use(use_time_check(buf, max_use=2))
        >>> _ = [buf.push(x) for x in range(2)]
        >>> _ = buf.sample(2); _ = buf.sample(2)
        >>> buf.count()
        0

    """

    def __init__(self, buffer_: Any, max_use: float = float("inf")):
        self.buffer = buffer_
        self.max_use = max_use
        self._remover = MaxUse(buffer_._store.capacity, max_use)

    def on_sample(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Count uses of the sampled records and delete those that reached ``max_use``."""
        sampled = chain(*args, **kwargs)
        if not sampled:
            return sampled
        records = [r for g in sampled for r in g] if isinstance(sampled[0], list) else sampled
        store = self.buffer._store
        slots = np.fromiter(map(store.slot_of_record, records), dtype=np.int64, count=len(records))
        live = slots >= 0
        live_slots = slots[live]
        counts = np.ones(slots.size, dtype=np.int64)
        due = np.zeros(slots.size, dtype=bool)
        # A slot's count belongs to the record it held: a newer record there counts from zero.
        counts[live], due[live] = self._remover.record(live_slots, store.generation[live_slots])
        for record, count in zip(records, counts.tolist(), strict=False):
            record.meta["use_count"] = count
        gone = list(dict.fromkeys(r.index for r, d in zip(records, due.tolist(), strict=False) if d))
        self.buffer.delete(gone)
        self._remover.reset(slots[live & due])
        return sampled

    def state_dict(self) -> dict:
        """Return the use counts (for ``save_data``)."""
        state = self._remover.state_dict()
        return {"counts": state["counts"], "generation": state["generations"]}

    def load_state_dict(self, state: dict) -> None:
        """Restore use counts saved by :meth:`state_dict`."""
        self._remover.load_state_dict({"counts": state["counts"], "generations": state["generation"]})


def use_time_check(buffer_: Any, max_use: float = float("inf")) -> UseTimeCheck:
    """Return a ``UseTimeCheck`` middleware for ``buffer_``.

    Args:
        buffer_: The buffer to delete from.
        max_use: Uses after which a record is deleted.

    Returns:
        The middleware.

    """
    return UseTimeCheck(buffer_, max_use)
