"""NextObsStore: next observations stored once, as the observations of the items that follow.

A transition's next observation is usually the observation of the next
transition of the same environment. :class:`NextObsStore` keeps it only where
it is not: a transition reads its next observation from its *successor*'s
observation field, unless the two differ (an episode end), in which case the
next observation is kept in a small side store keyed by slot. The newest
transition of each stream, whose successor is not written yet, holds its next
observation apart (*pending*) until the successor arrives and is compared with
it. The decision compares the values themselves, so reads give exactly what
was written, whatever the episode boundaries or the order of the writes.

Without streams the successor of a slot is the next slot of the ring, which is
right when one environment writes in time order. With a *stream* field (an
integer per transition naming its environment, e.g. ``env_id`` of a vector
environment) the successor is the next transition of the same stream, kept in
one int32 per slot, so interleaved environments keep the saving too.

A successor is always written after its predecessor, so in a FIFO ring it is
overwritten after it: a live transition never loses its successor.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xreplay.buffers.next_obs_checks import check_side_rows, check_stream_links
from xreplay.errors import ArgumentError, FieldValueError

__all__ = ["MAX_STREAMS", "NextObsStore"]

MAX_STREAMS = 2**20  # stream ids lie in [0, MAX_STREAMS)


class NextObsStore:
    """The next observations of a buffer that stores them once (see the module docstring).

    Args:
        capacity: Slots of the buffer.
        pairs: ``(next field, obs field)`` pairs, e.g. ``[("next_obs", "obs")]``.
        streams: Whether writes carry stream ids (successors then follow each stream).
    """

    def __init__(self, capacity: int, pairs: list[tuple[str, str]], streams: bool = False):
        """Track ``capacity`` slots for ``(next field, obs field)`` pairs."""
        self.capacity = capacity
        self.pairs = pairs
        self.slot_row = np.full(capacity, -1, dtype=np.int32)  # side row of each slot, -1: read the successor
        self.values: dict[str, np.ndarray] = {}  # next field -> [rows, *item]
        self.free = np.zeros(0, dtype=np.int32)  # free side rows (a stack)
        self.rows = 0  # side rows allocated
        self.newest = -1  # without streams: slot of the newest item, whose next observation is ``pending``
        self.pending: dict[str, np.ndarray] = {}
        self.expected = {name for name, _obs in pairs}
        self.dtypes: dict[str, np.dtype] = {}  # obs field -> numpy dtype, filled on first use
        self.streams = streams
        # With streams: each slot's successor (-1: side entry or pending), and per stream id the slot of its
        # newest item (-1: none) and that item's pending next observation.
        self.successor = np.full(capacity if streams else 0, -1, dtype=np.int32)
        self.stream_newest = np.zeros(0, dtype=np.int64)
        self.stream_pending: dict[str, np.ndarray] = {}
        self._warned_apart = False  # the warning that interleaved writes lose the saving was given
        self._side_rows_seen = 0  # side rows when the warning was last considered

    def warn_if_apart(self, stored: int, source: str | None) -> None:
        """Warn once when most next observations are kept apart (interleaved streams without stream ids).

        Looked at only when the side store has grown (it doubles), so a write costs one comparison.
        """
        if self.rows == self._side_rows_seen:
            return
        self._side_rows_seen = self.rows
        if self._warned_apart or self.streams or stored < 64 or 2 * len(self) <= stored:
            return
        self._warned_apart = True
        warnings.warn(
            f"TransitionBuffer(next_obs_from={source!r}): {len(self)} of {stored} next observations differ from "
            f"the following slot's observation and are stored apart, so storing them once saves nothing; if "
            f"several environments write interleaved, pass stream='<env id field>'",
            RuntimeWarning,
            stacklevel=4,
        )

    def __len__(self) -> int:
        """Return the number of slots whose next observation is kept apart (side store and pending)."""
        if self.streams:
            return int(self.rows - self.free.shape[0]) + int(np.count_nonzero(self.stream_newest >= 0))
        return int(self.rows - self.free.shape[0]) + (self.newest >= 0)

    def nbytes(self) -> int:
        """Return the bytes held by the side store, its slot index and the stream tables."""
        tables = self.successor.nbytes + self.stream_newest.nbytes + sum(v.nbytes for v in self.stream_pending.values())
        return int(self.slot_row.nbytes + self.free.nbytes + sum(v.nbytes for v in self.values.values()) + tables)

    # -- validation (nothing changes) ----------------------------------------------

    # -- side store -------------------------------------------------------------

    def release(self, slots: np.ndarray) -> None:
        """Free the side rows of ``slots`` (about to be overwritten)."""
        rows = self.slot_row[slots]
        rows = rows[rows >= 0]
        if rows.size:
            self.free = np.concatenate([self.free, rows])
            self.slot_row[slots] = -1

    def keep(self, slots: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Store ``values[next field]`` (one row per slot) as the next observations of ``slots``."""
        n = slots.shape[0]
        if n == 0:
            return
        if self.free.shape[0] < n:
            self._grow(n - self.free.shape[0], values)
        rows, self.free = self.free[-n:], self.free[:-n]
        self.slot_row[slots] = rows
        for name, _obs in self.pairs:
            self.values[name][rows] = values[name]

    def _grow(self, extra: int, values: Mapping[str, np.ndarray]) -> None:
        """Add at least ``extra`` side rows (doubling), shaped like ``values``."""
        new = max(extra, self.rows, 16)
        for name, _obs in self.pairs:
            item = values[name].shape[1:]
            grown = np.zeros((self.rows + new, *item), dtype=values[name].dtype)
            if name in self.values:
                grown[: self.rows] = self.values[name]
            self.values[name] = grown
        self.free = np.concatenate([self.free, np.arange(self.rows + new - 1, self.rows - 1, -1, dtype=np.int32)])
        self.rows += new

    def _link(
        self, before: np.ndarray, after: np.ndarray, previous: Mapping[str, np.ndarray], obs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """Return, per pair, whether ``previous`` (the next observations of ``before``) differ from ``obs``.

        ``obs`` are the observations of the items ``after`` that follow them.
        """
        differs = np.zeros(before.shape[0], dtype=bool)
        for name, o in self.pairs:
            differs |= (previous[name] != obs[o]).reshape(before.shape[0], -1).any(axis=1)
        return differs

    # -- writes -------------------------------------------------------------------

    def write(
        self,
        start: int,
        n: int,
        obs: Mapping[str, np.ndarray],
        nxt: Mapping[str, np.ndarray],
        streams: np.ndarray | None = None,
    ) -> None:
        """Record a write of ``n`` consecutive slots from ``start`` (ring order) of ``obs`` and their next ones.

        Args:
            start: Slot of the first item written.
            n: Items written (at most the capacity).
            obs: Obs field -> ``[n, *item]`` values written.
            nxt: Next field -> ``[n, *item]`` next observations.
            streams: With streams, the stream id of each item (int64, checked by :meth:`check_streams`).
        """
        if self.streams:
            assert streams is not None
            self._write_streams(start, n, obs, nxt, streams)
            return
        capacity = self.capacity
        if n == 1:
            row = self.slot_row[start]
            if row >= 0:
                self.release(np.array([start]))
        else:
            self.release((start + np.arange(n)) % capacity)
        newest = self.newest
        if newest >= 0 and (newest - start) % capacity >= n:  # the previous newest survives: compare it
            if not all((self.pending[name] == obs[o][0]).all() for name, o in self.pairs):
                self.keep(np.array([newest]), {name: self.pending[name][None] for name, _o in self.pairs})
        if n > 1 and not all((nxt[name][:-1] == obs[o][1:]).all() for name, o in self.pairs):
            differs = np.zeros(n - 1, dtype=bool)
            for name, o in self.pairs:
                differs |= (nxt[name][:-1] != obs[o][1:]).reshape(n - 1, -1).any(axis=1)
            if differs.any():
                kept = np.flatnonzero(differs)
                self.keep((start + kept) % capacity, {name: nxt[name][kept] for name, _o in self.pairs})
        self.newest = (start + n - 1) % capacity
        self.pending = {name: np.array(nxt[name][-1]) for name, _o in self.pairs}  # a copy, 0-d for scalars

    def check_streams(self, name: str, values: Any, n: int) -> np.ndarray:
        """Return the stream ids of a write as int64 ``[n]`` after checking them; nothing changes.

        Raises:
            FieldValueError: An id is not an integer in ``[0, MAX_STREAMS)``, or their count is not ``n``.
        """
        ids = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        ids = ids.reshape(-1)
        if ids.shape[0] != n or (ids.size and ids.dtype.kind not in "iu"):
            raise FieldValueError(
                f"field {name!r}: expected one integer stream id per transition ({n}), received "
                f"{ids.shape[0]} values of dtype {ids.dtype}"
            )
        ids = ids.astype(np.int64, copy=False)
        if ids.size and (ids.min() < 0 or ids.max() >= MAX_STREAMS):
            bad = int(ids[(ids < 0) | (ids >= MAX_STREAMS)][0])
            raise FieldValueError(f"field {name!r}: stream id {bad} is outside [0, {MAX_STREAMS})")
        return ids

    def _write_streams(
        self, start: int, n: int, obs: Mapping[str, np.ndarray], nxt: Mapping[str, np.ndarray], ids: np.ndarray
    ) -> None:
        """Record a write whose items belong to the streams ``ids``: link each item to its stream's next one."""
        capacity = self.capacity
        slots = (start + np.arange(n)) % capacity
        self.release(slots)
        self.successor[slots] = -1
        self._grow_streams(int(ids.max()) + 1, nxt)
        newest = self.stream_newest
        overwritten = (newest >= 0) & ((newest - start) % capacity < n)  # their item is gone: nothing to link
        newest[overwritten] = -1
        order = np.argsort(ids, kind="stable")  # items of one stream together, in write order
        sorted_ids = ids[order]
        first = np.ones(n, dtype=bool)
        first[1:] = sorted_ids[1:] != sorted_ids[:-1]
        last = np.ones(n, dtype=bool)
        last[:-1] = first[1:]
        # Items followed by an item of the same stream in this write.
        before, after = order[~last], order[~first]
        if before.size:
            previous = {name: value[before] for name, value in nxt.items()}
            differs = self._link(before, after, previous, {o: obs[o][after] for _n, o in self.pairs})
            self.successor[slots[before[~differs]]] = slots[after[~differs]]
            kept = before[differs]
            self.keep(slots[kept], {name: nxt[name][kept] for name, _o in self.pairs})
        # Each stream's first item in this write follows that stream's pending item, if it survives.
        heads = order[first]
        streams = ids[heads]
        waiting = newest[streams] >= 0
        if waiting.any():
            heads, streams = heads[waiting], streams[waiting]
            previous_slots = newest[streams]
            previous = {name: self.stream_pending[name][streams] for name, _o in self.pairs}
            differs = self._link(previous_slots, heads, previous, {o: obs[o][heads] for _n, o in self.pairs})
            self.successor[previous_slots[~differs]] = slots[heads[~differs]]
            self.keep(previous_slots[differs], {name: value[differs] for name, value in previous.items()})
        # Each stream's last item in this write is now its pending one.
        tails = order[last]
        newest[ids[tails]] = slots[tails]
        for name, _o in self.pairs:
            self.stream_pending[name][ids[tails]] = nxt[name][tails]

    def _grow_streams(self, count: int, like: Mapping[str, np.ndarray]) -> None:
        """Make the stream tables hold at least ``count`` stream ids."""
        have = self.stream_newest.shape[0]
        if count <= have:
            return
        size = max(count, 2 * have, 8)
        self.stream_newest = np.concatenate([self.stream_newest, np.full(size - have, -1, dtype=np.int64)])
        for name, _o in self.pairs:
            grown = np.zeros((size, *like[name].shape[1:]), dtype=like[name].dtype)
            if name in self.stream_pending:
                grown[:have] = self.stream_pending[name]
            self.stream_pending[name] = grown

    # -- reads ------------------------------------------------------------------------

    def read(self, storage: Any, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """Return the next observations of ``slots``: successors' observations, side entries where kept."""
        if self.streams:
            return self._read_streams(storage, slots)
        following = (slots + 1) % self.capacity
        gathered = storage.gather(following, [o for _n, o in self.pairs])
        rows = self.slot_row[slots]
        side = np.flatnonzero(rows >= 0)
        newest = np.flatnonzero(slots == self.newest)
        out = {}
        for name, o in self.pairs:
            value = gathered[o]
            if side.size:
                kept = torch.from_numpy(self.values[name][rows[side]]).to(value.device)
                value[torch.from_numpy(side).to(value.device)] = kept
            if newest.size:
                value[torch.from_numpy(newest).to(value.device)] = torch.from_numpy(self.pending[name]).to(value.device)
            out[name] = value
        return out

    def _read_streams(self, storage: Any, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """Read next observations by following each slot's successor link (side entries and pending apart)."""
        following = self.successor[slots]
        gathered = storage.gather(np.maximum(following, 0).astype(np.int64), [o for _n, o in self.pairs])
        rows = self.slot_row[slots]
        side = np.flatnonzero(rows >= 0)
        open_ = np.flatnonzero((following < 0) & (rows < 0))  # the newest item of its stream
        live = np.flatnonzero(self.stream_newest >= 0)
        if open_.size and not live.size:
            open_ = open_[:0]  # only slots never written: they read whatever the ring holds, as without streams
        if open_.size:
            by_slot = np.argsort(self.stream_newest[live])
            position = np.searchsorted(self.stream_newest[live][by_slot], slots[open_])
            stream_of = live[by_slot][np.minimum(position, live.size - 1)]
        out = {}
        for name, o in self.pairs:
            value = gathered[o]
            if side.size:
                kept = torch.from_numpy(self.values[name][rows[side]]).to(value.device)
                value[torch.from_numpy(side).to(value.device)] = kept
            if open_.size:
                pending = torch.from_numpy(self.stream_pending[name][stream_of]).to(value.device)
                value[torch.from_numpy(open_).to(value.device)] = pending
            out[name] = value
        return out

    # -- state ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return the store's state: counters as plain data, its tables as numpy arrays (not copies)."""
        state: dict[str, Any] = {
            "pairs": [list(pair) for pair in self.pairs],
            "rows": int(self.rows),
            "newest": int(self.newest),
            "slot_row": self.slot_row,
            "free": self.free,
            "values": {name: self.values[name] for name, _o in self.pairs if name in self.values},
            "pending": {name: self.pending[name] for name, _o in self.pairs if name in self.pending},
        }
        if self.streams:
            state["streams"] = {
                "successor": self.successor,
                "stream_newest": self.stream_newest,
                "pending": {name: self.stream_pending[name] for name, _o in self.pairs if name in self.stream_pending},
            }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt a state from :meth:`state_dict` (same pairs and capacity); on any error nothing changes.

        Raises:
            ArgumentError: The state is for other pairs, or its slot index and free rows do not share the
                side rows (each once), or a table has the wrong shape.
        """
        pairs = [tuple(pair) for pair in state.get("pairs", [])]
        if pairs != [tuple(pair) for pair in self.pairs]:
            raise ArgumentError(f"next-observation state is for pairs {pairs}, this store has {self.pairs}")
        rows, newest, slot_row, free = check_side_rows(state, self.capacity)
        values = {name: np.array(v) for name, v in state.get("values", {}).items()}
        if any(v.shape[:1] != (rows,) for v in values.values()):
            raise ArgumentError(f"next-observation state 'values' must hold {rows} rows per field")
        streams = state.get("streams")
        if self.streams != (streams is not None):
            raise ArgumentError("next-observation state and store differ on stream ids")
        if streams is not None:
            successor, stream_newest = check_stream_links(streams, self.capacity)
        # Everything is checked: adopt it.
        self.rows, self.newest, self.slot_row, self.free, self.values = rows, newest, slot_row, free, values
        self.pending = {name: np.array(v) for name, v in state.get("pending", {}).items()}
        if streams is not None:
            self.successor, self.stream_newest = successor, stream_newest
            self.stream_pending = {name: np.array(v) for name, v in streams.get("pending", {}).items()}
