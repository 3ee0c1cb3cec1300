import numpy as np
import pytest

from xreplay.errors import InsufficientDataError
from xreplay.samplers import UniformSampler


def test_without_replacement_draws_distinct_slots_in_range():
    slots = UniformSampler().sample(np.random.default_rng(1), 32, size=40, replace=False).indices
    assert len(set(slots.tolist())) == 32 and slots.min() >= 0 and slots.max() < 40


def test_same_seed_same_draws():
    a = UniformSampler().sample(np.random.default_rng(7), 16, size=1000, replace=False).indices
    b = UniformSampler().sample(np.random.default_rng(7), 16, size=1000, replace=False).indices
    assert a.tolist() == b.tolist()


def test_with_replacement_may_exceed_size():
    slots = UniformSampler().sample(np.random.default_rng(0), 50, size=3, replace=True).indices
    assert slots.shape == (50,) and set(slots.tolist()) <= {0, 1, 2}


def test_uniform_frequencies():
    draw = UniformSampler().sample(np.random.default_rng(3), 60000, size=6, replace=True)
    counts = np.bincount(draw.indices, minlength=6)
    assert np.all(np.abs(counts / 60000 - 1 / 6) < 0.01)


@pytest.mark.parametrize(
    ("n", "size", "replace"),
    [pytest.param(5, 4, False, id="too_many"), pytest.param(1, 0, True, id="empty_with_replacement")],
)
def test_insufficient_names_both_numbers(n, size, replace):
    with pytest.raises(InsufficientDataError, match=f"sample size {n} exceeds the {size} stored"):
        UniformSampler().sample(np.random.default_rng(0), n, size=size, replace=replace)
