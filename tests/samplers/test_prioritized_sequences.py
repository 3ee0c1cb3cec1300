import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.samplers.test_sequences import step_buffer
from tests.strategies import chi_square_critical
from xreplay.errors import ArgumentError, FieldShapeError, InsufficientDataError, PriorityError
from xreplay.samplers import PrioritizedSequenceSampler, SequenceSampler


def reference_priorities(buf, sampler, step_priorities):
    """Brute force: (eta * max + (1 - eta) * mean over learn steps) ** alpha of every start, 0 when invalid."""
    capacity, steps, burn_in = buf.capacity, sampler.window, sampler.slicer.burn_in
    stored = buf.storage.gather(np.arange(capacity))
    ends = (stored["terminated"] != 0) | (stored["truncated"] != 0)
    newest = (buf.writer.cursor - 1) % capacity
    oldest = (newest + 1) % capacity if len(buf) == capacity else 0
    out = np.zeros(capacity)
    for start in range(capacity):
        if (start - oldest) % capacity >= len(buf):
            continue
        ahead = (newest - start) % capacity
        slots = [(start + k) % capacity for k in range(steps)]
        if sampler.slicer.pad:
            ok = [k <= ahead and not any(ends[s] for s in slots[:k]) for k in range(steps)]
        else:
            if ahead < steps - 1 or any(ends[s] for s in slots[:-1]):
                continue
            ok = [True] * steps
        learn = [step_priorities[s] for s, good in zip(slots[burn_in:], ok[burn_in:], strict=True) if good]
        if learn:
            out[start] = (sampler.eta * max(learn) + (1 - sampler.eta) * np.mean(learn)) ** sampler.alpha
    return out


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=8),
    st.integers(1, 3),
    st.integers(0, 2),
    st.booleans(),
    st.integers(0, 99),
)
def test_tree_holds_the_r2d2_priority_of_every_valid_start(lengths, length, burn_in, pad, seed):
    sampler = PrioritizedSequenceSampler(SequenceSampler(length, burn_in, pad=pad), alpha=0.7, epsilon=0.0)
    buf = step_buffer(
        lengths, capacity=24, seed=seed, sampler=sampler
    )  # wraps the ring when the episodes exceed 24 steps
    rng = np.random.default_rng(seed)
    try:
        for _ in range(3):
            sample = buf.sample(8)
            buf.update_priorities(sample, rng.normal(size=(8, length)))
    except InsufficientDataError:
        assert sampler.tree.total() == 0.0
        return
    expected = reference_priorities(buf, sampler, sampler.step_priorities)
    np.testing.assert_allclose(sampler.priorities(np.arange(buf.capacity)), expected, rtol=1e-12)


def test_sequences_are_drawn_in_proportion_to_their_priority_with_matching_weights():
    sampler = PrioritizedSequenceSampler(SequenceSampler(length=2, burn_in=1), alpha=1.0, beta=0.5, epsilon=0.0)
    buf = step_buffer([6, 5, 7], capacity=32, seed=3, sampler=sampler)
    first = buf.sample(64)
    buf.update_priorities(first, np.random.default_rng(0).uniform(0.1, 3.0, (64, 2)))
    leaves = sampler.priorities(np.arange(32))
    draws = 30_000
    sample = buf.sample(draws)
    starts = sample.indices[:, 0]
    counts = np.bincount(starts, minlength=32)
    assert set(np.flatnonzero(counts)) <= set(np.flatnonzero(leaves))
    positive = leaves > 0
    expected = draws * leaves[positive] / leaves.sum()
    chi2 = ((counts[positive] - expected) ** 2 / expected).sum()
    assert chi2 < chi_square_critical(int(positive.sum()) - 1)
    np.testing.assert_allclose(sample.probabilities, leaves[starts] / leaves.sum(), rtol=1e-12)
    smallest = leaves[positive].min()
    np.testing.assert_allclose(sample.weights.numpy(), (smallest / leaves[starts]) ** 0.5, rtol=1e-6)
    assert sample.weights.max() <= 1.0


def test_update_sets_step_priorities_from_errors_and_the_formula_per_sequence():
    sampler = PrioritizedSequenceSampler(SequenceSampler(length=3, burn_in=1), alpha=1.0, eta=0.9, epsilon=0.0)
    buf = step_buffer([20], capacity=32, sampler=sampler)  # one long episode: sequences do not overlap when far apart
    sample = buf.sample(1)
    start = int(sample.indices[0, 0])
    buf.update_priorities(sample, torch.tensor([[0.0, 1.0, -3.0, 2.0]]))  # burn-in error ignored
    np.testing.assert_array_equal(sampler.step_priorities[start + 1 : start + 4], [1.0, 3.0, 2.0])
    assert sampler.priorities([start])[0] == pytest.approx(0.9 * 3.0 + 0.1 * 2.0)
    assert sampler.max_priority == 3.0


def test_invalid_starts_are_never_drawn_without_padding():
    buf = step_buffer(
        [2, 5, 1, 4],
        capacity=32,
        seed=1,
        sampler=PrioritizedSequenceSampler(SequenceSampler(length=3, end_fields=("terminated",))),
    )  # 3-step slices fit in episodes 2 and 4 only
    sample = buf.sample(2000)
    assert set(sample.indices[:, 0].tolist()) == {2, 3, 4, 8, 9}
    assert sample.mask.all()


def test_too_short_episodes_raise():
    buf = step_buffer([2, 2], sampler=PrioritizedSequenceSampler(SequenceSampler(length=3)))
    with pytest.raises(InsufficientDataError, match="pad=True"):
        buf.sample(2)


def test_new_steps_are_picked_up_and_updates_of_overwritten_steps_are_skipped():
    sampler = PrioritizedSequenceSampler(SequenceSampler(length=2), epsilon=0.0)
    buf = step_buffer([8], capacity=8, sampler=sampler)
    sample = buf.sample(4)
    buf.extend({k: v[:3] for k, v in buf.storage.gather(np.arange(3)).items()})  # overwrites slots 0..2
    stale = buf.update_priorities(sample, np.ones((4, 2)))
    overwritten = np.isin(sample.indices, [0, 1, 2])
    assert stale == int(overwritten.sum()) and sampler.stale_updates == stale
    assert (sampler.step_priorities[[0, 1, 2]] == 1.0).all()  # new steps at the initial max priority
    assert sampler.generations[[0, 1, 2]].tolist() == [2, 2, 2]


def test_bad_errors_raise_naming_sequence_step_and_value():
    sampler = PrioritizedSequenceSampler(SequenceSampler(length=2))
    buf = step_buffer([10], sampler=sampler)
    sample = buf.sample(3)
    with pytest.raises(FieldShapeError, match=r"\(3, 2\)"):
        buf.update_priorities(sample, np.zeros((3, 5)))
    errors = np.zeros((3, 2))
    errors[1, 1] = np.nan
    with pytest.raises(PriorityError, match=r"error nan of sequence 1 .*learning step 1"):
        buf.update_priorities(sample, errors)


@pytest.mark.parametrize(
    ("errors", "message"),
    [
        pytest.param(np.full((3, 2), "1.5"), "must be real numbers", id="text"),
        pytest.param(np.full((3, 2), 1e308), "could overflow", id="overflowing_sum"),
    ],
)
def test_errors_that_are_not_numbers_or_overflow_are_priority_errors_and_change_nothing(errors, message):
    sampler = PrioritizedSequenceSampler(SequenceSampler(length=2), alpha=1.0)
    buf = step_buffer([10], sampler=sampler)
    sample = buf.sample(3)
    before = (sampler.step_priorities.copy(), sampler.tree.sums.copy(), sampler.stale_updates, sampler.max_priority)
    with pytest.raises(PriorityError, match=message):
        buf.update_priorities(sample, errors)
    after = (sampler.step_priorities, sampler.tree.sums, sampler.stale_updates, sampler.max_priority)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_sequence_sample_sizes_must_be_ints():
    buf = step_buffer([10], sampler=PrioritizedSequenceSampler(SequenceSampler(length=2)))
    state = buf.rng.bit_generator.state
    with pytest.raises(ArgumentError, match="sample size"):
        buf.sample(2.5)
    assert buf.rng.bit_generator.state == state


def test_huge_sequence_samples_are_checked_against_memory_before_drawing():
    from xreplay.errors import CapacityError
    from xreplay.samplers import SequenceSampler

    sampler = PrioritizedSequenceSampler(SequenceSampler(length=2))
    buf = step_buffer([10], sampler=sampler)
    state = buf.rng.bit_generator.state
    with pytest.raises(CapacityError, match="a sample of 1000000000000 sequences x 2 steps"):
        buf.sample(10**12)
    uniform = step_buffer([10], sampler=SequenceSampler(2))
    with pytest.raises(CapacityError, match="a sample of 1000000000000 sequences x 2 steps"):
        uniform.sample(10**12)
    assert buf.rng.bit_generator.state == state
