import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.errors import FieldValueError, InsufficientDataError
from xreplay.samplers.grouped import GroupedSampler

CAPACITY = 6
KEYS = ["a", "b", None, 3]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, CAPACITY - 1), st.sampled_from(KEYS)),
        st.tuples(st.just("remove"), st.lists(st.integers(0, CAPACITY - 1), max_size=3), st.none()),
        st.tuples(st.just("set_key"), st.integers(0, CAPACITY - 1), st.sampled_from(KEYS)),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=40,
)


def model_groups(model, min_size=1):
    """Keys with >= min_size items, by the write order of their oldest item (model: slot -> (order, key))."""
    oldest = {}
    for order, key in sorted(model.values(), key=lambda v: v[0]):
        oldest.setdefault(key, order)
    sizes = {k: sum(1 for _, key in model.values() if key == k) for k in oldest}
    return [k for k in sorted(oldest, key=oldest.get) if sizes[k] >= min_size]


@settings(max_examples=80, deadline=None)
@given(operations)
def test_matches_a_dict_model_under_any_operations(ops):
    s, model, writes = GroupedSampler(CAPACITY), {}, 0
    for op, arg, key in ops:
        if op == "add":
            s.add(arg, key)
            model[arg] = (writes, key)
            writes += 1
        elif op == "remove":
            s.on_remove(arg)
            for slot in arg:
                model.pop(slot, None)
        elif op == "set_key":
            s.set_key(arg, key)
            if arg in model:
                model[arg] = (model[arg][0], key)
        else:
            s.clear()
            model = {}
        assert len(s) == len(model)
        for min_size in (1, 2):
            assert s.groups(min_size) == model_groups(model, min_size)
        for k in KEYS:
            expected = [slot for slot, _ in sorted(model.items(), key=lambda kv: kv[1][0]) if model[slot][1] == k]
            assert s.members(k) == expected and s.size_of(k) == len(expected)
    other = GroupedSampler(CAPACITY)
    other.load_state_dict(s.state_dict())
    assert other.groups() == s.groups() and all(other.members(k) == s.members(k) for k in KEYS)


def test_single_removal_of_the_oldest_and_of_a_middle_item():
    s = GroupedSampler(5)
    s.on_write(np.arange(5), ["e"] * 5)
    s.remove(0)
    s.remove(3)
    s.remove(3)  # already gone: nothing happens
    assert s.members("e") == [1, 2, 4]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.booleans())
def test_windows_are_consecutive_members_of_large_enough_groups(seed, length, replace):
    s = GroupedSampler(20)
    keys = np.random.default_rng(seed).integers(0, 3, 20).tolist()
    s.on_write(np.arange(20), keys)
    eligible = s.groups(length)
    if not eligible or (not replace and len(eligible) < 2):
        with pytest.raises(InsufficientDataError, match="cannot draw 2 groups"):
            s.sample(np.random.default_rng(seed), 2, length=length, replace=replace)
        return
    draw = s.sample(np.random.default_rng(seed), 2, length=length, replace=replace)
    assert draw.mask.all() and draw.indices.shape == (2, length)
    for key, row in zip(draw.groups, draw.indices.tolist(), strict=True):
        members = s.members(key)
        start = members.index(row[0])
        assert key in eligible and members[start : start + length] == row
    if not replace:
        assert len(set(draw.groups)) == 2


def test_whole_groups_are_padded_and_masked():
    s = GroupedSampler(8)
    s.on_write(np.arange(5), [0, 1, 0, 0, 1])
    draw = s.windows([0, 1], [0, 0], 3)
    assert draw.indices.tolist() == [[0, 2, 3], [1, 4, -1]] and draw.mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    whole = s.sample(np.random.default_rng(1), 4)
    assert whole.indices.shape == (4, 3)
    rows = zip(whole.groups, whole.indices, whole.mask, strict=True)
    assert all(row[m].tolist() == s.members(g) for g, row, m in rows)


def test_sample_draws_every_full_window_uniformly():
    s = GroupedSampler(10)
    s.on_write(np.arange(10), ["g"] * 10)
    starts = s.sample(np.random.default_rng(0), 8000, length=4).indices[:, 0]
    counts = np.bincount(starts, minlength=7)
    assert counts[7:].sum() == 0 and counts.min() > 8000 / 7 * 0.85  # starts 0..6, the last full window too


def test_same_seed_same_draw():
    s = GroupedSampler(10)
    s.on_write(np.arange(10), [i % 3 for i in range(10)])
    a, b = (s.sample(np.random.default_rng(7), 5, length=2) for _ in range(2))
    assert a.groups == b.groups and np.array_equal(a.indices, b.indices)


def test_bad_state_changes_nothing():
    s = GroupedSampler(4)
    s.on_write([0, 1], ["a", "b"])
    with pytest.raises(FieldValueError, match="distinct slots"):
        s.load_state_dict({"capacity": 4, "slots": [0, 0], "keys": ["a", "a"]})
    with pytest.raises(FieldValueError, match="capacity 5"):
        s.load_state_dict({"capacity": 5, "slots": [], "keys": []})
    assert s.groups() == ["a", "b"]
