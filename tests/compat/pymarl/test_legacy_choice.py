"""legacy_choice draws what numpy.random.choice(n, k, replace=False) draws, and leaves numpy's global state alike."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.compat.pymarl import legacy_choice as module
from xreplay.compat.pymarl.legacy_choice import kernel_available, legacy_choice

needs_kernel = pytest.mark.skipif(not kernel_available(), reason="numba is not installed: numpy's own call runs")


def numpy_then_mine(seed: int, burn: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (numpy's items, numpy's next draws, legacy_choice's items, its next draws) from one seeded state."""
    np.random.seed(seed)
    np.random.random(burn)  # start mid-block: the generator's position is anywhere in its 624 words
    expected = np.random.choice(n, k, replace=False)
    after_expected = np.random.randint(0, 2**31, 4)
    np.random.seed(seed)
    np.random.random(burn)
    got = legacy_choice(n, k)
    return expected, after_expected, got, np.random.randint(0, 2**31, 4)


@needs_kernel
@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    burn=st.integers(0, 700),
    n=st.one_of(st.integers(1, 40), st.integers(1, 20_000)),
    data=st.data(),
)
def test_same_items_and_same_global_state_as_numpy(seed, burn, n, data):
    k = data.draw(st.integers(0, min(n, 64)))
    expected, after_expected, got, after_got = numpy_then_mine(seed, burn, n, k)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert np.array_equal(after_got, after_expected)  # a program drawing from np.random afterwards sees no change


@needs_kernel
@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 2), (624, 1), (625, 625), (5000, 32), (2**17 + 3, 5)])
def test_edge_sizes_match_numpy(n, k):
    expected, after_expected, got, after_got = numpy_then_mine(7, 3, n, k)
    assert np.array_equal(got, expected) and np.array_equal(after_got, after_expected)


@pytest.mark.parametrize(("n", "k"), [(0, 0), (5, 0), (5000, 32)])
def test_numpy_runs_when_the_kernel_is_off(monkeypatch, n, k):
    monkeypatch.setattr(module, "_kernel", lambda: None)  # as with XREPLAY_NUMBA=0 or without numba
    expected, after_expected, got, after_got = numpy_then_mine(3, 1, n, k)
    assert np.array_equal(got, expected) and np.array_equal(after_got, after_expected)


@needs_kernel
def test_a_kernel_that_draws_otherwise_is_not_trusted():
    class Wrong:
        @staticmethod
        def choice_prefix(words, n, out):
            out[:] = np.arange(out.shape[0])

    assert not module._checked(Wrong)  # type: ignore[arg-type]
