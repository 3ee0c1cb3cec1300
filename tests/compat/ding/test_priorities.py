"""DI-engine's prioritized draws on xreplay's one priority tree: strata, weights, and masses on a leaf boundary."""

import math

import numpy as np
import pytest
from ding_sum_tree import RefSumTree
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.compat import ding as xding
from xreplay.compat.ding.binary_order import BinaryOrderTotal, binary_levels, binary_reduce, tree_capacity
from xreplay.compat.ding.priorities import DingPriorities


def filled(leaves, alpha=1.0):
    p = DingPriorities(len(leaves), alpha=alpha)
    for slot, leaf in enumerate(leaves):
        p.push(slot, float(leaf))
    return p


def reference(leaves):
    ref = RefSumTree(len(leaves))
    for slot, leaf in enumerate(leaves):
        ref.set(slot, float(leaf))
    return ref


def boundary_masses(leaves):
    """Prefix sums of the leaves in two orders and their float neighbours: masses on or next to a boundary."""
    ends = np.concatenate([np.cumsum(leaves), np.cumsum(leaves[::-1])[::-1]])
    return np.unique(np.concatenate([ends, np.nextafter(ends, 0), np.nextafter(ends, np.inf)]))


def disagreeing_case(seed=3, size=200):
    """Return leaves and the boundary masses where the 16-ary tree's own lookup differs from DI-engine's."""
    leaves = np.random.default_rng(seed).uniform(0.01, 3.0, size) ** 0.6
    p, ref = filled(leaves), reference(leaves)
    masses = boundary_masses(leaves)
    masses = masses[masses < ref.total()]
    p.flush()
    own = p.tree.find(masses)
    expected = np.array([ref.find(float(m)) for m in masses])
    return leaves, masses[own != expected], expected[own != expected]


def test_sample_uses_global_numpy_rng_stratified():
    p = filled(np.ones(8))
    np.random.seed(1)
    got = p.draw(8)
    np.random.seed(1)
    u = np.random.uniform(size=8)
    assert got.tolist() == np.floor(np.arange(8) + u).astype(int).tolist()


def test_weights_normalised_by_min():
    p = filled([1.0, 2.0, 3.0, 4.0])
    w = p.weights(np.arange(4), count=4, beta=1.0)
    assert w.max() == pytest.approx(1.0) and w.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25])


def test_empty_sampler_asserts():
    with pytest.raises(AssertionError):
        DingPriorities(2, alpha=0.6).draw(1)


def test_clear_slots_removes_mass():
    p = filled(np.ones(4))
    p.clear_slots([0, 1])
    assert p.total() == 2.0 and p.minimum() == 1.0


def test_total_and_ranges_are_dings_binary_order_sums():
    leaves = np.random.default_rng(0).uniform(0, 1, 37)
    p, ref = filled(leaves), reference(leaves)
    assert p.total() == ref.total()  # bit for bit, not approximately
    assert binary_reduce(binary_levels(leaves, 64), 0, 64) == ref.total()
    p.set_leaf(5, 0.0)
    ref.set(5, 0.0)
    assert p.total() == ref.total()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_binary_order_total_follows_writes(size, seed, rounds):
    rng = np.random.default_rng(seed)
    leaves = np.zeros(size)
    total, ref = BinaryOrderTotal(size), RefSumTree(size)
    for _ in range(rounds):
        slots = rng.integers(0, size, rng.integers(1, size + 1))
        values = rng.uniform(0, 2, slots.size)
        for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
            leaves[slot] = value
            ref.set(slot, value)
        total.mark(slots)
        assert total.value(leaves) == ref.total()
    assert tree_capacity(size) == ref.capacity


def test_masses_on_a_leaf_boundary_follow_dings_descent():
    leaves, masses, expected = disagreeing_case()
    assert masses.size > 0  # the 16-ary tree alone puts these masses in the neighbouring leaf
    p = filled(leaves)
    np.testing.assert_array_equal(p.find(masses), expected)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 3000), st.integers(0, 2**32 - 1), st.booleans())
def test_every_boundary_mass_gets_dings_leaf(size, seed, zeros):
    rng = np.random.default_rng(seed)
    leaves = rng.uniform(0.01, 3.0, size) ** 0.6
    if zeros:
        leaves[rng.integers(0, size, size // 3 + 1)] = 0.0  # zero-width leaves share a boundary
        leaves[rng.integers(0, size)] = 1.0
    p, ref = filled(leaves), reference(leaves)
    masses = boundary_masses(leaves)
    masses = np.concatenate([masses[masses < ref.total()], rng.random(64) * ref.total()])
    got = p.find(masses).tolist()
    for mass, slot in zip(masses.tolist(), got, strict=True):
        try:
            expected = ref.find(mass)
        except AssertionError:  # DI-engine's descent ends on a zero leaf and raises: ours gives a positive one
            assert leaves[slot] > 0
        else:
            assert slot == expected


def per_buffer_with(leaves, lib=xding, mw=xding):
    """A PER buffer (xreplay's, or DI-engine's with its modules) holding one record per priority (alpha 1)."""
    buf = lib.DequeBuffer(size=len(leaves))
    per = mw.PriorityExperienceReplay(buf, IS_weight=True, priority_power_factor=1.0)
    buf.use(per)
    for i, leaf in enumerate(leaves):
        buf.push({"v": i}, meta={"priority": float(leaf)})
    return buf, per


def uniform_hitting(mass, total, size=1):
    """Return a uniform draw ``u`` for which PER's stratum arithmetic gives exactly ``mass`` (stratum 0)."""
    u = mass / total
    for _ in range(64):
        got = (0 / size + u / size) * total
        if got == mass:
            return u
        u = np.nextafter(u, np.inf if got < mass else 0.0)
    return None


def test_a_prioritized_sample_on_a_leaf_boundary_draws_dings_record(monkeypatch):
    leaves, masses, expected = disagreeing_case()
    buf, per = per_buffer_with(leaves)
    total = per.sum_tree.root()
    hits = [(uniform_hitting(m, total), e) for m, e in zip(masses.tolist(), expected.tolist(), strict=True)]
    hits = [(u, e) for u, e in hits if u is not None]
    assert hits
    for u, slot in hits[:5]:
        monkeypatch.setattr(np.random, "uniform", lambda size=None, u=u: np.full(size, u))
        (record,) = buf.sample(1)
        assert record.meta["priority_idx"] == slot and record.data["v"] == slot


def test_is_weights_are_dings_formula_bit_for_bit():
    leaves = np.random.default_rng(5).uniform(0.1, 4.0, 50)
    buf, per = per_buffer_with(leaves)
    sample = buf.sample(10)
    total, smallest, count, beta = per.sum_tree.root(), float(leaves.min()), 50, 0.4
    max_weight = (count * (smallest / total)) ** (-beta)
    for record in sample:
        leaf = float(leaves[record.meta["priority_idx"]])
        assert record.meta["priority_IS"] == (count * (leaf / total)) ** (-beta) / max_weight
        assert record.data["priority_IS"].item() == np.float32(record.meta["priority_IS"])
    assert not math.isinf(sum(r.meta["priority_IS"] for r in sample))


def test_update_priorities_after_the_buffer_changed_looks_the_records_up_again():
    buf, per = per_buffer_with(np.ones(4))
    sample = buf.sample(4)
    indices = [r.index for r in sample]
    assert per.update_priorities(indices, [2.0] * 4) == 4  # the records just drawn
    evicted = buf.storage[0].index
    buf.push({"v": 4}, meta={"priority": 1.0})  # evicts the oldest; its slot now holds the new record
    assert per.update_priorities(indices, [9.0] * 4) == 3
    assert evicted not in buf.indices and buf.storage[-1].meta["priority"] == 1.0
    assert sorted(r.meta["priority"] for r in buf.storage) == [1.0, 9.0, 9.0, 9.0]


def test_collected_leaf_writes_stay_bounded_without_samples():
    buf, per = per_buffer_with(np.ones(8))
    for i in range(40_000):
        buf.push({"v": i}, meta={"priority": 1.0 + i % 3})
    assert len(per._priorities._new) < 16384 and len(per._priorities._pending) <= 8
    expected = {r.meta["priority_idx"]: r.meta["priority"] for r in buf.storage}
    assert per.sum_tree.leaves().tolist() == [expected[s] for s in range(8)]
