import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xreplay.errors import IndexOutOfRangeError
from xreplay.storage.objects import ObjectStorage


def contents(s):
    return [s.items[x] for x in s.ordered_slots().tolist()]


def test_fifo_eviction_reuses_oldest_slot():
    s = ObjectStorage(3)
    assert [s.add(i, key=i) for i in range(4)] == [(0, -1), (1, -1), (2, -1), (0, 0)]
    assert contents(s) == [1, 2, 3] and s.slot_of(0) is None and s.slot_of(3) == 0


def test_stale_handle_does_not_resolve_after_slot_reuse():
    s = ObjectStorage(2)
    slot, _ = s.add("a")
    handle = s.handles([slot])
    s.add("b")
    s.add("c")  # evicts "a", reuses its slot
    slots, current = s.resolve(handle)
    assert slots.tolist() == [slot] and current.tolist() == [False]
    assert s.resolve(s.handles([slot]))[1].tolist() == [True]


def test_remove_compacts_and_reuses_freed_slots_smallest_first():
    s = ObjectStorage(5)
    for i in range(5):
        s.add(i, key=f"k{i}")
    s.remove([1, 3])
    assert contents(s) == [0, 2, 4] and s.positions_of([4]).tolist() == [2]
    assert s.peek_slot() == 1 and s.add("x")[0] == 1 and s.add("y")[0] == 3
    assert contents(s) == [0, 2, 4, "x", "y"]


def test_slot_at_bounds():
    s = ObjectStorage(3)
    s.add("a")
    assert s.slot_at(-1) == 0
    with pytest.raises(IndexOutOfRangeError, match="position 1 is outside the 1 stored"):
        s.slot_at(1)


def test_state_round_trip():
    s = ObjectStorage(4)
    for i in range(6):
        s.add(i, key=i, meta={"m": i})
    s.remove([s.slot_of(3)])
    t = ObjectStorage(4)
    t.load_state(s.state())
    assert contents(t) == contents(s) and t.key_to_slot == s.key_to_slot and t.peek_slot() == s.peek_slot()
    with pytest.raises(ValueError, match="capacity"):
        ObjectStorage(3).load_state(s.state())


@given(st.lists(st.one_of(st.integers(0, 100), st.just(-1), st.just(-2)), max_size=60), st.integers(1, 6))
def test_matches_list_model(ops, capacity):
    s, model, n = ObjectStorage(capacity), [], 0
    for op in ops:
        if op == -1 and model:
            victim = model[n % len(model)]
            s.remove([s.slot_of(victim)])
            model.remove(victim)
        elif op == -2:
            s.clear()
            model = []
        else:
            n += 1
            s.add(n, key=n)
            model = (model + [n])[-capacity:]
        assert contents(s) == model
        assert sorted(s.key_to_slot) == sorted(model)
        live = s.ordered_slots()
        assert len(set(live.tolist())) == len(model)
        assert np.array_equal(s.positions_of(live), np.arange(len(model)))


def test_contiguous_flag_tracks_identity_order():
    s = ObjectStorage(3)
    for i in range(5):
        s.add(i)
    assert s.contiguous and s.ordered_slots().tolist() == [(s.head + p) % 3 for p in range(3)]
    s.remove([s.slot_at(1)])
    assert not s.contiguous
    s.clear()
    assert s.contiguous
