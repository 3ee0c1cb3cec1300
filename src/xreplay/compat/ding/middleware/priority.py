"""``PriorityExperienceReplay``: DI-engine's prioritized replay middleware over xreplay's prioritized sampler.

Priorities live in one :class:`~xreplay.samplers.PrioritizedSampler` (see
:mod:`xreplay.compat.ding.priorities`, which reproduces DI-engine's float
results on it); this module keeps DI-engine's middleware protocol: the
``priority``/``priority_idx``/``priority_IS`` meta keys, ``buffer_idx``,
``max_priority``, beta annealing and the ``sum_tree``/``min_tree`` attributes.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from xreplay.compat.ding import integration
from xreplay.compat.ding.arguments import check_sample_arguments
from xreplay.compat.ding.dispatch import StringDispatch
from xreplay.compat.ding.middleware.priority_checks import as_float, check_one
from xreplay.compat.ding.middleware.priority_views import EnteredIndices, MinTreeView, SumTreeView
from xreplay.compat.ding.priorities import UPDATE_OFFSET, DingPriorities
from xreplay.errors import (
    ArgumentAssertionError,
    ArgumentError,
    FieldShapeError,
    FieldTypeError,
    InsufficientDataAssertionError,
    UnknownFieldError,
)
from xreplay.samplers.priorities import check_priorities
from xreplay.storage.resources import check_allocation

__all__ = ["PriorityExperienceReplay"]

_PRIORITY_IDX = operator.itemgetter("priority_idx")
_SMALLEST_WEIGHT = float(np.finfo(np.float32).tiny)


class PriorityExperienceReplay(StringDispatch):
    """Proportional prioritized sampling with importance-sampling weights, as a buffer middleware.

    Each record's priority lives in ``meta['priority']`` (default: the largest
    seen so far) and its tree slot in ``meta['priority_idx']``; a record
    takes the storage slot it is stored in, so slots stay right after deletes
    (DI-engine's cycling pivot could overwrite a live record's slot: D4).
    Sampling is stratified with one ``np.random.uniform`` vector draw, then
    fetches the records by index through the rest of the chain; draws and
    weights equal DI-engine's bit for bit (see :mod:`xreplay.compat.ding.priorities`). With
    ``IS_weight`` every returned record gets ``meta['priority_IS']`` and
    ``data['priority_IS']`` (a float32 tensor of shape ``[1]``), and beta
    anneals towards 1 by one step per sample call.

    Args:
        buffer: The buffer this middleware is used on.
        IS_weight: Compute importance-sampling weights.
        priority_power_factor: alpha.
        IS_weight_power_factor: initial beta.
        IS_weight_anneal_train_iter: Number of sample calls over which beta reaches 1.

    Example:
        >>> from xreplay.compat.ding import DequeBuffer
        >>> buf = DequeBuffer(size=4)
        >>> per = PriorityExperienceReplay(buf)
        >>> buf = buf.use(per)
        >>> _ = [buf.push({"x": i}, meta={"priority": 1.0}) for i in range(4)]
        >>> [d.data["x"] for d in buf.sample(4)], len(per.buffer_idx)
        ([0, 1, 2, 3], 4)

    """

    def __new__(cls, *args: Any, **kwargs: Any) -> PriorityExperienceReplay:
        """Create an instance that also passes DI-engine's ``isinstance`` check when DI-engine is imported."""
        return super().__new__(integration.per_class(cls))

    def __init__(
        self,
        buffer: Any,
        IS_weight: bool = True,  # noqa: N803 - DI-engine's keyword names
        priority_power_factor: float = 0.6,
        IS_weight_power_factor: float = 0.4,  # noqa: N803
        IS_weight_anneal_train_iter: int = int(1e5),  # noqa: N803
    ) -> None:
        self.buffer = buffer
        self._entered = np.zeros(buffer._store.capacity, dtype=bool)  # slot holds a record entered in the trees
        self.buffer_idx: Mapping[int, str] = EnteredIndices(self)
        self.buffer_size = buffer.size
        self.IS_weight = IS_weight
        self.priority_power_factor = priority_power_factor
        self.IS_weight_power_factor = IS_weight_power_factor
        self.IS_weight_anneal_train_iter = IS_weight_anneal_train_iter
        self.max_priority = 1.0
        self._priorities = DingPriorities(buffer._store.capacity, priority_power_factor)
        self._last_draw: tuple[list[str], list[int], int] = ([], [], -1)  # index strings, slots, store version
        self.sum_tree = SumTreeView(self._priorities)
        self.min_tree = MinTreeView(self._priorities) if IS_weight else None
        if IS_weight:
            self.delta_anneal = (1 - IS_weight_power_factor) / IS_weight_anneal_train_iter

    @property
    def pivot(self) -> int:
        """The slot the next pushed record will take."""
        return self.buffer._store.peek_slot()

    def on_push(self, chain: Any, data: Any, meta: dict | None = None, *args: Any, **kwargs: Any) -> Any:
        """Attach a priority and slot to the record's meta, push it, and enter it in the trees.

        Raises:
            FieldTypeError: ``meta`` is not a dict, or it is None and ``data`` does not support ``in``
                (a TypeError, as DI-engine's).
            PriorityError: the priority is not a finite real number >= 0, or too large for the sum;
                nothing (``data``, ``meta``) is changed then.
        """
        alpha = self.priority_power_factor
        if meta is None:
            try:
                given = "priority" in data
            except TypeError:
                raise FieldTypeError(
                    f"PriorityExperienceReplay reads 'priority' from a pushed record's data when no meta is "
                    f"given, but data of type {type(data).__name__} does not support 'in'; pass meta={{...}}"
                ) from None
            if given:
                check_one(data["priority"], "<pushed record>", alpha, self._priorities.capacity)
                meta = {"priority": data.pop("priority")}
            else:
                meta = {"priority": self.max_priority}
        elif not isinstance(meta, dict):
            raise FieldTypeError(f"meta of a pushed record must be a dict, received {type(meta).__name__}")
        elif "priority" not in meta:
            meta["priority"] = self.max_priority
        slot = self.buffer._store.peek_slot()
        leaf = check_one(meta["priority"], "<pushed record>", alpha, self._priorities.capacity) ** alpha
        meta["priority_idx"] = slot
        record = chain(data, *args, meta=meta, **kwargs)
        if record is not None and self.buffer._store.items[slot] is record:
            self._priorities.push(slot, leaf)
            self._entered[slot] = True
        return record

    def on_sample(self, chain: Any, size: int | None = None, *args: Any, **kwargs: Any) -> Any:
        """Draw ``size`` records in proportion to priority; attach importance weights.

        The arguments are checked before anything is drawn (DI-engine drew from numpy's global
        generator first, then the buffer refused them).

        Raises:
            ArgumentError: ``size`` is missing (a TypeError, as DI-engine's) or not an int, or
                ``indices`` is passed (PER draws them), or the buffer refuses the other arguments.
            ArgumentAssertionError: the arguments contradict each other (an AssertionError, as DI-engine's).
            InsufficientDataAssertionError: the buffer is empty (an AssertionError, as DI-engine's).
        """
        if "indices" in kwargs:
            raise ArgumentError("PriorityExperienceReplay draws the indices itself; call sample(size) without indices")
        if size is None:
            raise ArgumentError("PriorityExperienceReplay.sample needs size, the number of records to draw")
        if args:  # DI-engine's positional order after size: indices, replace, sample_range, ...
            raise ArgumentError(f"pass sample's other arguments by keyword with PriorityExperienceReplay, not {args!r}")
        check_sample_arguments(
            size, size, kwargs.get("groupby"), kwargs.get("unroll_len"), kwargs.get("sample_range"), self.buffer.count()
        )
        if self.buffer.count() == 0:
            raise InsufficientDataAssertionError(f"cannot sample {size} records: the prioritized buffer is empty")
        # Masses, slots, index strings, copies of repeated records and weights: about 300 bytes per record.
        check_allocation(size * 300, "cpu", lambda: f"a prioritized sample of {size} records", "sample fewer")
        slots = self._priorities.draw(size).tolist()
        store = self.buffer._store
        # A slot with a positive leaf holds the record PER entered there.
        indices = store.index_strings(slots)
        drawn = list(indices)  # kept: the chain may edit the list it is given
        # Lets the buffer skip the index -> slot lookups while the list and the store are unchanged.
        store.slot_hint = (indices, slots, store.version, drawn)
        try:
            sampled = chain(*args, indices=indices, **kwargs)
        finally:
            store.slot_hint = None
        self._last_draw = (drawn, slots, store.version)
        if self.IS_weight and sampled:
            self._attach_weights(sampled)
            self.IS_weight_power_factor = min(1.0, self.IS_weight_power_factor + self.delta_anneal)
        return sampled

    def _attach_weights(self, sampled: list) -> None:
        """Write ``priority_IS`` into the meta and data of every sampled record.

        The float32 tensors of shape ``[1]`` are made with one copy and one
        ``unbind``: each is a view of its own element of one per-sample storage
        (DI-engine makes a separate tensor per record; values, dtype, shape and
        in-place arithmetic behave the same).
        """
        metas = [record.meta for record in sampled]
        slots = np.fromiter(map(_PRIORITY_IDX, metas), dtype=np.int64, count=len(metas))
        weights = self._priorities.weights(slots, self.buffer.count(), self.IS_weight_power_factor)
        stacked = torch.tensor(weights, dtype=torch.float32)
        if weights.size and weights.min() < _SMALLEST_WEIGHT:  # float32 would round them to 0
            stacked.clamp_(min=_SMALLEST_WEIGHT)
        tensors = stacked.view(-1, 1).unbind(0)
        for record, meta, weight, tensor in zip(sampled, metas, weights.tolist(), tensors, strict=True):
            meta["priority_IS"] = weight
            record.data["priority_IS"] = tensor

    def on_update(self, chain: Any, index: str, data: Any, meta: dict, *args: Any, **kwargs: Any) -> None:
        """Update the record, then its priority from ``meta['priority']``; returns ``None``.

        Everything is checked before the record changes (DI-engine replaced the record's meta first,
        then raised). A new meta without ``'priority_idx'`` gets the record's slot (DI-engine raised
        ``KeyError`` after replacing the meta, which left a record that every later sample failed on).

        Raises:
            ArgumentAssertionError: ``meta`` is None for a stored record (an AssertionError, as DI-engine's).
            FieldTypeError: ``meta`` is not a dict (a TypeError, as DI-engine's).
            UnknownFieldError: ``meta`` lacks ``'priority'`` (a KeyError, as DI-engine's).
            ArgumentError: ``meta['priority_idx']`` is not the record's slot.
            PriorityError: the priority is not a finite real number >= 0, or too large for the sum.
        """
        slot = self.buffer._store.slot_of_index(index)
        if slot is not None:
            self._check_update_meta(index, slot, meta)
        if not chain(index, data, meta, *args, **kwargs):
            return None
        priority = meta["priority"]
        if type(priority) is not float:  # checked: a real number, or an array or tensor of one
            priority = as_float(priority)
        priority += UPDATE_OFFSET  # as DI-engine: the leaf is (priority + 1e-5) ** alpha
        self._priorities.set_leaf(slot, priority**self.priority_power_factor)
        self.max_priority = max(self.max_priority, priority)
        return None

    def _check_update_meta(self, index: str, slot: int, meta: Any) -> None:
        """Raise unless ``meta`` is a dict with a valid ``priority`` and this record's ``priority_idx``."""
        if meta is None:
            raise ArgumentAssertionError(
                f"updating record {index!r} with PriorityExperienceReplay needs a meta with its new 'priority'"
            )
        if not isinstance(meta, dict):
            raise FieldTypeError(f"meta of record {index!r} must be a dict, received {type(meta).__name__}")
        if "priority" not in meta:
            raise UnknownFieldError(
                f"meta of record {index!r} lacks 'priority': PriorityExperienceReplay.update sets the record's "
                f"priority from meta['priority']"
            )
        if "priority_idx" in meta and meta["priority_idx"] != slot:
            raise ArgumentError(
                f"meta of record {index!r} has priority_idx {meta['priority_idx']!r}, but the record is in slot "
                f"{slot}: pass back this record's own meta"
            )
        check_one(meta["priority"], index, self.priority_power_factor, self._priorities.capacity, UPDATE_OFFSET)
        meta["priority_idx"] = slot  # checked: a new meta gets the slot its sampled meta would hold

    def update_priorities(self, indices: list[str], priorities: Iterable[float]) -> int:
        """Set many priorities at once (an xreplay extension; one vectorized tree update).

        Stored records whose index is unknown (evicted or deleted) are skipped. Nothing is updated when
        any of the errors below is raised.

        Args:
            indices: Index strings of sampled records.
            priorities: Their new priorities.

        Returns:
            The number of records updated.

        Raises:
            ArgumentError: ``indices`` is a single string, not a list of them.
            FieldShapeError: ``indices`` and ``priorities`` differ in length.
            PriorityError: a priority is not a finite real number >= 0, or too large for the sum.

        """
        if isinstance(indices, str):
            raise ArgumentError("update_priorities takes a list of index strings, received one string")
        with self.buffer._lock:  # not a hooked method: take the buffer's lock as its calls do
            return self._update_priorities(list(indices), priorities)

    def _update_priorities(self, indices: list[str], priorities: Any) -> int:
        """Check, then apply, a batch priority update (the buffer's lock is held)."""
        raw = priorities.detach().cpu().numpy() if isinstance(priorities, torch.Tensor) else priorities
        raw = np.asarray(raw if isinstance(raw, np.ndarray) else list(raw))
        if raw.reshape(-1).shape[0] != len(indices):
            raise FieldShapeError(f"update_priorities got {len(indices)} indices but {raw.size} priorities")
        values = check_priorities(
            raw,
            names=indices,
            alpha=self.priority_power_factor,
            capacity=self.buffer._store.capacity,
            offset=UPDATE_OFFSET,
        )
        store = self.buffer._store
        drawn, drawn_slots, version = self._last_draw
        if version == store.version and len(indices) == len(drawn) and indices == drawn:
            slots = np.array(drawn_slots, dtype=np.int64)  # the last sample's records, unchanged since
        else:
            slots = np.array([-1 if s is None else s for s in store.slots_of_indices(indices)], dtype=np.int64)
        live = slots >= 0
        self._priorities.update_many(slots[live], values[live])
        items = store.items
        for slot, value in zip(slots[live].tolist(), values[live].tolist(), strict=False):
            items[slot].meta["priority"] = value
        if live.any():
            self.max_priority = max(self.max_priority, float(values[live].max()) + UPDATE_OFFSET)
        return int(live.sum())

    def on_delete(self, chain: Any, index: str | Iterable[str], *args: Any, **kwargs: Any) -> Any:
        """Remove the records' slots from the trees (one index or several; unknown ones ignored), then delete."""
        keys = [index] if isinstance(index, str) else list(index)
        store = self.buffer._store
        slots = [s for s in store.slots_of_indices(keys) if s is not None and self._entered[s]]
        self._priorities.clear_slots(slots)
        self._entered[slots] = False
        return chain(keys if not isinstance(index, str) else index, *args, **kwargs)

    def on_clear(self, chain: Any, *args: Any, **kwargs: Any) -> Any:
        """Forget every priority (beta is kept), then clear."""
        self.max_priority = 1.0
        self._priorities.reset()
        self._entered[:] = False
        return chain()

    def state_dict(self) -> dict:
        """Return the priorities, slots, ``max_priority`` and beta."""
        return {
            "max_priority": self.max_priority,
            "IS_weight_power_factor": self.IS_weight_power_factor,
            "buffer_idx": dict(self.buffer_idx),
            "sum_leaves": self.sum_tree.leaves().copy(),
            "min_leaves": None if self.min_tree is None else self.min_tree.leaves().copy(),
        }

    def load_state_dict(self, state: dict, deepcopy: bool = False) -> None:
        """Restore a :meth:`state_dict` (``deepcopy`` is accepted for DI-engine's signature)."""
        self.max_priority = float(state["max_priority"])
        self.IS_weight_power_factor = float(state["IS_weight_power_factor"])
        entered = np.fromiter(state["buffer_idx"], dtype=np.int64)
        self._entered[:] = False
        self._entered[entered] = True
        self._priorities.load(np.asarray(state["sum_leaves"], dtype=np.float64), entered)
