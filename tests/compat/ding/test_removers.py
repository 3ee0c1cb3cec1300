import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from xreplay.compat.ding.removers import MaxUse, Staleness


@given(st.lists(st.integers(0, 4), max_size=30), st.integers(1, 5))
def test_max_use_matches_loop(slots, max_use):
    m = MaxUse(5, max_use)
    counts, due = m.record(np.array(slots, dtype=np.int64))
    ref, expected = [0] * 5, []
    for s in slots:
        ref[s] += 1
        expected.append(ref[s])
    assert counts.tolist() == expected and due.tolist() == [c >= max_use for c in expected]
    assert m.counts.tolist() == ref


def test_max_use_reset():
    m = MaxUse(3, 2)
    m.record(np.array([1, 1]))
    m.reset(np.array([1]))
    assert m.counts.tolist() == [0, 0, 0]


def test_staleness_strictly_greater():
    assert Staleness(10).due(np.array([0, 1, 2]), now=11).tolist() == [True, False, False]
