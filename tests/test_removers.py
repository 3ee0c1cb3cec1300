import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xreplay.errors import FieldShapeError
from xreplay.removers import MaxAge, MaxTimesSampled


@given(
    st.lists(st.tuples(st.lists(st.integers(0, 3), max_size=8), st.lists(st.integers(0, 2), min_size=4, max_size=4))),
    st.integers(1, 4),
)
def test_counts_belong_to_the_item_not_the_slot(batches, max_times):
    """Each batch: the slots sampled and, per slot, the generation of the item it held then."""
    m = MaxTimesSampled(4, max_times)
    seen = {}  # slot -> (generation counted, count); counters start at generation 0
    for slots, held in batches:
        counts, due = m.record(np.array(slots, dtype=np.int64), np.array([held[s] for s in slots], dtype=np.int64))
        ref = []
        for s in slots:
            generation, count = seen.get(s, (0, 0))
            count = count + 1 if generation == held[s] else 1
            seen[s] = (held[s], count)
            ref.append(count)
        assert counts.tolist() == ref and due.tolist() == [c >= max_times for c in ref]


def test_forget_clear_and_state_round_trip():
    m = MaxTimesSampled(3, 5)
    m.record(np.array([0, 1, 1]), np.array([1, 1, 1]))
    m.forget(np.array([0]))
    other = MaxTimesSampled(3, 5)
    other.load_state_dict(m.state_dict())
    assert other.counts.tolist() == [0, 2, 0] and other.record(np.array([1]), np.array([1]))[0].tolist() == [3]
    m.clear()
    assert m.counts.tolist() == [0, 0, 0]
    with pytest.raises(FieldShapeError, match=r"expected shape \(4,\)"):
        MaxTimesSampled(4).load_state_dict(m.state_dict())


def test_generations_must_match_slots():
    with pytest.raises(FieldShapeError, match="2 slots but 1 generations"):
        MaxTimesSampled(3).record(np.array([0, 1]), np.array([1]))


def test_max_age_strictly_greater():
    assert MaxAge(10).due(np.array([0, 1, 2]), now=11).tolist() == [True, False, False]
    assert MaxAge().due(np.array([-1e9]), now=0).tolist() == [False]
