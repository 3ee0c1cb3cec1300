"""PyMARL's ``ReplayBuffer``: a ring of episodes sampled through numpy's global RNG."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from xreplay.buffers.locking import MutationLock, critical_section
from xreplay.compat.pymarl.episode_batch import EpisodeBatch, _Write
from xreplay.compat.pymarl.legacy_choice import legacy_choice
from xreplay.compat.pymarl.transforms import OneHot
from xreplay.errors import ArgumentError, InsufficientDataAssertionError
from xreplay.storage.dtypes import exceeds
from xreplay.storage.resources import as_count
from xreplay.writers import RingWriter, SlotPlan

if TYPE_CHECKING:
    from xreplay.persistence.checkpoint import SaveReport

__all__ = ["ReplayBuffer"]


class ReplayBuffer(EpisodeBatch):
    """PyMARL's episode replay buffer: ``insert_episode_batch``, ``can_sample``, ``sample``.

    Thread-safe: inserts, samples and saves take the buffer's lock for their whole call, so a runner
    thread may insert while a learner thread samples (PyMARL itself does both from one thread).

    Example:
        >>> buf = ReplayBuffer({"reward": {"vshape": (1,)}}, {}, buffer_size=3, max_seq_length=2)
        >>> ep = EpisodeBatch({"reward": {"vshape": (1,)}}, {}, 4, 2)
        >>> buf.insert_episode_batch(ep)
        >>> buf.buffer_index, buf.episodes_in_buffer
        (1, 3)
    """

    def __init__(
        self,
        scheme: dict[str, Any],
        groups: Any,
        buffer_size: int,
        max_seq_length: int,
        preprocess: dict[str, Any] | None = None,
        device: Any = "cpu",
        *,
        compact: bool | None = None,
    ):
        """Allocate ``buffer_size`` episodes of ``scheme``."""
        super().__init__(
            scheme, groups, buffer_size, max_seq_length, preprocess=preprocess, device=device, compact=compact
        )
        self.buffer_size = buffer_size
        self._writer = RingWriter(buffer_size)
        self.lock = MutationLock()  # held by inserts, samples and saves

    @property
    def buffer_index(self) -> int:
        """Return the slot the next episode goes to."""
        return self._writer.cursor

    @buffer_index.setter
    def buffer_index(self, value: int) -> None:
        self._writer.cursor = int(value)

    @property
    def episodes_in_buffer(self) -> int:
        """Return the number of stored episodes."""
        return self._writer.size

    @episodes_in_buffer.setter
    def episodes_in_buffer(self, value: int) -> None:
        self._writer.size = int(value)

    @critical_section
    def insert_episode_batch(self, ep_batch: EpisodeBatch) -> None:
        """Copy the episodes of ``ep_batch`` into the ring, wrapping around and overwriting the oldest.

        A batch with the same layout is copied as whole rows; any other
        batch goes through :meth:`update` field by field. Either way every
        value is checked before anything is written.
        """
        n = self._check_episode_batch(ep_batch)
        plan = self._writer.plan(n)
        if not plan.segments:
            # Nothing is written, but PyMARL still checks the (empty) region's shapes.
            empty = slice(self.buffer_index, self.buffer_index)
            self._plan_update(ep_batch.data.transition_data, empty, slice(0, ep_batch.max_seq_length), False)
            self._plan_update(ep_batch.data.episode_data, empty, slice(None), True)
        elif self._compact and self._insert_compact(ep_batch, plan):
            pass
        elif self._same_layout(ep_batch):
            assert self._storage is not None and ep_batch._storage is not None
            for slot, item, count in plan.segments:
                self._storage.write_rows(slice(slot, slot + count), ep_batch._storage.rows[item : item + count])
        else:
            writes: list[_Write] = []
            for slot, item, count in plan.segments:
                part = slice(item, item + count)
                rows = slice(slot, slot + count)
                transition = {k: v[part] for k, v in ep_batch.data.transition_data.items()}
                episode = {k: v[part] for k, v in ep_batch.data.episode_data.items()}
                writes += self._plan_update(transition, rows, slice(0, ep_batch.max_seq_length), False)
                writes += self._plan_update(episode, rows, slice(None), True)
            self._apply(writes)
        self._writer.commit(n)

    @staticmethod
    def _check_episode_batch(ep_batch: Any) -> int:
        """Return the number of episodes of ``ep_batch`` after checking it is an ``EpisodeBatch`` with an int size.

        Raises:
            ArgumentError: ``ep_batch`` is something else, or has no int ``batch_size`` (a TypeError, as upstream).
        """
        if not isinstance(ep_batch, EpisodeBatch):
            raise ArgumentError(f"insert_episode_batch takes an EpisodeBatch, received {type(ep_batch).__name__}")
        n = ep_batch.batch_size
        if not isinstance(n, int):
            raise ArgumentError(
                f"ep_batch.batch_size must be an int, got {n!r} (a batch indexed with a tensor has no batch size)"
            )
        return n

    def _insert_compact(self, ep_batch: EpisodeBatch, plan: SlotPlan) -> bool:
        """Encode a batch with the same fields into compact storage; False when the general path is needed."""
        storage, theirs = self._storage, ep_batch._storage
        if storage is None or theirs is None or ep_batch._compact or ep_batch.max_seq_length != self.max_seq_length:
            return False
        mine_fields = {k: (f.shape, f.dtype, f.group, f.per_step) for k, f in storage.scheme.items()}
        if mine_fields != {k: (f.shape, f.dtype, f.group, f.per_step) for k, f in theirs.scheme.items()}:
            return False
        if not self._valid_onehot_sources(ep_batch, list(theirs.scheme)):
            return False
        values = {**ep_batch.data.transition_data, **ep_batch.data.episode_data}
        masks = {}
        for name, column in storage.layout.columns.items():
            if column.mask:
                indices = storage.encode_derived(name, values[name])
                if indices is None:
                    return False  # not one-hot: the general path materialises the column
                masks[name] = indices
        stored = {k: v for k, v in values.items() if k not in masks}
        storage.relayout(storage.plan_dtypes(stored))
        for slot, item, count in plan.segments:
            for name, value in {**stored, **masks}.items():
                storage.columns[name][slot : slot + count] = value[item : item + count]
        return True

    def _valid_onehot_sources(self, ep_batch: EpisodeBatch, order: list[str]) -> bool:
        """Return whether copying ``ep_batch`` verbatim equals PyMARL's key-by-key update with preprocess.

        That holds when each one-hot output comes after its source (so the batch's own values win)
        and every source value is a valid class.
        """
        for source, (output, transforms) in self.preprocess.items():
            if not all(isinstance(t, OneHot) for t in transforms):
                return False
            if output in order and source in order and order.index(output) < order.index(source):
                return False
            values = ep_batch.data.transition_data.get(source, ep_batch.data.episode_data.get(source))
            if values is not None and exceeds(values, min(t.out_dim for t in transforms) - 1):
                return False
        return True

    def _same_layout(self, ep_batch: EpisodeBatch) -> bool:
        """Return whether ``ep_batch`` rows can be copied verbatim with PyMARL's results."""
        mine, theirs = self._storage, ep_batch._storage
        if mine is None or theirs is None or self._compact or ep_batch._compact:
            return False
        if mine.layout.columns != theirs.layout.columns or mine.layout.row_bytes != theirs.layout.row_bytes:
            return False
        return self._valid_onehot_sources(ep_batch, list(theirs.scheme))

    def can_sample(self, batch_size: int) -> bool:
        """Return whether ``batch_size`` episodes are stored."""
        return self.episodes_in_buffer >= batch_size

    @critical_section
    def sample(self, batch_size: int) -> EpisodeBatch:
        """Return ``batch_size`` distinct stored episodes drawn with ``numpy.random.choice``.

        The draw is numpy's (:func:`~xreplay.compat.pymarl.legacy_choice.legacy_choice` runs the same
        shuffle compiled when numba is installed: same episodes, same global generator state after).
        When exactly ``batch_size`` episodes are stored they are returned in
        storage order (a view) and no random number is drawn, as in PyMARL.

        Raises:
            ArgumentError: ``batch_size`` is not an int >= 0 (before anything is drawn).
            AssertionError: Fewer than ``batch_size`` episodes are stored (as upstream's assert).
        """
        batch_size = as_count(batch_size, "batch_size")
        if not self.can_sample(batch_size):
            raise InsufficientDataAssertionError(
                f"sample size {batch_size} exceeds the {self.episodes_in_buffer} stored episodes; "
                f"lower it or check can_sample() first"
            )
        if self.episodes_in_buffer == batch_size:
            return self[:batch_size]
        ep_ids = legacy_choice(self.episodes_in_buffer, batch_size)
        return self.gather(ep_ids)

    @critical_section
    def uni_sample(self, batch_size: int) -> EpisodeBatch:
        """Return a uniform sample (pymarl2's name for :meth:`sample`)."""
        return self.sample(batch_size)

    @critical_section
    def sample_latest(self, batch_size: int) -> EpisodeBatch:
        """Return the ``batch_size`` most recently inserted episodes (pymarl2), uniform when they wrap."""
        batch_size = as_count(batch_size, "batch_size")
        if not self.can_sample(batch_size):
            raise InsufficientDataAssertionError(
                f"sample size {batch_size} exceeds the {self.episodes_in_buffer} stored episodes"
            )
        if self.buffer_index - batch_size < 0:
            # pymarl2 called self.sample, which on its PrioritizedReplayBuffer lacks ``t`` (TypeError): uniform.
            return ReplayBuffer.sample(self, batch_size)
        return self[self.buffer_index - batch_size : self.buffer_index]

    def save(self, path: str | os.PathLike[str], incremental: bool = True, fsync: bool = True) -> SaveReport:
        """Save the buffer as a checkpoint directory (not in PyMARL); see :func:`xreplay.persistence.save`.

        Incremental saves write the slots ``insert_episode_batch`` filled since the last save; an
        ``update`` on the buffer makes the next save a full one. In-place edits of the field tensors
        themselves (``buffer["obs"][0] = ...``) cannot be seen: save with ``incremental=False`` after them.
        """
        from xreplay.persistence import save

        return save(self, path, incremental=incremental, fsync=fsync)

    _pymarl_kind: ClassVar[str] = "pymarl.replay_buffer"  # the checkpoint kind load() expects

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        mmap: bool = False,
        verify: bool | None = None,
        device: Any = None,
        scheme: dict[str, Any] | None = None,
        restore_numpy_rng: bool = False,
    ) -> ReplayBuffer:
        """Load a buffer saved by :meth:`save` (not in PyMARL); see :func:`xreplay.persistence.load`.

        Args:
            path: The checkpoint directory.
            mmap: Map the rows copy-on-write instead of reading them.
            verify: Check checksums (default: unless ``mmap``).
            device: Where the storage goes (default: where it was; CPU when mapped).
            scheme: A PyMARL scheme the checkpoint must hold.
            restore_numpy_rng: Also restore numpy's global generator as it was at the save, so
                ``sample`` continues exactly (it changes the state of the whole program).

        Raises:
            CheckpointMismatchError: ``path`` holds another kind of checkpoint or scheme.
        """
        from xreplay.persistence import load

        buffer = load(
            path,
            mmap=mmap,
            verify=verify,
            kind=cls._pymarl_kind,
            device=device,
            scheme=scheme,
            restore_numpy_rng=restore_numpy_rng,
        )
        assert isinstance(buffer, cls)
        return buffer

    def __repr__(self) -> str:
        """Describe the buffer as PyMARL does."""
        return (
            f"ReplayBuffer. {self.episodes_in_buffer}/{self.buffer_size} episodes. "
            f"Keys:{self.scheme.keys()} Groups:{self.groups.keys()}"
        )
