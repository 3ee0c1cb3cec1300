"""gathered_episodes: a transition stream cut at its flags and at resets, with memcmp and with numpy alone."""

from __future__ import annotations

import numpy as np
import pytest

import xreplay.datasets._minari_episodes as episodes_module
from xreplay.datasets._minari_episodes import gathered_episodes


def episode_ranges(obs, nxt, starts, stops):
    """Return each gathered episode's (start, stop), after checking its observations and other rows."""
    out = []
    for steps, observations, rows in gathered_episodes(obs, nxt, {"step": np.arange(stops[-1])}, starts, stops):
        start = int(rows["step"][0])
        np.testing.assert_array_equal(rows["step"], np.arange(start, start + steps))
        for leaf, observed in obs.items():  # T + 1 rows: the observations, then the last next observation
            assert observations[leaf].flags.c_contiguous
            np.testing.assert_array_equal(observations[leaf][:steps], observed[start : start + steps])
            np.testing.assert_array_equal(observations[leaf][steps], nxt[leaf][start + steps - 1])
        out.append((start, start + steps))
    return out


@pytest.fixture(params=["memcmp", "numpy"])
def comparer(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(episodes_module, "_MEMCMP", None)
    elif episodes_module._MEMCMP is None:
        pytest.skip("no C library memcmp here")
    return request.param


def _stream(steps: int, resets: list[int], seed: int = 0, leaves: tuple[str, ...] = ("",)):
    """Return observations and next observations of one stream with resets after the steps in ``resets``."""
    rng = np.random.default_rng(seed)
    obs, nxt = {}, {}
    for leaf in leaves:
        stream = rng.random((steps + 1, 3), dtype=np.float32)
        obs[leaf], nxt[leaf] = stream[:-1], stream[1:].copy()
    for step in resets:
        nxt[leaves[-1]][step, 1] += 1.0  # only the last leaf differs: every leaf must be compared
    return obs, nxt


def _reference(obs, nxt, starts, stops):
    """Cut every flagged episode after each step whose next observation differs in value from the next one."""
    out = []
    for start, stop in zip(starts, stops, strict=True):
        cut = start
        for step in range(start, stop - 1):
            if any((nxt[leaf][step] != o[step + 1]).any() for leaf, o in obs.items()):
                out.append((cut, step + 1))
                cut = step + 1
        out.append((cut, stop))
    return out


@pytest.mark.parametrize("block_bytes", [pytest.param(2 << 20, id="one_block"), pytest.param(40, id="many_blocks")])
@pytest.mark.parametrize(
    "resets, stops",
    [
        pytest.param([], [10, 25, 40], id="no_resets"),
        pytest.param([3, 17, 18], [10, 25, 40], id="resets_inside_flagged"),
        pytest.param([9, 24], [10, 25, 40], id="reset_at_a_flagged_end"),
        pytest.param([0, 1, 2], [1, 3, 40], id="one_step_episodes"),
    ],
)
@pytest.mark.parametrize("leaves", [("",), ("observation", "goal")])
def test_cuts_at_flags_and_resets(comparer, monkeypatch, block_bytes, resets, stops, leaves):
    monkeypatch.setattr(episodes_module, "_BLOCK_BYTES", block_bytes)
    obs, nxt = _stream(40, resets, leaves=leaves)
    starts = [0, *stops[:-1]]
    assert list(episode_ranges(obs, nxt, starts, stops)) == _reference(obs, nxt, starts, stops)


def test_negative_zero_is_the_same_observation(comparer):
    """Bytes differ but values are equal: no reset (the byte comparison falls back to values)."""
    obs, nxt = _stream(20, [])
    obs[""][5, 0], nxt[""][4, 0] = 0.0, -0.0
    assert list(episode_ranges(obs, nxt, [0], [20])) == [(0, 20)]


@pytest.mark.parametrize("other_nan", [pytest.param(False, id="same_nan"), pytest.param(True, id="other_payload")])
def test_nan_is_the_same_observation(comparer, other_nan):
    """A NaN where the next observation has a NaN is no reset, whatever its bits; a number there is one."""
    obs, nxt = _stream(20, [])
    obs[""][5, 2] = nxt[""][4, 2] = np.nan
    if other_nan:
        nxt[""][4:5, 2:3].view(np.uint32)[...] ^= 1  # another NaN payload: the bytes differ, the values do not
    nxt[""][12, 0] = np.nan  # a NaN where the next observation has a number: a reset
    assert list(episode_ranges(obs, nxt, [0], [20])) == [(0, 13), (13, 20)]


def test_strided_columns_are_compared_by_value(comparer):
    obs, nxt = _stream(30, [7])
    wide = {"": np.repeat(obs[""], 2, axis=1)[:, ::2]}  # not contiguous: memcmp cannot read it
    assert list(episode_ranges(wide, nxt, [0], [30])) == [(0, 8), (8, 30)]


def test_rows_inside_packed_rows_come_out_contiguous(monkeypatch):
    monkeypatch.setattr(episodes_module, "_BLOCK_BYTES", 40)  # several blocks
    obs, nxt = _stream(30, [4])
    packed = np.zeros((30, 5), np.float32)  # a field inside packed rows: a strided view
    packed[:, 2] = np.arange(30)
    episodes = list(gathered_episodes(obs, nxt, {"x": packed[:, 2]}, [0, 10], [10, 30]))
    assert [steps for steps, _o, _r in episodes] == [5, 5, 20]
    assert all(rows["x"].flags.c_contiguous for _s, _o, rows in episodes)
    np.testing.assert_array_equal(np.concatenate([rows["x"] for _s, _o, rows in episodes]), np.arange(30))


def test_closing_early_stops_the_helper(monkeypatch):
    monkeypatch.setattr(episodes_module, "_BLOCK_BYTES", 40)
    obs, nxt = _stream(400, [])
    starts = list(range(0, 400, 4))
    episodes = gathered_episodes(obs, nxt, {}, starts, [s + 4 for s in starts])
    assert next(episodes)[0] == 4
    episodes.close()  # the writer failed: the pool shuts down without gathering every block
