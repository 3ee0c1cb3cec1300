import random

import numpy as np
import pytest
import torch

from xreplay.compat.pymarl import EpisodeBatch, PrioritizedReplayBuffer
from xreplay.errors import IndexOutOfRangeError, InsufficientDataError, PriorityError

SCHEME = {"reward": {"vshape": (1,)}, "actions": {"vshape": (1,), "dtype": torch.long}}


def episodes(n: int, first: int = 0) -> EpisodeBatch:
    batch = EpisodeBatch(SCHEME, {}, n, 3)
    ids = torch.arange(first, first + n, dtype=torch.float32)
    batch.update({"reward": ids[:, None, None].expand(n, 3, 1)})
    return batch


def make(size=4, alpha=0.6, beta=0.4, t_max=100, **kwargs) -> PrioritizedReplayBuffer:
    return PrioritizedReplayBuffer(SCHEME, {}, size, 3, alpha=alpha, beta=beta, t_max=t_max, **kwargs)


def test_signature_attributes_and_sample_result_types():
    buf = make()
    buf.insert_episode_batch(episodes(3))
    assert (buf.alpha, buf.beta_original, buf.max_priority) == (0.6, 0.4, 1.0)
    assert buf.beta_increment == pytest.approx(0.6 / 100)
    random.seed(1)
    batch, idxes, weights = buf.sample(2, t=10)
    assert isinstance(batch, EpisodeBatch) and batch.batch_size == 2
    assert isinstance(idxes, list) and all(type(i) is int for i in idxes)
    assert isinstance(weights, np.ndarray) and weights.dtype == np.float64
    assert batch["reward"][:, 0, 0].tolist() == [float(i) for i in idxes]
    assert buf.beta == pytest.approx(0.4 + 10 * 0.006)


def test_strata_masses_come_from_python_random_as_in_pymarl2():
    buf = make(size=8, alpha=1.0)
    buf.insert_episode_batch(episodes(8))
    priorities = np.array([1.0, 5.0, 0.5, 2.0, 3.0, 1.0, 4.0, 0.5])
    buf.update_priorities(list(range(8)), priorities)
    random.seed(42)
    segment = priorities.sum() / 4
    masses = [random.random() * segment + i * segment for i in range(4)]
    expected = np.searchsorted(np.cumsum(priorities), masses, side="right").tolist()
    random.seed(42)
    _, idxes, weights = buf.sample(4, t=0)
    assert idxes == expected
    np.testing.assert_allclose(weights, (priorities.min() / priorities[idxes]) ** 0.4)


def test_fixed_last_slot_is_sampled():
    # pymarl2 summed priorities over [0, episodes_in_buffer - 1): slot 3 of 4 was never drawn.
    buf = make()
    buf.insert_episode_batch(episodes(4))
    random.seed(0)
    drawn = np.concatenate([buf.sample(4, t=0)[1] for _ in range(50)])
    assert np.bincount(drawn, minlength=4).tolist() == [50, 50, 50, 50]


def test_fixed_one_stored_episode_samples():
    # pymarl2 recursed forever (RecursionError) with one stored episode.
    buf = make()
    buf.insert_episode_batch(episodes(1))
    _, idxes, weights = buf.sample(1, t=0)
    assert idxes == [0] and weights.tolist() == [1.0]


def test_fixed_insert_of_exactly_buffer_size_sets_priorities():
    # pymarl2 set no priority when an insert left buffer_index unchanged: all stayed 0.
    buf = make(alpha=1.0)
    buf.insert_episode_batch(episodes(4))
    np.testing.assert_array_equal(buf._sampler.priorities(np.arange(4)), [1.0] * 4)
    buf.update_priorities([0, 1, 2, 3], [2.0, 3.0, 0.5, 1.0])
    buf.insert_episode_batch(episodes(6, first=10))  # larger than the buffer: slots 0..3 all rewritten
    np.testing.assert_array_equal(buf._sampler.priorities(np.arange(4)), [3.0] * 4)


def test_fixed_beta_stops_at_one_after_t_max():
    buf = make(t_max=10)
    buf.insert_episode_batch(episodes(2))
    buf.sample(2, t=50)
    assert buf.beta == 1.0


def test_fixed_updates_for_overwritten_episodes_are_skipped():
    # pymarl2 applied the priority to the newer episode now in the slot.
    buf = make(alpha=1.0)
    buf.insert_episode_batch(episodes(4))
    random.seed(0)
    _, idxes, _ = buf.sample(4, t=0)
    buf.insert_episode_batch(episodes(1, first=20))  # overwrites slot 0
    buf.update_priorities(idxes, [7.0] * 4)
    assert buf.stale_updates == idxes.count(0)
    # The new episode in slot 0 keeps the max priority it got on insert; sampled slots 1..3 get 7.
    expected = [1.0] + [7.0 if i in idxes else 1.0 for i in (1, 2, 3)]
    np.testing.assert_array_equal(buf._sampler.priorities(np.arange(4)), expected)
    assert 0 in idxes


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_invalid_priorities_raise_typed_errors(bad):
    buf = make()
    buf.insert_episode_batch(episodes(3))
    with pytest.raises(PriorityError, match="for index 2"):
        buf.update_priorities([1, 2], torch.tensor([1.0, bad]))
    with pytest.raises(IndexOutOfRangeError, match="index 3 is outside the 3 stored"):
        buf.update_priorities([3], [1.0])


def test_sample_more_than_stored_raises_assertion_like_the_base_buffer():
    buf = make()
    buf.insert_episode_batch(episodes(2))
    with pytest.raises(AssertionError, match="sample size 3 exceeds the 2 stored"):
        buf.sample(3, t=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fixed_device_is_honoured():
    # pymarl2 ignored ``device`` and kept storage on the CPU.
    gpu = make(device="cuda")
    gpu.insert_episode_batch(episodes(2))
    assert gpu.sample(2, t=0)[0]["reward"].device.type == "cuda"


def test_all_zero_priorities_raise_a_typed_error_before_drawing_or_counting():
    buf = make(size=4)
    buf.insert_episode_batch(episodes(4))
    buf.update_priorities([0, 1, 2, 3], [0.0] * 4)
    random.seed(5)
    state, beta, drawn = random.getstate(), buf.beta, buf._sampler.samples_drawn
    with pytest.raises(InsufficientDataError, match="priorities of all 4 stored episodes are 0"):
        buf.sample(2, t=50)
    assert random.getstate() == state and buf.beta == beta and buf._sampler.samples_drawn == drawn
    assert issubclass(InsufficientDataError, ValueError)


def _pymarl2_weights(priorities, alpha, idxes, stored, beta):
    """pymarl2's weight loop, in Python floats."""
    powered = [float(p) ** alpha for p in priorities]
    total = sum(powered)  # (the xreplay tree sums node by node; compared with a tolerance below)
    p_min = min(p for p in powered if p > 0) / total
    max_weight = (p_min * stored) ** (-beta)
    return [((powered[i] / total) * stored) ** (-beta) / max_weight for i in idxes]


def test_importance_weights_follow_pymarl2_formula_in_float64():
    buf = make(size=8, alpha=0.7, beta=0.3, t_max=1000)
    buf.insert_episode_batch(episodes(8))
    priorities = np.array([0.013, 5.7, 0.51, 2.2, 3.3, 1.1, 4.9, 0.31])
    buf.update_priorities(list(range(8)), priorities)
    random.seed(3)
    _, idxes, weights = buf.sample(8, t=123)
    beta = 0.3 + 123 * (0.7 / 1000)
    assert buf.beta == beta
    expected = _pymarl2_weights(priorities, 0.7, idxes, 8, beta)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=1e-14, atol=0)
