"""Buffers and comparisons shared by the dataset tests."""

from __future__ import annotations

import numpy as np
import torch

from xreplay import AUTO, EpisodeBuffer, Field, OneHot, Scheme, TransitionBuffer


def age_order(buffer) -> np.ndarray:
    """Return the slots of ``buffer`` from the oldest item to the newest."""
    writer = buffer.writer
    oldest = writer.cursor if writer.size == writer.capacity else 0
    return (oldest + np.arange(writer.size)) % writer.capacity


def transition_stream(n: int, seed: int = 0, episode: int = 5, obs_dim: int = 3) -> dict[str, np.ndarray]:
    """Return ``n`` transitions of one stream of episodes (next_obs is the next obs inside an episode)."""
    rng = np.random.default_rng(seed)
    obs = rng.random((n + 1, obs_dim), dtype=np.float32)
    nxt = obs[1:].copy()
    ends = (np.arange(n) % episode) == episode - 1
    nxt[ends] = rng.random((int(ends.sum()), obs_dim), dtype=np.float32)  # a reset after each episode
    return {
        "obs": obs[:-1],
        "next_obs": nxt,
        "action": rng.integers(0, 4, n),
        "reward": rng.random(n).astype(np.float32),
        "terminated": ends & (rng.random(n) < 0.5),
        "truncated": ends & (rng.random(n) >= 0.5),
    }


def transition_buffer(kind: str) -> TransitionBuffer:
    """Return a filled transition buffer of one of a few shapes (see the ids in the tests)."""
    if kind == "empty":
        return TransitionBuffer(8, seed=0)
    if kind == "nested":
        buf = TransitionBuffer(16, seed=0)
        rng = np.random.default_rng(1)
        buf.extend(
            {
                "obs": {"observation": rng.random((10, 4), dtype=np.float32), "goal": rng.integers(0, 3, (10, 2))},
                "action": rng.random((10, 2)),
                "mask": rng.random(10) < 0.5,
            }
        )
        return buf
    buf = TransitionBuffer(
        32,
        sampler="prioritized" if kind == "prioritized" else "uniform",
        seed=0,
        next_obs_from="obs" if kind == "next_obs_once" else None,
    )
    total = 50 if kind in ("wrapped", "next_obs_once") else 20
    data = transition_stream(total)
    for start in range(0, total, 7):
        buf.extend({k: v[start : start + 7] for k, v in data.items()})
    return buf


def same_transitions(a: TransitionBuffer, b: TransitionBuffer) -> None:
    """Assert that both buffers hold the same items in the same age order."""
    assert len(a) == len(b)
    if len(a) == 0:
        return
    left, right = a.gather(age_order(a)), b.gather(age_order(b))
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert torch.equal(left[name], right[name]), name


def compact_scheme() -> Scheme:
    """Return a scheme with compact dtypes, a one-hot derived field, a group and a per-episode field."""
    return Scheme(
        {
            "obs": Field((3,), group="agents"),
            "action": Field((1,), torch.int64, group="agents", storage_dtype=AUTO),
            "action_onehot": Field((5,), group="agents", derived=OneHot("action", 5)),
            "reward": Field((1,)),
            "terminated": Field((1,), torch.uint8),
            "seed": Field((), torch.int64, per_step=False),
        },
        groups={"agents": 2},
    )


def episode_buffer(capacity: int = 6, batches: int = 3, seed: int = 0) -> EpisodeBuffer:
    """Return an episode buffer of the compact scheme with episodes of several lengths."""
    buf = EpisodeBuffer(compact_scheme(), capacity, 7, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        buf.add(
            {
                "obs": torch.randn(2, 6, 2, 3, generator=gen),
                "action": torch.randint(0, 5, (2, 6, 2, 1), generator=gen),
                "reward": torch.randn(2, 6, 1, generator=gen),
                "terminated": torch.randint(0, 2, (2, 6, 1), generator=gen, dtype=torch.uint8),
                "seed": torch.randint(0, 1000, (2,), generator=gen),
            },
            lengths=[6, 4],
        )
    return buf


def same_episodes(a: EpisodeBuffer, b: EpisodeBuffer) -> None:
    """Assert that both buffers hold the same episodes in the same age order."""
    assert len(a) == len(b)
    if len(a) == 0:
        return
    left, right = a.get(age_order(a)), b.get(age_order(b))
    assert torch.equal(left.lengths, right.lengths)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert torch.equal(left[name], right[name]), name


def buffer_state(buffer) -> tuple:
    """Return what a failed import must leave unchanged: items, counters and the random generator's state."""
    items = {}
    if len(buffer):
        sample = (
            buffer.gather(age_order(buffer)) if isinstance(buffer, TransitionBuffer) else buffer.get(age_order(buffer))
        )
        items = {k: v.clone() for k, v in sample.items()}
    return items, buffer.writer.state_dict(), buffer.rng.bit_generator.state


def assert_unchanged(buffer, before: tuple) -> None:
    """Assert that ``buffer`` is as :func:`buffer_state` recorded it."""
    items, writer, rng = buffer_state(buffer)
    assert writer == before[1] and rng == before[2]
    assert sorted(items) == sorted(before[0])
    for name in items:
        assert torch.equal(items[name], before[0][name]), name
