"""EpisodeWriter: build one episode step by step, then add it to a buffer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

from xreplay.buffers.validation import as_field_tensor, check_keys, check_one_hot_sources
from xreplay.errors import FieldShapeError
from xreplay.scheme import Scheme
from xreplay.storage.tensor import TensorStorage

__all__ = ["EpisodeSink", "EpisodeWriter"]


class EpisodeSink(Protocol):
    """What an :class:`EpisodeWriter` writes into: an :class:`~xreplay.buffers.EpisodeBuffer`."""

    scheme: Scheme
    storage: TensorStorage

    @property
    def max_seq_length(self) -> int:
        """Return the steps per episode."""

    def add(self, episodes: Mapping[str, Any], lengths: Any = None) -> np.ndarray:
        """Write whole episodes."""


class EpisodeWriter:
    """Collects the steps of one episode and adds it to its buffer on :meth:`end`.

    Each :meth:`append` writes the fields it is given at the current step and
    moves to the next step; fields not given stay zero at that step.
    Per-episode fields may be given in any call. Values are checked when they
    are appended, so a bad step is refused before it is staged and the writer
    is left as it was; a refused :meth:`end` also leaves it as it was.

    Example:
        >>> from xreplay.scheme import Field, Scheme
        >>> from xreplay.buffers.episodes import EpisodeBuffer
        >>> buf = EpisodeBuffer(Scheme({"obs": Field((2,)), "reward": Field((1,))}), 4, 10)
        >>> w = buf.episode_writer()
        >>> w.append({"obs": [0.0, 1.0], "reward": [1.0]})
        >>> w.end({"obs": [1.0, 1.0]})
        >>> len(buf), int(buf.get([0]).lengths[0])
        (1, 2)
    """

    def __init__(self, buffer: EpisodeSink):
        """Stage an empty episode for ``buffer``."""
        self.buffer = buffer
        scheme = buffer.scheme
        limit = buffer.max_seq_length
        self._staged = {
            name: torch.zeros(
                (1, limit, *scheme.item_shape(name)) if scheme[name].per_step else (1, *scheme.item_shape(name)),
                dtype=scheme[name].dtype,
            )
            for name in scheme.stored()
        }
        self.step = 0

    def append(self, step: Mapping[str, Any]) -> None:
        """Write ``step``'s fields at the current step and advance one step.

        Raises:
            FieldShapeError: The episode already has ``max_seq_length`` steps,
                or a value has the wrong shape.
            UnknownFieldError: A key is unknown or derived.
            FieldValueError: A value cannot be held by its field.
        """
        self._stage(self._validate(step, "append()"))
        self.step += 1

    def _validate(self, step: Mapping[str, Any], caller: str) -> dict[str, torch.Tensor]:
        """Return every field of ``step`` converted and checked; nothing is staged."""
        scheme = self.buffer.scheme
        check_keys(scheme, step.keys(), required=False)
        if self.step >= self.buffer.max_seq_length and any(scheme[k].per_step for k in step):
            raise FieldShapeError(
                f"{caller}: the episode already has max_seq_length={self.buffer.max_seq_length} steps and "
                f"cannot take another per-step value; call end() without a final step, or build the buffer "
                f"with a larger max_seq_length"
            )
        values = {name: as_field_tensor(scheme, name, value, ()) for name, value in step.items()}
        storage = self.buffer.storage
        storage.plan_dtypes({k: v for k, v in values.items() if not storage.layout.columns[k].auto})
        check_one_hot_sources([f.derived for f in scheme.values() if f.derived is not None], values)
        return values

    def _stage(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Copy validated ``values`` into the current step; return copies of what they replaced."""
        scheme = self.buffer.scheme
        replaced = {}
        for name, value in values.items():
            target = self._staged[name]
            where = target[0, self.step] if scheme[name].per_step else target[0]
            replaced[name] = where.clone()
            where.copy_(value)
        return replaced

    def end(self, final_step: Mapping[str, Any] | None = None) -> None:
        """Optionally write a last step (e.g. the bootstrap observation), add the episode, and reset.

        If the final step or the episode is refused, nothing is added and the
        writer keeps its staged steps (without the final step).
        """
        replaced: dict[str, torch.Tensor] = {}
        if final_step is not None:
            replaced = self._stage(self._validate(final_step, "end(final_step)"))
            self.step += 1
        length = self.step
        try:
            self.buffer.add(
                {k: (v[:, :length] if self.buffer.scheme[k].per_step else v) for k, v in self._staged.items()},
                lengths=[length],
            )
        except BaseException:
            if final_step is not None:  # put the writer back as it was before this call
                self.step -= 1
                for name, old in replaced.items():
                    target = self._staged[name]
                    (target[0, self.step] if self.buffer.scheme[name].per_step else target[0]).copy_(old)
            raise
        for tensor in self._staged.values():
            tensor.zero_()
        self.step = 0
