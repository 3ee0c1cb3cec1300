"""Upstream defects D1-D7 (spec section 10): each test shows xreplay's behaviour and names DI-engine's."""

import random

import numpy as np

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check


def test_d1_delete_keeps_every_remaining_record_indexed():
    # DI-engine 0.5.3: after deleting 1 of 10, len(indices) == 1 and update() of others returns False.
    buf = DequeBuffer(size=10)
    for i in range(10):
        buf.push(i)
    buf.delete(buf.storage[3].index)
    for i in range(3):
        buf.push(100 + i)
    assert len(buf.indices) == len(buf.storage) == 10
    for i, rec in enumerate(buf.storage):
        assert buf.indices.get(rec.index) == i and buf.get_by_index(rec.index) is rec
        assert buf.update(rec.index, data=rec.data) is True


def test_d2_delete_updates_meta_index_and_groups():
    # DI-engine 0.5.3: meta_index keeps deleted values, so a deleted group can be drawn and come back empty.
    buf = DequeBuffer(size=10)
    for i in range(4):
        buf.push(i, {"g": i})
    buf.sample(1, groupby="g")
    buf.delete([buf.storage[1].index, buf.storage[2].index])
    assert list(buf.meta_index["g"]) == [0, 3]
    random.seed(0)
    for _ in range(20):
        groups = buf.sample(2, groupby="g")
        assert sorted(g[0].data for g in groups) == [0, 3]


def test_d3_use_time_check_with_per_does_not_crash():
    # DI-engine 0.5.3: TypeError "unhashable type: 'list'" on every sample.
    buf = DequeBuffer(size=10)
    per = PriorityExperienceReplay(buf)
    buf.use(use_time_check(buf, max_use=2)).use(per)
    for i in range(5):
        buf.push({"x": i})
    buf.sample(5)
    buf.sample(5)
    assert buf.count() == 0 and per.buffer_idx == {}


def test_d4_push_after_delete_never_shares_a_live_slot():
    # DI-engine 0.5.3: the pivot keeps cycling, so a new record can take the slot of a live one.
    buf = DequeBuffer(size=4)
    per = PriorityExperienceReplay(buf)
    buf.use(per)
    for i in range(3):
        buf.push({"x": i})
    buf.delete(buf.storage[0].index)
    buf.push({"x": 3})
    buf.push({"x": 4})
    slots = [r.meta["priority_idx"] for r in buf.storage]
    assert len(set(slots)) == 4
    assert {per.buffer_idx[s] for s in slots} == {r.index for r in buf.storage}
    np.random.seed(0)
    assert sorted(r.data["x"] for r in buf.sample(4)) == [1, 2, 3, 4]


def test_d5_missing_key_is_group_none():
    # DI-engine 0.5.3: KeyError when the None group is drawn and a record lacks the key.
    buf = DequeBuffer(size=10)
    buf.push(0, {"g": None})
    buf.push(1, {})
    buf.push(2, {"g": 1})
    groups = buf.sample(2, groupby="g")
    none_group = [g for g in groups if g[0].data != 2][0]
    assert [r.data for r in none_group] == [0, 1]


def test_d6_per_state_dict_and_delete_without_is_weight():
    # DI-engine 0.5.3: state_dict() and delete with IS_weight=False raise AttributeError.
    buf = DequeBuffer(size=4)
    per = PriorityExperienceReplay(buf, IS_weight=False)
    buf.use(per)
    for i in range(3):
        buf.push({"x": i})
    buf.delete(buf.storage[0].index)
    state = per.state_dict()
    assert state["buffer_idx"] == per.buffer_idx and buf.count() == 2
    other = PriorityExperienceReplay(buf, IS_weight=False)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.sum_tree.leaves(), per.sum_tree.leaves())


def test_d7_off_by_one_kept_by_default_and_fixable():
    def starts(buf):
        return {buf.sample(1, groupby="g", unroll_len=2)[0][0].data for _ in range(300)}

    kept, fixed = DequeBuffer(size=10), DequeBuffer(size=10, full_last_window=True)
    for buf in (kept, fixed):
        for i in range(6):
            buf.push(i, {"g": 0})
    random.seed(0)
    assert starts(kept) == {0, 1, 2, 3}
    assert starts(fixed) == {0, 1, 2, 3, 4}
