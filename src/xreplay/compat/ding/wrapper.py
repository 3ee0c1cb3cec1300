"""``DequeBufferWrapper``: DI-engine's adapter from the old config-driven buffer API to ``DequeBuffer``."""

from __future__ import annotations

from typing import Any

from xreplay.compat.ding.data import BufferedData
from xreplay.compat.ding.deque_buffer import DequeBuffer
from xreplay.compat.ding.middleware.priority import PriorityExperienceReplay
from xreplay.compat.ding.middleware.use_time_check import use_time_check

__all__ = ["DequeBufferWrapper"]

DEFAULT_CONFIG: dict[str, Any] = {
    "replay_buffer_size": 10000,
    "max_use": float("inf"),
    "train_iter_per_log": 100,
    "priority": False,
    "priority_IS_weight": False,
    "priority_power_factor": 0.6,
    "IS_weight_power_factor": 0.4,
    "IS_weight_anneal_train_iter": int(1e5),
    "priority_max_limit": 1000,
}


class DequeBufferWrapper:
    """A ``DequeBuffer`` behind the old buffer API: ``push(list)``, ``sample(size, train_iter)``, ``update(meta)``.

    Optional ``use_time_check`` (``max_use``) and prioritized replay
    (``priority``, ``priority_IS_weight``) come from the config. ``sample``
    returns the payloads (with ``data['IS']`` when IS weights are on) or
    ``None`` when the buffer holds too little; ``update`` writes
    ``min(priority_max_limit, p)`` back to the last sample's records.

    Args:
        cfg: Config mapping; missing keys take :data:`DEFAULT_CONFIG`.
        tb_logger: Accepted for DI-engine's signature; unused.
        exp_name: Accepted for DI-engine's signature; unused.
        instance_name: Accepted for DI-engine's signature; unused.

    Example:
        >>> w = DequeBufferWrapper({"replay_buffer_size": 4})
        >>> w.push([{"x": 1}, {"x": 2}])
        >>> w.count(), w.sample(3, train_iter=0)
        (2, None)

    """

    def __init__(
        self,
        cfg: Any,
        tb_logger: Any = None,
        exp_name: str = "default_experiment",
        instance_name: str = "buffer",
    ) -> None:
        self.cfg = {**DEFAULT_CONFIG, **dict(cfg)}
        self.name = f"{instance_name}_buffer"
        self.buffer = DequeBuffer(size=self.cfg["replay_buffer_size"])
        if self.cfg["max_use"] != float("inf"):
            self.buffer.use(use_time_check(self.buffer, max_use=self.cfg["max_use"]))
        if self.cfg["priority"]:
            self.buffer.use(
                PriorityExperienceReplay(
                    self.buffer,
                    IS_weight=self.cfg["priority_IS_weight"],
                    priority_power_factor=self.cfg["priority_power_factor"],
                    IS_weight_power_factor=self.cfg["IS_weight_power_factor"],
                    IS_weight_anneal_train_iter=self.cfg["IS_weight_anneal_train_iter"],
                )
            )
        self.last_sample_index: list[str] | None = None
        self.last_sample_meta: list[dict] | None = None

    def sample(self, size: int, train_iter: int, sample_range: slice | None = None) -> list | None:
        """Return ``size`` payloads, or ``None`` when the buffer holds fewer."""
        output: list[BufferedData] = self.buffer.sample(  # type: ignore[assignment]  # flat without groupby
            size=size, ignore_insufficient=True, sample_range=sample_range
        )
        if not output:
            return None
        if self.cfg["priority_IS_weight"]:
            for record in output:
                record.data["IS"] = record.meta["priority_IS"]
        self.last_sample_index = [r.index for r in output]
        self.last_sample_meta = [r.meta for r in output]
        return [r.data for r in output]

    def push(self, data: list, cur_collector_envstep: int = -1) -> None:
        """Push each payload of ``data`` (a payload's ``'priority'`` key becomes its priority)."""
        for item in data:
            meta: dict = {}
            if self.cfg["priority"] and "priority" in item:
                meta["priority"] = item.pop("priority")
            self.buffer.push(item, meta=meta)

    def update(self, meta: dict) -> None:
        """Write ``meta['priority']`` (capped at ``priority_max_limit``) to the last sampled records."""
        if not self.cfg["priority"] or self.last_sample_meta is None or self.last_sample_index is None:
            return
        for record_meta, priority in zip(self.last_sample_meta, meta["priority"], strict=False):
            record_meta["priority"] = min(self.cfg["priority_max_limit"], priority)
        for index, record_meta in zip(self.last_sample_index, self.last_sample_meta, strict=False):
            self.buffer.update(index, data=None, meta=record_meta)
        self.last_sample_index = self.last_sample_meta = None

    def count(self) -> int:
        """Return the number of stored records."""
        return self.buffer.count()

    def clear(self) -> None:
        """Remove every record."""
        self.buffer.clear()

    def save_data(self, file_name: str) -> None:
        """Save the buffer to ``file_name``."""
        self.buffer.save_data(file_name)

    def load_data(self, file_name: str) -> None:
        """Load the buffer from ``file_name``."""
        self.buffer.load_data(file_name)
