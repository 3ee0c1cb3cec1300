"""Small buffers and episodes shared by the persistence tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from xreplay import EpisodeBuffer, Field, OneHot, Scheme

T = 5


def scheme() -> Scheme:
    return Scheme(
        {
            "obs": Field((3,), group="agents"),
            "actions": Field((1,), dtype=torch.long, group="agents", storage_dtype="auto"),
            "actions_onehot": Field((4,), group="agents", derived=OneHot("actions", 4)),
            "reward": Field((1,)),
            "won": Field((1,), dtype=torch.uint8, per_step=False, storage_dtype=torch.bool),
        },
        groups={"agents": 2},
    )


def episodes(n: int, seed: int, steps: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, steps, 2, 3, generator=g),
        "actions": torch.randint(0, 4, (n, steps, 2, 1), generator=g),
        "reward": torch.randn(n, steps, 1, generator=g),
        "won": torch.randint(0, 2, (n, 1), generator=g, dtype=torch.uint8),
    }


def filled_buffer(capacity: int = 16, n: int = 10, seed: int = 0, row_order: str = "field") -> EpisodeBuffer:
    buffer = EpisodeBuffer(scheme(), capacity, T, seed=seed, row_order=row_order)
    buffer.add(episodes(n, seed), lengths=torch.randint(1, T + 1, (n,), generator=torch.Generator().manual_seed(seed)))
    return buffer


def same_buffer(a: EpisodeBuffer, b: EpisodeBuffer) -> bool:
    return (
        torch.equal(a.storage.rows, b.storage.rows)
        and a.storage.layout.overrides == b.storage.layout.overrides
        and a.storage.layout.order == b.storage.layout.order
        and (a._host_lengths == b._host_lengths).all()
        and a.writer.state_dict() == b.writer.state_dict()
        and a.rng.bit_generator.state == b.rng.bit_generator.state
    )


def read_meta(path: Path) -> dict:
    return json.loads((path / "metadata.json").read_text())


def reseal(path: Path, meta: dict) -> None:
    """Write ``meta`` as the checkpoint's metadata with a valid document checksum (what a crafter would do)."""
    from xreplay.persistence.format import write_metadata

    write_metadata(path, {k: v for k, v in meta.items() if k != "checksum"}, fsync=False)
