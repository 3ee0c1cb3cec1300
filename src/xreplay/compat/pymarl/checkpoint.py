"""Checkpoint adapters for PyMARL's ``ReplayBuffer`` and ``EpisodeBatch``.

Their kinds are ``pymarl.replay_buffer``, ``pymarl.prioritized_replay_buffer``
(pymarl2's, which adds its priorities) and ``pymarl.episode_batch``.
The PyMARL scheme, groups and preprocess are stored as given (preprocess may
hold :class:`~xreplay.compat.pymarl.OneHot` transforms only), together with
the packed row storage, the ring cursor of a ``ReplayBuffer`` and the state of
numpy's global generator, which ``sample`` draws from. Loading restores that
global state only when asked (``restore_numpy_rng=True``), as it is shared
with the rest of the program.

Each adapter checks a checkpoint before loading it (``validate``): the PyMARL
scheme entries, groups and preprocess, the packed scheme and layout against
the rows, the ring writer (cursor and size within the capacity; PyMARL lets
callers move the cursor, so writes need not match it), numpy's generator
state, and for pymarl2's buffer the priority configuration and arrays. A
buffer loaded with ``mmap="shared"`` from a directory holding its
:class:`~xreplay.storage.MemmapStorage` rows keeps using them, and the
storage's ``flush`` saves the buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xreplay.compat.pymarl.episode_batch import EpisodeBatch
from xreplay.compat.pymarl.fields import torch_dtype
from xreplay.compat.pymarl.prioritized import PrioritizedReplayBuffer
from xreplay.compat.pymarl.replay_buffer import ReplayBuffer
from xreplay.compat.pymarl.transforms import OneHot
from xreplay.errors import CheckpointError, CheckpointMismatchError
from xreplay.persistence.codec import (
    _DTYPES,
    check_layout,
    check_scheme,
    check_writer,
    decode_dtype,
    decode_scheme,
    encode_dtype,
    encode_layout,
    encode_scheme,
)
from xreplay.persistence.episode_buffer import check_device, storage_from_rows
from xreplay.persistence.kinds import register_kind
from xreplay.persistence.schema import Validator
from xreplay.writers import RingWriter

__all__ = ["EPISODE_BATCH", "PRIORITIZED_REPLAY_BUFFER", "REPLAY_BUFFER", "PrioritizedAdapter", "PymarlAdapter"]


def _encode_entry(info: dict[str, Any]) -> dict[str, Any]:
    """Return one PyMARL scheme entry as JSON (vshape, dtype name, group, episode_const)."""
    entry = dict(info)
    entry["vshape"] = list(info["vshape"]) if isinstance(info["vshape"], (tuple, list)) else int(info["vshape"])
    if "dtype" in info:
        entry["dtype"] = encode_dtype(torch_dtype(info["dtype"]))
    return entry


def _decode_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Return a PyMARL scheme entry from :func:`_encode_entry` (vshape lists become tuples)."""
    info = dict(entry)
    if isinstance(info["vshape"], list):
        info["vshape"] = tuple(info["vshape"])
    if "dtype" in info:
        info["dtype"] = decode_dtype(info["dtype"])
    return info


def _encode_preprocess(preprocess: dict[str, Any]) -> dict[str, Any]:
    """Return preprocess as JSON; only OneHot transforms can be saved."""
    encoded = {}
    for source, (output, transforms) in preprocess.items():
        for transform in transforms:
            if type(transform) is not OneHot:
                raise CheckpointError(
                    f"cannot checkpoint preprocess {source!r}: transform {type(transform).__name__} is not OneHot"
                )
        encoded[source] = [output, [{"type": "OneHot", "out_dim": int(t.out_dim)} for t in transforms]]
    return encoded


def _numpy_global_state() -> dict[str, Any]:
    """Return numpy's global RandomState as JSON."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "name": name,
        "keys": np.asarray(keys).tolist(),
        "pos": pos,
        "has_gauss": has_gauss,
        "cached_gaussian": cached,
    }


def _set_numpy_global_state(state: dict[str, Any]) -> None:
    """Restore numpy's global RandomState from :func:`_numpy_global_state`."""
    keys = np.asarray(state["keys"], dtype=np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _check_pymarl_scheme(v: Validator) -> None:
    """Check the PyMARL scheme entries, groups and preprocess as saved."""
    groups = v.mapping("structure.groups")
    for name, size in groups.items():
        v.integer(f"structure.groups.{name}", size, low=1, high=2**31)
    entries = v.mapping("structure.pymarl_scheme")
    for name, entry in entries.items():
        key = f"structure.pymarl_scheme.{name}"
        v.mapping(key, entry)
        shape = v.get(f"{key}.vshape", entry.get("vshape"))
        if isinstance(shape, list):
            v.shape(f"{key}.vshape", shape)
        else:
            v.integer(f"{key}.vshape", shape, low=0, high=2**31)
        if "dtype" in entry:
            v.string(f"{key}.dtype", entry["dtype"], choices=_DTYPES)
        if entry.get("group"):
            v.string(f"{key}.group", entry["group"], choices=groups)
        if "episode_const" in entry:
            v.boolean(f"{key}.episode_const", entry["episode_const"])
    for source, pair in v.mapping("structure.preprocess").items():
        key = f"structure.preprocess.{source}"
        output, transforms = v.sequence(key, pair, length=2)
        v.string(f"{key}[0]", output)
        for i, transform in enumerate(v.sequence(f"{key}[1]", transforms, max_length=64)):
            v.mapping(f"{key}[1][{i}]", transform)
            v.string(f"{key}[1][{i}].type", transform.get("type"), choices={"OneHot"})
            v.integer(f"{key}[1][{i}].out_dim", transform.get("out_dim"), low=1, high=2**31)


def _check_numpy_rng(v: Validator) -> None:
    """Check the saved state of numpy's global RandomState (MT19937)."""
    key = "state.numpy_global_rng"
    v.string(f"{key}.name", choices={"MT19937"})
    keys = v.sequence(f"{key}.keys", length=624)
    if not all(type(k) is int and 0 <= k < 2**32 for k in keys):
        raise v.fail(f"{key}.keys", "must hold 624 integers in [0, 2**32)")
    v.integer(f"{key}.pos", low=0, high=624)
    v.integer(f"{key}.has_gauss", low=0, high=1)
    v.number(f"{key}.cached_gaussian")


class PymarlAdapter:
    """Saves, checks and restores a storage-backed ``EpisodeBatch`` or ``ReplayBuffer``."""

    def __init__(self, kind: str, cls: type[EpisodeBatch]):
        """Adapt ``cls`` under ``kind``."""
        self.kind = kind
        self.cls = cls

    def validate(self, v: Validator) -> None:
        """Check a checkpoint's metadata before any of its files is opened."""
        _check_pymarl_scheme(v)
        v.boolean("structure.compact")
        capacity = v.integer("structure.capacity", low=0, high=2**40)
        layout = check_layout(v, "structure.layout", check_scheme(v, "structure.scheme"))
        v.array_shape("rows", (capacity, layout.row_bytes), "|u1")
        v.string("state.device")
        _check_numpy_rng(v)
        if issubclass(self.cls, ReplayBuffer):
            check_writer(v, "state.writer", capacity, ring_order=False)
            v.sequence("ring.arrays", length=1)
            v.string("ring.arrays[0]", choices={"rows"})

    def state(self, batch: EpisodeBatch) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(meta, arrays)`` of ``batch``; arrays are views of its rows."""
        storage = batch._storage
        if storage is None:
            raise CheckpointError("cannot checkpoint an EpisodeBatch view without storage; save the batch it came from")
        structure = {
            "pymarl_scheme": {k: _encode_entry(v) for k, v in batch.scheme.items()},
            "groups": dict(batch.groups or {}),
            "preprocess": _encode_preprocess(batch.preprocess),
            "compact": batch._compact,
            "scheme": encode_scheme(storage.scheme),
            "capacity": storage.capacity,
            "layout": encode_layout(storage.layout),
        }
        state: dict[str, Any] = {"device": str(storage.device), "numpy_global_rng": _numpy_global_state()}
        meta: dict[str, Any] = {"structure": structure, "state": state}
        if getattr(storage, "row_crc", None) is not None:  # a MemmapStorage: its file is the rows when saved beside it
            meta["live"] = {"rows": storage}
        writer = getattr(batch, "_writer", None)
        if isinstance(writer, RingWriter):
            state["writer"] = writer.state_dict()
            ring = {
                "capacity": writer.capacity,
                "cursor": writer.cursor,
                "writes": writer.writes,
                "untracked": getattr(batch, "_untracked_writes", 0),  # any update() forces a full save
            }
            meta["ring"] = {"arrays": ["rows"], **ring}
        return meta, {"rows": storage.rows}

    def restore(
        self,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        device: Any = None,
        scheme: dict[str, Any] | None = None,
        restore_numpy_rng: bool = False,
    ) -> EpisodeBatch:
        """Return the batch or buffer of a checkpoint (``scheme``: a PyMARL scheme it must hold)."""
        structure, state = meta["structure"], meta["state"]
        saved = {k: _decode_entry(v) for k, v in structure["pymarl_scheme"].items()}
        base_entries = {k: v for k, v in structure["pymarl_scheme"].items() if k not in _added(structure)}
        if scheme is not None and {k: _encode_entry(v) for k, v in scheme.items()} != base_entries:
            raise CheckpointMismatchError(
                f"{meta.get('path')} holds a buffer of another PyMARL scheme", meta.get("path")
            )
        preprocess = {
            src: (out, [OneHot(int(t["out_dim"])) for t in transforms])
            for src, (out, transforms) in structure["preprocess"].items()
        }
        base = {k: v for k, v in saved.items() if k not in _added(structure)}
        mapped = bool(meta.get("mapped")) or isinstance(arrays["rows"], np.memmap)
        if device is None and not mapped:
            check_device(Validator(meta.get("path", "the checkpoint"), meta), "state.device", device)
        target = device if device is not None else ("cpu" if mapped else state["device"])
        args = (base, structure["groups"], 0, structure["layout"]["max_seq_length"])
        batch = self._new(meta, args, preprocess=preprocess, device=target, compact=structure["compact"])
        live = meta.get("live", {}).get("rows")
        storage = storage_from_rows(decode_scheme(structure["scheme"]), structure["layout"], arrays["rows"], live)
        batch.scheme, batch.batch_size = saved, int(structure["capacity"])
        batch._attach(storage.to(torch.device(target)))
        bind_owner = getattr(batch._storage, "bind_owner", None)
        if bind_owner is not None:
            bind_owner(batch)  # the MemmapStorage's flush saves this buffer
        if isinstance(batch, ReplayBuffer):
            batch.buffer_size = batch.batch_size
            batch._writer = RingWriter(batch.batch_size)
            batch._writer.load_state_dict(state["writer"])
        if restore_numpy_rng:
            _set_numpy_global_state(state["numpy_global_rng"])
        return batch

    def _new(self, meta: dict[str, Any], args: tuple[Any, ...], **kwargs: Any) -> EpisodeBatch:
        """Return an empty object of the adapted class (storage is attached afterwards)."""
        return self.cls(*args, **kwargs)


class PrioritizedAdapter(PymarlAdapter):
    """Saves and restores a pymarl2 ``PrioritizedReplayBuffer``: the replay buffer plus its priorities.

    The priority sampler's state (tree leaves as ``sampler.priorities``, slot
    generations, max priority, beta step, stale count, pending inserts) and
    ``alpha``, ``beta``, ``t_max`` are saved, so sampling continues exactly
    once the caller restores Python's ``random`` (which ``sample`` draws from).
    """

    def validate(self, v: Validator) -> None:
        """Check the replay buffer's metadata, then the priority configuration and arrays."""
        super().validate(v)
        capacity = int(v.get("structure.capacity"))
        v.number("structure.prioritized.alpha", low=0.0)
        v.number("structure.prioritized.beta")
        v.integer("structure.prioritized.t_max", low=0)
        v.number("state.prioritized.beta")
        v.mapping("state.prioritized.sampler")
        v.boolean("state.prioritized.last_sample")
        v.array_shape("sampler.priorities", (capacity,), "<f8")
        v.array_shape("sampler.generations", (capacity,), ("<i4", "<i8", "<u4", "<u8"))

    def state(self, batch: EpisodeBatch) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the replay buffer's ``(meta, arrays)`` plus the sampler's."""
        if not isinstance(batch, PrioritizedReplayBuffer):
            raise CheckpointError(
                f"the {self.kind} adapter saves a PrioritizedReplayBuffer, not a {type(batch).__name__}"
            )
        meta, arrays = super().state(batch)
        sampler = batch._sampler.state_dict()
        arrays["sampler.priorities"] = sampler.pop("leaves")
        arrays["sampler.generations"] = sampler.pop("generations")
        if batch._last_sample is not None:
            arrays["last_sample.indices"], arrays["last_sample.generations"] = batch._last_sample
        meta["structure"]["prioritized"] = {
            "alpha": batch.alpha,
            "beta": batch.beta_original,
            "t_max": batch.t_max,
        }
        meta["state"]["prioritized"] = {
            "beta": batch.beta,
            "sampler": sampler,
            "last_sample": batch._last_sample is not None,
        }
        return meta, arrays

    def restore(
        self,
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
        device: Any = None,
        scheme: dict[str, Any] | None = None,
        restore_numpy_rng: bool = False,
    ) -> EpisodeBatch:
        """Return the prioritized buffer of a checkpoint (options as :meth:`PymarlAdapter.restore`)."""
        batch = super().restore(meta, arrays, device=device, scheme=scheme, restore_numpy_rng=restore_numpy_rng)
        assert isinstance(batch, PrioritizedReplayBuffer)
        state = meta["state"]["prioritized"]
        batch._sampler = batch._new_sampler(batch.buffer_size)
        with Validator(meta.get("path", "the checkpoint"), meta).restoring("state.prioritized.sampler"):
            batch._sampler.load_state_dict(
                {
                    **state["sampler"],
                    "leaves": arrays["sampler.priorities"],
                    "generations": arrays["sampler.generations"],
                }
            )
        if state["last_sample"]:
            indices = np.asarray(arrays.get("last_sample.indices", np.zeros(0)))
            if (
                indices.ndim != 1
                or indices.dtype.kind not in "iu"
                or (indices.size and indices.max() >= batch.buffer_size)
            ):
                raise Validator(meta.get("path", "the checkpoint"), meta).fail(
                    "arrays.last_sample.indices", "must hold stored slots"
                )
        batch.beta = float(state["beta"])
        if state["last_sample"]:
            batch._last_sample = (
                np.array(arrays["last_sample.indices"], dtype=np.int64),
                np.array(arrays["last_sample.generations"]),
            )
        return batch

    def _new(self, meta: dict[str, Any], args: tuple[Any, ...], **kwargs: Any) -> EpisodeBatch:
        """Return an empty prioritized buffer with the saved alpha, beta and t_max."""
        config = meta["structure"]["prioritized"]
        scheme, groups, size, steps = args
        return PrioritizedReplayBuffer(
            scheme, groups, size, steps, alpha=config["alpha"], beta=config["beta"], t_max=config["t_max"], **kwargs
        )


def _added(structure: dict[str, Any]) -> set[str]:
    """Return the scheme keys PyMARL adds itself: preprocess outputs and ``filled``."""
    return {"filled", *(out for out, _t in structure["preprocess"].values())}


REPLAY_BUFFER = PymarlAdapter("pymarl.replay_buffer", ReplayBuffer)
PRIORITIZED_REPLAY_BUFFER = PrioritizedAdapter("pymarl.prioritized_replay_buffer", PrioritizedReplayBuffer)
EPISODE_BATCH = PymarlAdapter("pymarl.episode_batch", EpisodeBatch)
register_kind(REPLAY_BUFFER, classes=(ReplayBuffer,))
register_kind(PRIORITIZED_REPLAY_BUFFER, classes=(PrioritizedReplayBuffer,))
register_kind(EPISODE_BATCH, classes=(EpisodeBatch,))
