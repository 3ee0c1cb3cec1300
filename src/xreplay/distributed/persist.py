"""Saving a whole sharded replay: one xreplay checkpoint per shard plus the client's state.

Layout of a saved replay directory::

    replay/
      metadata.json     xreplay checkpoint metadata, kind "sharded_replay": shard count, buffer kind,
                        the client's generator and sample count
      shard-000/        shard 0's buffer, an ordinary xreplay checkpoint (loadable on its own)
      shard-001/ ...

Loading reads only ``metadata.json`` and the ``shard-NNN`` folders it
implies (never a path named inside the file).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from xreplay.distributed.parts import ClientParts
from xreplay.distributed.protocol import MAX_SHARDS
from xreplay.distributed.shard import shard_checkpoint_path
from xreplay.errors import CheckpointCorruptError, CheckpointMismatchError, ShardUnavailableError
from xreplay.persistence.codec import decode_rng, encode_rng
from xreplay.persistence.format import new_metadata, read_metadata, write_metadata

__all__ = ["KIND", "read_replay", "save_replay"]

KIND = "sharded_replay"


def save_replay(client: ClientParts, path: str | os.PathLike[str]) -> Path:
    """Save every shard to ``path/shard-NNN`` (in parallel) and then the client's state; return the path.

    Raises:
        ShardUnavailableError: A shard is down (a replay is saved whole or not at all).
        CheckpointWriteError: A shard's save failed.
    """
    client.flush()
    client.refresh()
    if not client.live.all():
        down = [int(s) for s in np.flatnonzero(~client.live)]
        raise ShardUnavailableError(f"cannot save the replay while shards {down} are down; retry once they are back")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    backend = client.backend
    calls = [backend.submit(s, "save", str(shard_checkpoint_path(directory, s))) for s in range(client.num_shards)]
    for reply in backend.gather(calls, client.options.timeout):
        if isinstance(reply, BaseException):
            raise reply
        client._observe(reply)
    state = {
        "num_shards": client.num_shards,
        "buffer_kind": client.info.kind,
        "prioritized": client.info.prioritized,
        "rng": encode_rng(client.rng),
        "batches_drawn": client.batches_drawn,
    }
    write_metadata(directory, new_metadata(KIND, 1, secrets.token_hex(8), {"state": state}))
    return directory


def read_replay(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the checked client state of a saved replay, with ``shards``: the shard checkpoint paths.

    Raises:
        NotACheckpointError: ``path`` holds no xreplay checkpoint.
        CheckpointMismatchError: It holds a single buffer, not a sharded replay.
        CheckpointCorruptError: Its state is malformed or a shard folder is missing.
    """
    directory = Path(path)
    document = read_metadata(directory)
    if document.get("kind") != KIND:
        raise CheckpointMismatchError(
            f"{directory} holds a {document.get('kind')!r} checkpoint, not a sharded replay; load it with "
            f"xreplay.persistence.load, or pass it to ShardCheckpoints/restore one shard",
            directory,
        )
    state = document.get("state")
    num = state.get("num_shards") if isinstance(state, dict) else None
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_SHARDS:
        raise CheckpointCorruptError(
            f"{directory}: 'num_shards' must be an int in [1, {MAX_SHARDS}], got {num!r}", directory
        )
    assert isinstance(state, dict)
    drawn = state.get("batches_drawn")
    if isinstance(drawn, bool) or not isinstance(drawn, int) or drawn < 0:
        raise CheckpointCorruptError(f"{directory}: 'batches_drawn' must be an int >= 0, got {drawn!r}", directory)
    rng = state.get("rng")
    if not isinstance(rng, dict):
        raise CheckpointCorruptError(f"{directory}: 'rng' must be a generator state, got {rng!r}", directory)
    shards = [shard_checkpoint_path(directory, s) for s in range(num)]
    missing = [p.name for p in shards if not (p / "metadata.json").is_file()]
    if missing:
        raise CheckpointCorruptError(f"{directory}: shard checkpoints {missing} are missing", directory)
    return {**state, "rng": decode_rng(rng), "shards": [str(p) for p in shards]}
