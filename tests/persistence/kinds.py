"""One small buffer of every checkpoint kind, a way to write to it, and a comparable snapshot of its state.

Shared by the fuzz, crash and concurrency tests (and their full-size scripts in ``benchmarks/``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

import xreplay
from xreplay import EpisodeBuffer, Field, OneHot, Scheme
from xreplay.buffers import TransitionBuffer
from xreplay.persistence.kinds import adapter_for
from xreplay.persistence.streams import as_numpy
from xreplay.samplers import LinearSchedule, PrioritizedSampler
from xreplay.storage import MemmapStorage

KINDS = ["episode", "memmap", "transition", "pymarl", "pymarl_prioritized", "ding"]
T = 4
_PYMARL_SCHEME = {
    "obs": {"vshape": 3, "group": "agents"},
    "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
    "reward": {"vshape": (1,)},
    "terminated": {"vshape": (1,), "dtype": torch.uint8},
}
_PREPROCESS_OUT = 4


def episode_scheme() -> Scheme:
    return Scheme(
        {
            "obs": Field((3,), group="agents"),
            "actions": Field((1,), dtype=torch.long, group="agents", storage_dtype=torch.uint8),
            "actions_onehot": Field((4,), group="agents", derived=OneHot("actions", 4)),
            "reward": Field((1,)),
        },
        groups={"agents": 2},
    )


def _episodes(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, T, 2, 3, generator=g),
        "actions": torch.randint(0, 4, (n, T, 2, 1), generator=g),
        "reward": torch.randn(n, T, 1, generator=g),
    }


def _transitions(i: int, n: int) -> dict[str, np.ndarray]:
    ids = np.arange(i, i + n)
    obs = np.repeat(ids[:, None], 2, 1).astype(np.float32)
    done = (ids % 5 == 4).astype(np.float32)
    return {"obs": obs, "next_obs": np.where(done[:, None] > 0, -obs, obs + 1), "act": (ids % 7).astype(np.int8)}


def _pymarl_batch(i: int, n: int) -> Any:
    from xreplay.compat.pymarl import EpisodeBatch
    from xreplay.compat.pymarl.transforms import OneHot as PymarlOneHot

    batch = EpisodeBatch(
        dict(_PYMARL_SCHEME), {"agents": 2}, n, T, preprocess={"actions": ("actions_onehot", [PymarlOneHot(4)])}
    )
    rng = np.random.default_rng(i)
    batch.update(
        {
            "obs": rng.standard_normal((n, T, 2, 3)).astype(np.float32),
            "actions": rng.integers(0, 4, (n, T, 2, 1)),
            "reward": rng.standard_normal((n, T, 1)).astype(np.float32),
        }
    )
    return batch


def make(kind: str, path: Path | None = None, capacity: int = 8, row_order: str = "field") -> Any:
    """Return an empty buffer of ``kind`` (``memmap`` needs ``path``, its storage directory).

    ``row_order`` is the row order of the episode kinds' storage (``episode``, ``memmap``).
    """
    from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check
    from xreplay.compat.pymarl import PrioritizedReplayBuffer, ReplayBuffer
    from xreplay.compat.pymarl.transforms import OneHot as PymarlOneHot

    preprocess = {"actions": ("actions_onehot", [PymarlOneHot(4)])}
    if kind == "episode":
        return EpisodeBuffer(episode_scheme(), capacity, T, seed=1, row_order=row_order)
    if kind == "memmap":
        assert path is not None
        storage = MemmapStorage(episode_scheme(), capacity, T, path, row_order=row_order)
        return EpisodeBuffer(episode_scheme(), capacity, T, seed=1, storage=storage)
    if kind == "transition":
        sampler = PrioritizedSampler(capacity, alpha=0.7, beta=LinearSchedule(0.4, 1.0, 30), epsilon=1e-3)
        return TransitionBuffer(capacity, sampler, seed=2, next_obs_from="obs")
    if kind == "pymarl":
        return ReplayBuffer(dict(_PYMARL_SCHEME), {"agents": 2}, capacity, T, preprocess=preprocess)
    if kind == "pymarl_prioritized":
        return PrioritizedReplayBuffer(
            dict(_PYMARL_SCHEME), {"agents": 2}, capacity, T, alpha=0.6, beta=0.4, t_max=100, preprocess=preprocess
        )
    if kind == "ding":
        buffer = DequeBuffer(size=capacity)
        buffer.use(use_time_check(buffer, max_use=5)).use(PriorityExperienceReplay(buffer))
        return buffer
    raise ValueError(kind)


def write(kind: str, buffer: Any, i: int) -> None:
    """Make write number ``i`` (deterministic in ``i``): a few items, and a sample or priority update."""
    if kind in ("episode", "memmap"):
        buffer.add(_episodes(1 + i % 2, i), lengths=[1 + (i + j) % T for j in range(1 + i % 2)])
        if len(buffer) >= 2:
            buffer.sample(2)
    elif kind == "transition":
        buffer.extend(_transitions(3 * i, 1 + i % 3))
        sample = buffer.sample(3)
        buffer.update_priorities(sample, np.abs(np.sin(np.arange(3) + i)) + 0.1)
    elif kind.startswith("pymarl"):
        buffer.insert_episode_batch(_pymarl_batch(i, 1 + i % 2))
        if kind == "pymarl_prioritized" and buffer.can_sample(2):
            random.seed(i)
            _batch, indices, _weights = buffer.sample(2, t=i)
            buffer.update_priorities(indices, list(np.abs(np.cos(np.arange(2) + i)) + 0.1))
    else:
        record = buffer.push({"obs": np.full(3, i, np.float32), "step": i, "tag": ("t", i)}, meta={"env": i % 2})
        if i % 3 == 0:
            buffer._middleware[1].update_priorities([record.index], [1.0 + i % 4])


def filled(kind: str, path: Path | None = None, writes: int = 6, capacity: int = 8, row_order: str = "field") -> Any:
    """Return a buffer of ``kind`` (episode kinds' rows in ``row_order``) after ``writes`` writes."""
    buffer = make(kind, path, capacity, row_order)
    for i in range(writes):
        write(kind, buffer, i)
    return buffer


def save(kind: str, buffer: Any, path: Path, incremental: bool = True) -> None:
    """Save ``buffer`` the way its users do."""
    if kind == "ding":
        buffer.save_data(str(path))
    elif kind.startswith("pymarl"):
        buffer.save(path, incremental=incremental)
    else:
        xreplay.save(buffer, path, incremental=incremental)


def snapshot(obj: Any, same_indices: bool = True) -> tuple[str, dict[str, bytes]]:
    """Return the saved state of ``obj`` as JSON text and array bytes (what a checkpoint of it would hold).

    ``same_indices=False`` blanks DI-engine index strings, which are random per buffer (and per load).
    """
    adapter = adapter_for(obj)
    lock = getattr(adapter, "lock", None)
    with lock(obj) if lock is not None else (getattr(obj, "lock", None) or _NoLock()):
        meta, arrays = adapter.state(obj)
    meta.pop("live", None)
    meta.get("state", {}).pop("numpy_global_rng", None)  # numpy's global generator: restored only when asked
    text = json.dumps(meta, sort_keys=True, default=str)
    out = {name: np.ascontiguousarray(as_numpy(array)).tobytes() for name, array in arrays.items()}
    if not same_indices and "payload.tree" in out:
        out["payload.tree"] = re.sub(rb'"[0-9a-f]{32}"', b'"<index>"', out["payload.tree"])
    return text, out


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def load_back(kind: str, path: Path, mmap: bool | str = False, trusted: bool = False, capacity: int = 8) -> Any:
    """Load the checkpoint of a ``kind`` buffer the way its users do (DI-engine: into a buffer with middleware)."""
    from xreplay.persistence import load

    if kind == "ding":
        buffer = make("ding", capacity=capacity)
        buffer.load_data(str(path), trusted=trusted)
        return buffer
    return load(path, mmap=mmap)
