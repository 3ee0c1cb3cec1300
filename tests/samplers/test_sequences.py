import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.buffers import TransitionBuffer
from xreplay.errors import InsufficientDataError, UnknownFieldError
from xreplay.samplers import SequenceSampler, sequence_priorities


def step_buffer(
    lengths: list[int], capacity: int = 64, truncate_last: bool = False, seed: int = 0, sampler: object = "uniform"
) -> TransitionBuffer:
    """Episodes of the given lengths, stored step by step and drawn by ``sampler``; obs is the global step number."""
    terminated = np.concatenate([np.eye(1, n, n - 1)[0] for n in lengths]).astype(np.float32)
    truncated = np.zeros_like(terminated)
    if truncate_last:
        terminated[-1], truncated[-1] = 0.0, 1.0
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    buf = TransitionBuffer(capacity, seed=seed, sampler=sampler)
    buf.extend(
        {
            "obs": np.arange(len(terminated), dtype=np.float32),
            "episode": episode,
            "terminated": terminated,
            "truncated": truncated,
        }
    )
    return buf


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=10),
    st.integers(1, 4),
    st.integers(0, 2),
    st.integers(0, 99),
)
def test_slices_never_cross_episode_ends_or_the_newest_step(lengths, length, burn_in, seed):
    # capacity < total steps wraps the ring
    buf = step_buffer(lengths, capacity=32, seed=seed, sampler=SequenceSampler(length, burn_in))
    steps = length + burn_in
    stored = buf.storage.gather(np.arange(len(buf)))
    has_valid = any(n >= steps for n in lengths)  # approximate: overwritten episodes may break it
    try:
        sample = buf.sample(16)
    except InsufficientDataError:
        assert not has_valid or len(buf) < sum(lengths)
        return
    obs = sample.fields["obs"]
    episode = sample.fields["episode"]
    assert obs.shape == (16, steps)
    assert (episode == episode[:, :1]).all()  # one episode per slice
    assert (obs[:, 1:] - obs[:, :-1] == 1).all()  # consecutive steps, never past the newest
    assert sample.mask.all() and not sample.learn_mask[:, :burn_in].any()
    assert set(sample.indices.reshape(-1).tolist()) <= set(range(len(buf)))
    np.testing.assert_array_equal(stored["obs"].numpy()[sample.indices], obs.numpy())


def test_starts_are_uniform_over_valid_starts():
    # valid starts for 3 steps: 0..2, 5, 8..11 → 8 starts
    sample = step_buffer([5, 3, 6], seed=1, sampler=SequenceSampler(3, end_fields=("terminated",))).sample(8000)
    counts = np.bincount(sample.indices[:, 0], minlength=14)
    assert set(np.flatnonzero(counts).tolist()) == {0, 1, 2, 5, 8, 9, 10, 11}
    assert counts[counts > 0].min() > 850 and counts.max() < 1150


def test_padding_masks_steps_after_the_episode_end_and_past_the_newest():
    sample = step_buffer([2, 3], truncate_last=True, sampler=SequenceSampler(4, pad=True)).sample(500)
    for start, row in zip(sample.indices[:, 0].tolist(), sample.mask.tolist(), strict=True):
        valid = {0: 2, 1: 1, 2: 3, 3: 2, 4: 1}[start]  # steps left in the episode (and stored)
        assert row == [True] * valid + [False] * (4 - valid)


def test_too_long_slices_raise_unless_padded():
    with pytest.raises(InsufficientDataError, match="pass pad=True"):
        step_buffer([2, 2], sampler=SequenceSampler(3, max_rounds=4)).sample(2)
    assert step_buffer([2, 2], sampler=SequenceSampler(3, pad=True)).sample(2).mask.shape == (2, 3)


def test_missing_end_field_raises():
    buf = TransitionBuffer(4, sampler=SequenceSampler(2))
    buf.add({"obs": 1.0})
    with pytest.raises(UnknownFieldError, match="needs fields"):
        buf.sample(1)


def test_sequence_priorities_mix_max_and_mean_over_valid_steps():
    errors = torch.tensor([[1.0, -2.0, 3.0, 100.0], [4.0, 4.0, 4.0, 4.0]])
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    expected = torch.tensor([0.9 * 3 + 0.1 * 2, 4.0])
    torch.testing.assert_close(sequence_priorities(errors, mask), expected)
    torch.testing.assert_close(sequence_priorities(errors, mask, eta=0.0), torch.tensor([2.0, 4.0]))


def _valid_starts_by_brute_force(buf: TransitionBuffer, steps: int) -> set[int]:
    """Slots starting ``steps`` stored, consecutive steps with no episode end before the last."""
    size, capacity = len(buf), buf.capacity
    oldest = buf.writer.cursor % capacity if size == capacity else 0
    order = [(oldest + k) % capacity for k in range(size)]
    stored = buf.storage.gather(np.arange(capacity))
    ends = ((stored["terminated"] != 0) | (stored["truncated"] != 0)).tolist()
    return {
        order[k] for k in range(size - steps + 1) if not any(ends[order[k + j]] for j in range(steps - 1))
    }


def test_rare_valid_starts_are_always_found():
    # Lengths [2, 4, 1, 3, 3]: one valid 4-step start among 13 stored steps (64 rejection rounds failed often).
    sample = step_buffer([2, 4, 1, 3, 3], capacity=32, seed=0, sampler=SequenceSampler(4)).sample(4096)
    assert np.unique(sample.indices, axis=0).tolist() == [[2, 3, 4, 5]]
    assert sample.fields["episode"].eq(1).all()


def test_exact_starts_stay_uniform_when_most_draws_are_rejected():
    # 4-step starts: 40, 45 and 46
    buf = step_buffer([1] * 40 + [4, 1, 5], capacity=64, seed=2, sampler=SequenceSampler(4, max_rounds=1))
    sample = buf.sample(6000)
    counts = np.bincount(sample.indices[:, 0], minlength=64)
    assert set(np.flatnonzero(counts).tolist()) == {40, 45, 46}
    assert counts[[40, 45, 46]].min() > 1800 and counts.max() < 2200


def test_no_valid_start_names_the_slice_length_and_longest_episode():
    buf = step_buffer([2, 3, 1], sampler=SequenceSampler(3, burn_in=1))
    state = buf.rng.bit_generator.state
    with pytest.raises(InsufficientDataError, match=r"slice of 4 steps.*longest stored episode has 3 steps"):
        buf.sample(8)
    assert buf.rng.bit_generator.state != state  # the draws came from the buffer's generator
    padded = step_buffer([2, 3, 1], sampler=SequenceSampler(3, burn_in=1, pad=True))
    assert padded.sample(8).fields["obs"].shape == (8, 4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=14),
    st.integers(1, 5),
    st.integers(0, 99),
)
def test_sampling_fails_exactly_when_no_valid_start_exists(lengths, steps, seed):
    buf = step_buffer(lengths, capacity=24, seed=seed, sampler=SequenceSampler(steps))  # wraps for long lists
    valid = _valid_starts_by_brute_force(buf, steps)
    if not valid:
        with pytest.raises(InsufficientDataError, match=f"slice of {steps} steps"):
            buf.sample(32)
        return
    sample = buf.sample(32)
    assert set(sample.indices[:, 0].tolist()) <= valid
