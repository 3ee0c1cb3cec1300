"""The numba back end of PriorityTree gives bit-identical trees, searches and samples to the numpy one."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.errors import IndexOutOfRangeError, PriorityError
from xreplay.samplers import PrioritizedSampler
from xreplay.samplers.priority_tree import PriorityTree, numba_available

pytest.importorskip("numba", reason="the numba back end needs the accel extra: pip install 'xreplay[accel]'")
pytestmark = pytest.mark.skipif(not numba_available(), reason="numba disabled (XREPLAY_NUMBA=0)")

# Non-integer values: sums round, so any difference in the order of operations would show.
priorities = st.one_of(st.just(0.0), st.floats(1e-9, 1e6), st.floats(0.1, 1.0))


def pair(size: int, top_width: int, fanout: int = 16) -> tuple[PriorityTree, PriorityTree]:
    return (
        PriorityTree(size, top_width, fanout, backend="numpy"),
        PriorityTree(size, top_width, fanout, backend="numba"),
    )


def assert_identical(a: PriorityTree, b: PriorityTree) -> None:
    np.testing.assert_array_equal(a.sums, b.sums)
    np.testing.assert_array_equal(a.mins, b.mins)
    assert a.total() == b.total() and a.min() == b.min()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.sampled_from([1, 2, 16, 64, 4096]),
    st.sampled_from([2, 4, 16]),
    st.data(),
)
def test_updates_fills_and_searches_are_bit_identical(size, top_width, fanout, data):
    a, b = pair(size, top_width, fanout)
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.booleans()):
            n = data.draw(st.integers(1, 2 * size))
            indices = np.array(data.draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)))
            values = np.array(data.draw(st.lists(priorities, min_size=n, max_size=n)))
            a.update(indices, values)
            b.update(indices, values)
        else:
            start = data.draw(st.integers(0, size - 1))
            stop = data.draw(st.integers(start, size))
            value = data.draw(priorities)
            a.fill(start, stop, value)
            b.fill(start, stop, value)
        assert_identical(a, b)
    if a.total() > 0:
        ends = np.cumsum(a.leaves())
        mass = np.concatenate([np.random.default_rng(size).random(200) * a.total(), ends, [0.0, a.total() * 2]])
        found = a.find(mass)
        np.testing.assert_array_equal(found, b.find(mass))
        assert (a.leaves()[found] > 0).all()


def test_a_million_leaves_are_bit_identical_after_random_batches():
    a, b = pair(1_000_000, 4096)
    rng = np.random.default_rng(0)
    for tree in (a, b):
        tree.fill(0, 1_000_000, 1.0)
    for _ in range(20):
        indices, values = rng.integers(0, 1_000_000, 256), rng.random(256) ** 0.6
        a.update(indices, values)
        b.update(indices, values)
        mass = rng.random(256) * a.total()
        np.testing.assert_array_equal(a.find(mass), b.find(mass))
    assert_identical(a, b)
    loaded = PriorityTree(1_000_000, backend="numba")
    loaded.load_leaves(a.leaves())
    assert_identical(a, loaded)


def test_prioritized_samplers_on_both_back_ends_draw_the_same_samples():
    samplers = [PrioritizedSampler(1000, alpha=0.6, beta=0.4, backend=name) for name in ("numpy", "numba")]
    rngs = [np.random.default_rng(5), np.random.default_rng(5)]
    for sampler in samplers:
        sampler.insert_range(0, 1000)
    stale_rng = np.random.default_rng(1)
    for step in range(30):
        drawn = [s.sample(r, 64) for s, r in zip(samplers, rngs, strict=True)]
        for field in ("indices", "weights", "generations", "probabilities"):
            np.testing.assert_array_equal(getattr(drawn[0], field), getattr(drawn[1], field))
        if step % 5 == 0:  # overwrite some slots: their updates become stale
            start = int(stale_rng.integers(0, 900))
            for sampler in samplers:
                sampler.insert_range(start, 1000)
        new = stale_rng.random(64) * 3
        skipped = [s.update_priorities(d.indices, new, d.generations) for s, d in zip(samplers, drawn, strict=True)]
        assert skipped[0] == skipped[1]
    assert samplers[0].max_priority == samplers[1].max_priority
    np.testing.assert_array_equal(samplers[0].tree.sums, samplers[1].tree.sums)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_checked_updates_raise_the_same_errors_and_change_nothing(backend):
    sampler = PrioritizedSampler(8, backend=backend)
    sampler.insert_range(0, 6)
    drawn = sampler.sample(np.random.default_rng(0), 2)
    before = sampler.tree.sums.copy()
    with pytest.raises(IndexOutOfRangeError, match="index 7 is outside the 6 stored slots"):
        sampler.update_priorities([0, 7], [1.0, 1.0], drawn.generations)
    with pytest.raises(PriorityError, match=r"priority -1.0 for index 3 \(position 1\)"):
        sampler.update_priorities([0, 3], [1.0, -1.0], drawn.generations)
    np.testing.assert_array_equal(sampler.tree.sums, before)


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="backend must be"):
        PriorityTree(4, backend="cuda")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.sampled_from([1, 16, 4096]), st.sampled_from([2, 16]), st.data())
def test_fused_draws_and_masked_updates_match_find_and_update(size, top_width, fanout, data):
    a, b = pair(size, top_width, fanout)
    n = data.draw(st.integers(1, 2 * size))
    indices = np.array(data.draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)))
    values = np.array(data.draw(st.lists(priorities, min_size=n, max_size=n)))
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    for tree in (a, b):
        tree.fill(0, size, 0.5)
        tree.update_where(indices, values, keep)
    reference = PriorityTree(size, top_width, fanout, backend="numpy")
    reference.fill(0, size, 0.5)
    reference.update(indices[keep], values[keep])
    assert_identical(a, reference)
    assert_identical(b, reference)
    if not a.total() > 0:
        return
    generations = np.arange(size, dtype=np.int32) * 3
    uniform = np.concatenate([np.random.default_rng(size).random(100), [0.0, 1.0, 2.0]])
    scale = data.draw(st.sampled_from([1.0, a.total()]))
    found = a.find(uniform * scale)
    expected = (found, a.min() / a.sums[found], generations[found], a.sums[found] / a.total())
    for tree in (a, b):
        drawn = tree.draw(uniform.copy(), scale, generations)
        for got, want in zip(drawn, expected, strict=True):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype


@pytest.mark.parametrize("stratified", [False, True], ids=["proportional", "stratified"])
@pytest.mark.parametrize("beta", [0.4, 0.5, 1.0, 2.0])
def test_fused_sampling_draws_what_the_numpy_back_end_draws(stratified, beta):
    samplers = [PrioritizedSampler(500, beta=beta, stratified=stratified, backend=name) for name in ("numpy", "numba")]
    rngs = [np.random.default_rng(9), np.random.default_rng(9)]
    for sampler in samplers:
        sampler.insert_range(0, 400)
    for step in range(10):
        drawn = [s.sample(r, 100) for s, r in zip(samplers, rngs, strict=True)]
        for field in ("indices", "weights", "generations", "probabilities"):
            np.testing.assert_array_equal(getattr(drawn[0], field), getattr(drawn[1], field))
        new = np.random.default_rng(step).random(100) * 10 ** (step % 4)
        for sampler, draw in zip(samplers, drawn, strict=True):
            sampler.insert_range(0, 50 * (step % 2))  # some draws become stale
            sampler.update_priorities(draw.indices, new, draw.generations)
        np.testing.assert_array_equal(samplers[0].tree.sums, samplers[1].tree.sums)


def _outcome(sampler: PrioritizedSampler, indices: np.ndarray, values: np.ndarray, seen: np.ndarray) -> object:
    try:
        return sampler.update_priorities(indices, values, seen)
    except Exception as error:  # the same type and message on both back ends
        return type(error), str(error)


update_values = st.one_of(
    priorities,
    st.sampled_from([-1.0, -0.0, float("nan"), float("inf"), 1e200, 1e300]),
)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.sampled_from([0.6, 2.0]), st.data())
def test_checked_updates_refuse_and_apply_what_the_numpy_back_end_does(size, alpha, data):
    samplers = [PrioritizedSampler(size, alpha=alpha, backend=name) for name in ("numpy", "numba")]
    for sampler in samplers:
        sampler.insert_range(0, size)
    n = data.draw(st.integers(1, 48))  # from 32 the update kernel refreshes the top level's stats too
    indices = np.array(data.draw(st.lists(st.integers(-2, size + 1), min_size=n, max_size=n)), dtype=np.int64)
    values = np.array(data.draw(st.lists(update_values, min_size=n, max_size=n)), dtype=np.float64)
    seen = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int32)
    before = samplers[0].tree.sums.copy()
    outcomes = [_outcome(sampler, indices, values, seen) for sampler in samplers]
    assert outcomes[0] == outcomes[1]
    if not isinstance(outcomes[0], int):  # refused: nothing changed
        for sampler in samplers:
            np.testing.assert_array_equal(sampler.tree.sums, before)
    np.testing.assert_array_equal(samplers[0].tree.sums, samplers[1].tree.sums)
    np.testing.assert_array_equal(samplers[0].tree.mins, samplers[1].tree.mins)
    assert samplers[0].max_priority == samplers[1].max_priority
    assert samplers[0].stale_updates == samplers[1].stale_updates
    assert samplers[0].tree.total() == samplers[1].tree.total()
    assert samplers[0].tree.min() == samplers[1].tree.min()


@pytest.mark.parametrize("n", [1, 31, 32, 300], ids=["one", "below_fused", "fused", "large"])
@pytest.mark.parametrize("size", [100, 70_000], ids=["top_is_leaves", "two_levels"])
def test_updates_with_and_without_the_fused_stats_leave_identical_trees_and_draws(n, size):
    samplers = [PrioritizedSampler(size, backend=name) for name in ("numpy", "numba")]
    rngs = [np.random.default_rng(3), np.random.default_rng(3)]
    for sampler in samplers:
        sampler.insert_range(0, size)
    for step in range(4):
        drawn = [s.sample(r, n) for s, r in zip(samplers, rngs, strict=True)]
        for sampler in samplers:
            sampler.insert_range(0, 7 * step)  # the first slots are overwritten: their updates become stale
        new = np.random.default_rng(step).random(n) * 4
        skipped = [s.update_priorities(d.indices, new, d.generations) for s, d in zip(samplers, drawn, strict=True)]
        assert skipped[0] == skipped[1]
        a, b = (s.tree for s in samplers)
        np.testing.assert_array_equal(a.sums, b.sums)
        np.testing.assert_array_equal(a.mins, b.mins)
        assert a.total() == b.total() and a.min() == b.min()
