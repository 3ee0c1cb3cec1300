import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import chi_square_critical
from xreplay.errors import (
    ArgumentError,
    FieldShapeError,
    FieldValueError,
    IndexOutOfRangeError,
    InsufficientDataError,
    PriorityError,
)
from xreplay.samplers import LinearSchedule, PrioritizedSampler
from xreplay.samplers.priority_tree import numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba missing or disabled")


def filled_sampler(size=8, **kwargs) -> PrioritizedSampler:
    sampler = PrioritizedSampler(size, **kwargs)
    sampler.insert_range(0, size)
    return sampler


def test_sampling_frequencies_follow_priority_to_the_alpha():
    rng = np.random.default_rng(7)
    priorities = rng.uniform(0.0, 4.0, 30)
    priorities[[0, 29]] = 0.0
    sampler = filled_sampler(30, alpha=0.6, epsilon=0.0)
    sampler.update_priorities(np.arange(30), priorities)
    draws = sampler.sample(rng, 30_000).indices
    counts = np.bincount(draws, minlength=30)
    assert counts[[0, 29]].sum() == 0
    positive = priorities > 0
    expected = 30_000 * priorities[positive] ** 0.6 / (priorities[positive] ** 0.6).sum()
    chi2 = ((counts[positive] - expected) ** 2 / expected).sum()
    assert chi2 < chi_square_critical(int(positive.sum()) - 1)


def test_stratified_sampling_draws_one_slot_per_stratum():
    sampler = filled_sampler(16, stratified=True)
    batch = sampler.sample(np.random.default_rng(0), 16)
    assert batch.indices.tolist() == list(range(16))


def test_new_items_get_the_largest_priority_seen():
    sampler = PrioritizedSampler(4, alpha=0.5, epsilon=0.0)
    sampler.insert_range(0, 2)
    sampler.update_priorities([0, 1], [9.0, 0.25])
    sampler.insert_range(2, 3)
    sampler.insert(np.array([3]))
    np.testing.assert_allclose(sampler.priorities([0, 1, 2, 3]), [3.0, 0.5, 3.0, 3.0])


def test_weights_are_normalised_by_the_largest_possible_weight():
    sampler = filled_sampler(4, alpha=1.0, beta=0.5, epsilon=0.0)
    priorities = np.array([1.0, 2.0, 4.0, 8.0])
    sampler.update_priorities(np.arange(4), priorities)
    batch = sampler.sample(np.random.default_rng(0), 200)
    probability = priorities / priorities.sum()
    raw = (4 * probability) ** -0.5
    np.testing.assert_allclose(batch.weights, raw[batch.indices] / raw.max(), rtol=1e-6)
    np.testing.assert_allclose(batch.probabilities, probability[batch.indices])
    assert batch.weights.dtype == np.float32 and batch.weights.max() <= 1.0


def test_beta_is_annealed_linearly_over_sample_calls():
    sampler = filled_sampler(2, alpha=1.0, beta=LinearSchedule(0.0, 1.0, steps=2), epsilon=0.0)
    sampler.update_priorities([0, 1], [1.0, 4.0])
    rng = np.random.default_rng(0)
    weights_of_1 = []
    for _ in range(3):
        batch = sampler.sample(rng, 64)
        weights_of_1.append(float(batch.weights[batch.indices == 1][0]))
    np.testing.assert_allclose(weights_of_1, [1.0, 0.5, 0.25])
    explicit = sampler.sample(rng, 64, step=0)
    assert set(explicit.weights.tolist()) == {1.0}


@pytest.mark.parametrize(
    "priority",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(-0.5, id="negative"),
    ],
)
def test_invalid_priorities_raise_naming_index_and_value(priority):
    sampler = filled_sampler(8)
    before = sampler.priorities(np.arange(8)).copy()
    with pytest.raises(PriorityError, match=rf"priority {priority} for index 5 \(position 1\)"):
        sampler.update_priorities([2, 5], [1.0, priority])
    np.testing.assert_array_equal(sampler.priorities(np.arange(8)), before)


@pytest.mark.parametrize("index", [pytest.param(-1, id="negative"), pytest.param(6, id="past_size")])
def test_out_of_range_indices_raise_naming_index_and_size(index):
    sampler = PrioritizedSampler(8)
    sampler.insert_range(0, 6)
    with pytest.raises(IndexOutOfRangeError, match=rf"index {index} is outside the 6 stored slots"):
        sampler.update_priorities([0, index], [1.0, 1.0])


def test_mismatched_lengths_raise():
    sampler = filled_sampler(4)
    with pytest.raises(FieldShapeError, match="2 indices but 1 priorities"):
        sampler.update_priorities([0, 1], [1.0])
    with pytest.raises(FieldShapeError, match="2 indices but 3 generations"):
        sampler.update_priorities([0, 1], [1.0, 1.0], generations=[1, 1, 1])


def test_stale_updates_are_skipped_and_counted():
    sampler = filled_sampler(4, alpha=1.0, epsilon=0.0)
    batch = sampler.sample_masses(np.array([0.5, 2.5]))  # slots 0 and 2
    assert batch.indices.tolist() == [0, 2]
    sampler.insert_range(2, 3)  # slot 2 now holds a newer item
    skipped = sampler.update_priorities(batch.indices, [0.1, 0.2], batch.generations)
    assert skipped == 1 and sampler.stale_updates == 1
    np.testing.assert_allclose(sampler.priorities([0, 2]), [0.1, 1.0])
    assert sampler.generations[2] == 2


def test_zero_priorities_are_never_drawn_and_all_zero_raises():
    sampler = filled_sampler(3, epsilon=0.0)
    sampler.update_priorities([0, 1, 2], [0.0, 1.0, 0.0])
    assert set(sampler.sample(np.random.default_rng(0), 500).indices.tolist()) == {1}
    sampler.update_priorities([1], [0.0])
    with pytest.raises(InsufficientDataError, match="priorities sum to 0"):
        sampler.sample(np.random.default_rng(0), 1)


def test_sampling_an_empty_sampler_raises():
    with pytest.raises(InsufficientDataError, match="0 slots are stored"):
        PrioritizedSampler(4).sample(np.random.default_rng(0), 2)


def test_state_dict_round_trip_gives_the_same_samples():
    sampler = filled_sampler(10, alpha=0.7, beta=LinearSchedule(0.4, 1.0, 10))
    sampler.update_priorities(np.arange(10), np.linspace(0.1, 3.0, 10))
    sampler.insert_range(0, 2)
    restored = PrioritizedSampler(10, alpha=0.7, beta=LinearSchedule(0.4, 1.0, 10))
    restored.load_state_dict(sampler.state_dict())
    a, b = sampler.sample(np.random.default_rng(3), 32), restored.sample(np.random.default_rng(3), 32)
    for field in ("indices", "weights", "generations", "probabilities"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert restored.size == 10 and restored.max_priority == sampler.max_priority


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 11), st.integers(1, 5), st.floats(0, 10)), max_size=25)
)
def test_random_inserts_and_updates_match_a_reference_model(ops):
    capacity, alpha = 12, 0.5
    sampler = PrioritizedSampler(capacity, alpha=alpha, epsilon=0.0)
    model, generation, max_priority = {}, [0] * capacity, 1.0
    for is_insert, start, count, priority in ops:
        if is_insert:
            stop = min(capacity, start + count)
            sampler.insert_range(start, stop)
            for slot in range(start, stop):
                model[slot] = max_priority**alpha
                generation[slot] += 1
        elif model:
            slot = sorted(model)[start % len(model)]
            if slot < sampler.size:
                sampler.update_priorities([slot], [priority], [generation[slot]])
                model[slot] = priority**alpha
                max_priority = max(max_priority, priority)
    slots = sorted(model)
    np.testing.assert_allclose(sampler.priorities(slots), [model[s] for s in slots])
    assert sampler.generations.tolist() == generation
    assert sampler.stale_updates == 0


def _observable(sampler: PrioritizedSampler) -> dict:
    """Everything a later sample or update depends on, without flushing pending inserts."""
    return {
        "leaves": sampler.tree.leaves().copy(),
        "generations": sampler.generations.copy(),
        "pending": [list(r) for r in sampler._pending],
        "counters": (sampler.size, sampler.samples_drawn, sampler.stale_updates, sampler.max_priority),
        "exponents": (sampler.alpha, sampler.epsilon),
    }


def _bad_states(good: dict) -> list:
    return [
        ({**good, "capacity": 9}, ValueError, "capacity 9"),
        ({**good, "leaves": good["leaves"][:5]}, FieldShapeError, r"leaves.*\(8,\).*\(5,\)"),
        ({**good, "generations": np.zeros(7, np.int32)}, FieldShapeError, r"generations.*\(8,\).*\(7,\)"),
        ({**good, "size": 9}, ValueError, r"size.*\[0, 8\].*9"),
        ({**good, "leaves": np.full(8, -1.0)}, FieldValueError, "leaves"),
        ({**good, "pending": [[6, 12]]}, ValueError, r"pending.*\[6, 12\)"),
        ({k: v for k, v in good.items() if k != "generations"}, FieldValueError, "lacks.*generations"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_load_state_dict_validates_before_changing_anything(case):
    good = filled_sampler(8, alpha=1.0).state_dict()
    bad, error, message = _bad_states(good)[case]
    target = PrioritizedSampler(8, alpha=0.5)
    target.insert_range(0, 3)  # pending, not yet in the tree
    target.update_priorities([0], [2.0])  # flushes
    target.insert_range(3, 5)  # pending again
    before = _observable(target)
    with pytest.raises(error, match=message):
        target.load_state_dict(bad)
    after = _observable(target)
    for key, value in before.items():
        np.testing.assert_equal(after[key], value)
    # The pending inserts still reach the tree.
    assert target.priorities([3, 4]).tolist() == [target.max_priority**0.5] * 2


def test_state_dict_keeps_pending_inserts_and_does_not_flush_them():
    sampler = filled_sampler(6, alpha=1.0, epsilon=0.0)
    sampler.update_priorities(np.arange(6), np.arange(1.0, 7.0))
    sampler.insert_range(0, 2)  # new items at max priority 6, pending
    state = sampler.state_dict()
    assert state["pending"] == [[0, 2]] and sampler._pending == [[0, 2]]
    restored = PrioritizedSampler(6, alpha=1.0, epsilon=0.0)
    restored.load_state_dict(state)
    assert restored.priorities(np.arange(6)).tolist() == [6.0, 6.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("backend", ["numpy", None], ids=["numpy", "default"])
def test_a_priority_whose_power_overflows_a_float_raises_priority_error(backend):
    sampler = PrioritizedSampler(8, alpha=2.0, backend=backend)  # 1e200 ** 2 is too large for a float
    sampler.insert_range(0, 8)
    drawn = sampler.sample(np.random.default_rng(0), 2)
    before = sampler.tree.sums.copy()
    with pytest.raises(PriorityError, match=r"priority 1e\+200 for index .* is too large"):
        sampler.update_priorities(drawn.indices, [1.0, 1e200], drawn.generations)
    np.testing.assert_array_equal(sampler.tree.sums, before)


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_draw_slots_draws_what_sample_draws_and_counts_it(backend, stratified):
    """A shard's draw: the slots and generations of ``sample``, its random draws and its sample count."""
    pair = [PrioritizedSampler(64, backend=backend, stratified=stratified) for _ in range(2)]
    for sampler in pair:
        sampler.insert_range(0, 40)
        sampler.update_priorities(np.arange(40), np.random.default_rng(1).random(40))
    rngs = [np.random.default_rng(7), np.random.default_rng(7)]
    for n in (1, 5, 256):
        drawn = pair[0].sample(rngs[0], n)
        slots, generations = pair[1].draw_slots(rngs[1], n)
        np.testing.assert_array_equal(slots, drawn.indices)
        np.testing.assert_array_equal(generations, drawn.generations)
        assert generations.dtype == drawn.generations.dtype
    assert rngs[0].random() == rngs[1].random()
    assert pair[0].samples_drawn == pair[1].samples_drawn == 3


def test_draw_slots_refuses_what_sample_refuses():
    sampler = PrioritizedSampler(8)
    with pytest.raises(InsufficientDataError):
        sampler.draw_slots(np.random.default_rng(0), 4)
    with pytest.raises(ArgumentError):
        sampler.draw_slots(np.random.default_rng(0), -1)
    assert sampler.samples_drawn == 0
