"""Byte-offset gathers of episode columns: the same values as numpy indexing, for every layout they accept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest
import torch

from xreplay import EpisodeBuffer
from xreplay.her.gather import TransitionGather
from xreplay.scheme import Field, Scheme

SCHEME = Scheme(
    {
        "obs/a": Field((3, 2)),
        "obs/b": Field((5,), torch.int16),
        "obs/g1": Field((3,)),
        "obs/g2": Field((3,)),
        "action": Field((), torch.int64),
        "done": Field((), torch.bool),
        "flag": Field((), torch.bool),
        "tag": Field((2,), per_step=False),
    }
)
PAIRED, PER_STEP, PER_EPISODE = ["obs/a", "obs/b", "obs/g1", "obs/g2"], ["action", "done", "flag"], ["tag"]


def _values(rng: np.random.Generator, slots: int, steps: int) -> dict[str, np.ndarray]:
    """Random values of every field of SCHEME, ``[slots, steps, *item]`` (``[slots, *item]`` per episode)."""
    out = {}
    for name in SCHEME:
        shape = (slots, *((steps,) if SCHEME[name].per_step else ()), *SCHEME.item_shape(name))
        out[name] = rng.integers(-50, 50, shape).astype(torch.empty(0, dtype=SCHEME[name].dtype).numpy().dtype)
    return out


def _check(
    columns: Mapping[str, np.ndarray],
    paired: Sequence[str],
    per_step: Sequence[str],
    per_episode: Sequence[str],
    memory: np.ndarray | None = None,
) -> TransitionGather:
    """Assert the plan's gathers equal numpy indexing at random draws; return the plan."""
    plan = TransitionGather(columns, paired, per_step, per_episode, memory)
    first = columns[next(iter(columns))]
    rng = np.random.default_rng(0)
    episodes, steps = rng.integers(0, first.shape[0], 64), rng.integers(0, first.shape[1] - 1, 64)
    want = {name: np.stack((columns[name][episodes, steps], columns[name][episodes, steps + 1]), 1) for name in paired}
    want.update({name: columns[name][episodes, steps] for name in per_step})
    want.update({name: columns[name][episodes] for name in per_episode})
    got = plan.gather(episodes, steps)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert (got[name].dtype, got[name].shape) == (value.dtype, value.shape), name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    for name in [*paired, *per_step]:
        np.testing.assert_array_equal(plan.take(name, episodes, steps), columns[name][episodes, steps], err_msg=name)
    last = np.full(4, first.shape[0] - 1), np.full(4, first.shape[1] - 2)  # the transition at the end of the memory
    for name, value in plan.gather(*last).items():
        expected = columns[name][last[0]] if name in per_episode else columns[name][last[0], last[1]]
        np.testing.assert_array_equal(value[:, 0] if name in paired else value, expected, err_msg=name)
    return plan


def _stored(row_order: str, slots: int = 12, steps: int = 7) -> EpisodeBuffer:
    """Return a buffer of SCHEME holding random values, its rows in ``row_order``."""
    buf = EpisodeBuffer(SCHEME, slots, steps, seed=0, row_order=row_order)
    values = _values(np.random.default_rng(1), slots, steps)
    buf.add({name: torch.from_numpy(value) for name, value in values.items()})
    return buf


def test_packed_rows_share_views_by_item_size() -> None:
    buf = EpisodeBuffer(SCHEME, 12, 7, seed=0)
    buf.add({name: torch.from_numpy(value) for name, value in _values(np.random.default_rng(1), 12, 7).items()})
    columns = buf.storage.host_columns
    assert columns is not None
    plan = _check(columns, PAIRED, PER_STEP, PER_EPISODE)
    grouped = {tuple(group.names) for group in plan.groups}
    assert ("obs/g1", "obs/g2") in grouped and ("done", "flag") in grouped  # one gather each
    assert not plan.others


def test_step_major_rows_gather_each_transition_as_one_record() -> None:
    buf = _stored("step")
    columns = buf.storage.host_columns
    assert columns is not None
    plan = _check(columns, PAIRED, PER_STEP, PER_EPISODE, buf.storage.rows.numpy())
    assert plan.block is not None and plan.block.names == [*PAIRED, *PER_STEP]
    assert plan.block.size <= 2 * buf.storage.layout.step_bytes
    assert [group.names for group in plan.groups] == [["tag"]]  # per-episode fields: a view of their own


def test_step_major_rows_without_their_memory_group_by_item_size() -> None:
    buf = _stored("step")
    columns = buf.storage.host_columns
    assert columns is not None
    plan = _check(columns, PAIRED, PER_STEP, PER_EPISODE)
    assert plan.block is None and {tuple(group.names) for group in plan.groups} >= {("obs/g1", "obs/g2")}


def test_field_major_rows_have_no_step_block() -> None:
    buf = _stored("field")
    columns = buf.storage.host_columns
    assert columns is not None
    assert _check(columns, PAIRED, PER_STEP, PER_EPISODE, buf.storage.rows.numpy()).block is None


def test_step_block_values_are_writable_and_apart_from_storage() -> None:
    buf = _stored("step")
    columns = buf.storage.host_columns
    assert columns is not None
    before = buf.storage.rows.clone()
    got = TransitionGather(columns, PAIRED, PER_STEP, PER_EPISODE, buf.storage.rows.numpy()).gather(
        np.array([0, 1]), np.array([0, 2])
    )
    for value in got.values():
        value[...] = 7
    np.testing.assert_array_equal(got["obs/g1"], 7)
    assert torch.equal(buf.storage.rows, before)


def test_separate_arrays_get_one_view_each() -> None:
    plan = _check(_values(np.random.default_rng(2), 9, 5), PAIRED, PER_STEP, PER_EPISODE)
    assert all(len(group.names) == 1 for group in plan.groups)


@pytest.mark.parametrize(
    ("name", "column"),
    [
        pytest.param("strided", np.arange(10 * 6 * 8, dtype=np.float32).reshape(10, 6, 8)[:, :, ::2], id="every_other"),
        pytest.param("reversed", np.arange(60.0).reshape(10, 6)[:, ::-1], id="negative_stride"),
    ],
)
def test_items_not_contiguous_fall_back_to_indexing(name: str, column: np.ndarray) -> None:
    plan = _check({name: column, "reward": np.zeros((10, 6), np.float32)}, [name], ["reward"], [])
    assert [other[0] for other in plan.others] == [name]


def test_steps_apart_in_memory_take_two_records() -> None:
    column = np.arange(10 * 6 * 8, dtype=np.float32).reshape(10, 6, 8)[:, :, :4]  # items 16 bytes, steps 32 apart
    plan = _check({"obs/x": column}, ["obs/x"], [], [])
    assert plan.groups[0].pairs is None
