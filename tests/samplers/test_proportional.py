import numpy as np
import pytest

from xreplay.errors import PriorityError
from xreplay.samplers.proportional import ProportionalSampler, check_priorities


def test_sample_uses_global_numpy_rng_stratified():
    s = ProportionalSampler(8, alpha=1.0)
    s.set(np.arange(8), np.ones(8))
    np.random.seed(1)
    got = s.sample(8)
    np.random.seed(1)
    u = np.random.uniform(size=8)
    assert got.tolist() == np.floor(np.arange(8) + u).astype(int).tolist()


def test_weights_normalised_by_min():
    s = ProportionalSampler(4, alpha=1.0)
    s.set(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    w = s.weights(np.arange(4), count=4, beta=1.0)
    assert w.max() == pytest.approx(1.0) and w.tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25])


def test_empty_sampler_asserts():
    with pytest.raises(AssertionError):
        ProportionalSampler(2).sample(1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5])
def test_check_priorities_names_item_and_value(bad):
    with pytest.raises(PriorityError, match=r"item 'b' is"):
        check_priorities([1.0, bad], names=["a", "b"])


def test_clear_slots_removes_mass():
    s = ProportionalSampler(4, alpha=1.0)
    s.set(np.arange(4), np.ones(4))
    s.clear_slots(np.array([0, 1]))
    assert s.total() == 2.0 and s.min_tree.root() == 1.0
