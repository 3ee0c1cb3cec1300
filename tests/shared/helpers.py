"""Items that carry their writer and sequence number in every field, and the processes that write them."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import torch

SPEC = {
    "writer": ((), torch.int32),
    "seq": ((), torch.int64),
    "obs": ((8,), torch.float32),
    "tag": ((3,), torch.int64),
}


def items(writer: int, seqs: np.ndarray) -> dict[str, np.ndarray]:
    """Return transitions ``seqs`` of ``writer``: every field is a function of (writer, seq)."""
    seqs = np.asarray(seqs, dtype=np.int64)
    n = seqs.shape[0]
    obs = (seqs[:, None] * 8 + np.arange(8)[None, :] + writer * 0.25).astype(np.float32)
    tag = np.stack([np.full(n, writer), seqs, seqs * 31 + writer], axis=1).astype(np.int64)
    return {"writer": np.full(n, writer, np.int32), "seq": seqs, "obs": obs, "tag": tag}


def torn(batch: Any) -> int:
    """Return how many items of a sample disagree between fields (0 for whole items)."""
    fields = {name: np.asarray(batch[name]) for name in SPEC}
    writers = fields["writer"].astype(np.int64)
    bad = 0
    for writer in np.unique(writers):
        mask = writers == writer
        want = items(int(writer), fields["seq"][mask])
        ok = np.ones(int(mask.sum()), dtype=bool)
        for name in SPEC:
            ok &= (fields[name][mask] == want[name]).reshape(ok.shape[0], -1).all(axis=1)
        bad += int(np.count_nonzero(~ok))
    return bad


def write_items(handle: Any, writer: int, total: int, seed: int, priorities: bool = True, done: Any = None) -> None:
    """Write ``total`` items of ``writer`` in random chunks of 1 to 64, some with initial priorities."""
    rng = np.random.default_rng(seed)
    seq = 0
    while seq < total:
        n = int(min(total - seq, rng.integers(1, 65)))
        batch = items(writer, np.arange(seq, seq + n))
        if n == 1 and rng.random() < 0.5:
            handle.add({k: v[0] for k, v in batch.items()}, priority=float(rng.random()) if priorities else None)
        elif priorities and rng.random() < 0.5:
            handle.extend(batch, priorities=rng.random(n) + 0.01)
        else:
            handle.extend(batch)
        seq += n
    if done is not None:
        done.value += 1
    handle.close()


def write_forever(handle: Any, writer: int, seed: int) -> None:
    """Write items of ``writer`` (prepared batches of 1 to 1024) until killed: most of its time is spent writing."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 1025, 64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    batches = [items(writer, np.arange(a, a + n)) for a, n in zip(starts, sizes, strict=True)]
    while True:
        for batch in batches:
            handle.extend(batch)


def reserve_and_die(handle: Any, n: int) -> None:
    """Reserve ``n`` slots, copy half an item batch into them, then SIGKILL this process (a crash mid-write)."""
    ring = handle._slots.ring()
    runs = ring.reserve(n, handle._slots._index)
    fields = handle.fields.field_views(handle._slots.views)
    for slot, _item, count, _lap in runs:
        fields["obs"][slot : slot + count] = -1.0  # part of the item written, the rest never
    os.kill(os.getpid(), signal.SIGKILL)


def reserve_and_wait(handle: Any, n: int, writer: int, reserved: Any, release: Any) -> None:
    """Reserve ``n`` slots, signal ``reserved``, wait for ``release``, then write and publish items of ``writer``."""
    slots = handle._slots
    ring = slots.ring()
    runs = ring.reserve(n, slots._index)
    reserved.set()
    release.wait(30)
    batch = items(writer, np.arange(n))
    handle.fields.copy(slots.views, runs, batch, True)
    slots.views["priorities"][[r.slot for r in runs]] = np.nan
    ring.publish(runs, slots._index)
    time.sleep(0.05)
