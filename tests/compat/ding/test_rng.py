import random

import pytest

from xreplay.compat.ding import rng
from xreplay.compat.ding.rng import sample_positions


@pytest.mark.parametrize("n", [1, 5, 86, 300, 1046, 65536, 65537, 100_000, 2**20 + 1, 2**32 - 1, 2**32 + 3])
@pytest.mark.parametrize("k", [0, 1, 6, 32, 256])
def test_equals_random_sample_and_leaves_the_same_state(n, k):
    for seed in range(5):
        random.seed(seed)
        try:
            expected = random.sample(range(n), k)
        except ValueError:
            expected = ValueError
        after = random.random()
        random.seed(seed)
        try:
            got = sample_positions(n, k)
        except ValueError:
            got = ValueError
        assert got == expected and random.random() == after


def test_repeats_are_redrawn_like_random_sample():
    # n just above the pool threshold for k=32 (277): repeats are frequent.
    for seed in range(50):
        random.seed(seed)
        expected = random.sample(range(278), 32)
        random.seed(seed)
        assert sample_positions(278, 32) == expected


def test_a_replaced_random_sample_is_used(monkeypatch):
    calls = []

    def fake(population, k):
        calls.append((len(population), k))
        return list(range(k))

    monkeypatch.setattr(random, "sample", fake)
    assert sample_positions(10_000, 3) == [0, 1, 2] and calls == [(10_000, 3)]


def test_self_check_passes_on_this_python():
    assert rng._self_check()
