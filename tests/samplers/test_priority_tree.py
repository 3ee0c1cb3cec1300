import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import apply_reference, chi_square_critical, update_sequences
from xreplay.errors import IndexOutOfRangeError
from xreplay.samplers.priority_tree import PriorityTree, numba_available

TOP_WIDTHS = [1, 2, 8, 4096]


def reference_find(leaves: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The leaf whose range [cumsum before, cumsum through) holds each mass."""
    ends = np.cumsum(leaves)
    mass = np.clip(mass, 0, np.nextafter(ends[-1], 0))
    return np.searchsorted(ends, mass, side="right")


@settings(max_examples=60, deadline=None)
@given(update_sequences(), st.sampled_from(TOP_WIDTHS))
def test_sum_and_min_roots_match_leaves_after_any_updates(case, top_width):
    size, updates = case
    both = PriorityTree(size, top_width)
    for indices, values in updates:
        both.update(indices, values)
    leaves = apply_reference(size, updates)
    assert both.total() == leaves.sum()
    positive = leaves[leaves > 0]
    assert both.min() == (positive.min() if positive.size else np.inf)
    np.testing.assert_array_equal(both.leaves(), leaves)


@settings(max_examples=60, deadline=None)
@given(update_sequences(), st.sampled_from(TOP_WIDTHS), st.integers(0, 2**32 - 1))
def test_find_matches_cumulative_ranges_and_skips_zero_leaves(case, top_width, seed):
    size, updates = case
    leaves = apply_reference(size, updates)
    if leaves.sum() == 0:
        return
    both = PriorityTree(size, top_width)
    for indices, values in updates:
        both.update(indices, values)
    ends = np.cumsum(leaves)
    # Random masses plus every range boundary, 0, the total and past it.
    mass = np.concatenate([np.random.default_rng(seed).random(50) * ends[-1], ends, [0.0, ends[-1] + 5]])
    expected = reference_find(leaves, mass)
    found = both.find(mass)
    np.testing.assert_array_equal(found, expected)
    assert (leaves[found] > 0).all()


def test_find_with_every_leaf_zero_raises():
    tree = PriorityTree(5)
    tree.update(np.array([1]), np.array([0.0]))
    with pytest.raises(ValueError, match="every priority is zero"):
        tree.find(np.array([0.0]))


@pytest.mark.parametrize("top_width", [2, 4096])
def test_sampling_frequencies_follow_priority_to_the_alpha(top_width):
    rng = np.random.default_rng(1234)
    alpha, size, draws = 0.6, 50, 40_000
    priorities = rng.uniform(0.1, 5.0, size)
    priorities[[3, 17, 49]] = 0.0  # zero-priority leaves, the last one included
    tree = PriorityTree(size, top_width)
    tree.update(np.arange(size), priorities**alpha)
    total = tree.total()
    leaves = tree.find(rng.random(draws) * total)
    counts = np.bincount(leaves, minlength=size)
    assert counts[[3, 17, 49]].sum() == 0
    positive = priorities > 0
    expected = draws * priorities[positive] ** alpha / (priorities[positive] ** alpha).sum()
    chi2 = ((counts[positive] - expected) ** 2 / expected).sum()
    assert chi2 < chi_square_critical(int(positive.sum()) - 1)


def test_float_priorities_total_matches_sum_closely():
    rng = np.random.default_rng(0)
    tree = PriorityTree(10_000, top_width=64)
    for _ in range(20):
        tree.update(rng.integers(0, 10_000, 300), rng.random(300))
    assert tree.total() == pytest.approx(tree.leaves().sum(), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.data(), st.sampled_from(TOP_WIDTHS))
def test_fill_equals_update_of_the_same_range(size, data, top_width):
    start = data.draw(st.integers(0, size - 1))
    stop = data.draw(st.integers(start, size))
    value = data.draw(st.sampled_from([0.0, 1.0, 2.5]))
    base = data.draw(st.lists(st.floats(0, 9, allow_nan=False), min_size=size, max_size=size))
    filled, updated = PriorityTree(size, top_width), PriorityTree(size, top_width)
    for tree in (filled, updated):
        tree.update(np.arange(size), np.array(base))
    filled.fill(start, stop, value)
    updated.update(np.arange(start, stop), np.full(stop - start, value))
    np.testing.assert_array_equal(filled.sums, updated.sums)
    np.testing.assert_array_equal(filled.mins, updated.mins)


@pytest.mark.parametrize("top_width", TOP_WIDTHS)
def test_load_leaves_rebuilds_the_same_tree_as_updates(top_width):
    values = np.array([3.0, np.nan, 0.0, 1.5, 2.0, np.nan, 7.0])
    loaded, updated = PriorityTree(7, top_width), PriorityTree(7, top_width)
    loaded.load_leaves(values)
    set_ = ~np.isnan(values)
    updated.update(np.flatnonzero(set_), values[set_])
    np.testing.assert_array_equal(loaded.sums, updated.sums)
    np.testing.assert_array_equal(loaded.mins, updated.mins)
    assert loaded.total() == 13.5


def test_tree_rejects_negative_size():
    with pytest.raises(ValueError, match="size must be >= 0"):
        PriorityTree(-1)


BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="numba"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("indices", "keep"),
    [([0, -1], None), ([3, 10], None), ([2, 99], [True, True]), ([-5, 1], [True, False]), ([1, 2**40], None)],
)
def test_public_updates_refuse_a_leaf_outside_the_tree_and_change_nothing(backend, indices, keep):
    tree = PriorityTree(10, top_width=2, fanout=4, backend=backend)
    tree.update(np.arange(10), np.arange(1.0, 11.0))
    before = tree.sums.copy(), tree.mins.copy(), tree.total()
    with pytest.raises(IndexOutOfRangeError, match=r"outside \[0, 10\)"):
        if keep is None:
            tree.update(np.array(indices), np.ones(2))
        else:
            tree.update_where(np.array(indices), np.ones(2), np.array(keep))
    np.testing.assert_array_equal(tree.sums, before[0])
    np.testing.assert_array_equal(tree.mins, before[1])
    assert tree.total() == before[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_updates_refuse_values_of_another_length(backend):
    tree = PriorityTree(10, backend=backend)
    with pytest.raises(ValueError, match="got 2 indices but 3 values"):
        tree.update(np.array([1, 2]), np.ones(3))
    with pytest.raises(ValueError, match="got 2 indices but 1 keep flags"):
        tree.update_where(np.array([1, 2]), np.ones(2), np.array([True]))
    assert tree.total() == 0.0


def test_update_where_skips_unkept_indices_outside_the_tree():
    tree = PriorityTree(10, backend="numpy")
    tree.update_where(np.array([-1, 3]), np.array([5.0, 2.0]), np.array([False, True]))
    assert tree.total() == 2.0


@pytest.mark.parametrize("fanout", [2, 4, 16, 32])
def test_the_arrays_start_where_a_node_s_children_span_the_fewest_cache_lines(fanout):
    tree = PriorityTree(100_000, fanout=fanout)
    align = max(64, min(4096, 8 * fanout))
    assert tree.sums.ctypes.data % align == 0 and tree.mins.ctypes.data % align == 0
    assert tree.sums.flags.c_contiguous and tree.sums.flags.writeable


@pytest.mark.parametrize("backend", BACKENDS)
def test_draw_refuses_fewer_generations_than_leaves(backend):
    tree = PriorityTree(1000, backend=backend)
    tree.update(np.arange(1000), np.ones(1000))
    with pytest.raises(ValueError, match="expected 1000 generations"):
        tree.draw(np.random.default_rng(0).random(5), tree.total(), np.zeros(1, np.int32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_searches_refuse_a_nan_mass_on_both_back_ends(backend):
    tree = PriorityTree(100, backend=backend)
    tree.update(np.arange(100), np.ones(100))
    with pytest.raises(ValueError, match="NaN"):
        tree.find(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        tree.draw(np.array([0.5, np.nan]), tree.total(), np.zeros(100, np.int32))
    with pytest.raises(ValueError, match="NaN"):
        tree.draw(np.array([0.5]), float("nan"), np.zeros(100, np.int32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 11), (0, 10**9)])
def test_fill_refuses_a_range_outside_the_tree_and_changes_nothing(backend, start, stop):
    tree = PriorityTree(10, top_width=2, fanout=4, backend=backend)
    tree.update(np.arange(10), np.arange(1.0, 11.0))
    before = tree.sums.copy()
    with pytest.raises(IndexOutOfRangeError, match=r"outside \[0, 10\)"):
        tree.fill(start, stop, 5.0)
    np.testing.assert_array_equal(tree.sums, before)
