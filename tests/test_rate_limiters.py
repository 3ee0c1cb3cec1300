import math
import multiprocessing
import pickle
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.errors import RateLimiterTimeout, XReplayError
from xreplay.rate_limiters import MinSize, Queue, RateLimiter, SampleToInsertRatio


def test_min_size_blocks_sampling_until_reached_and_never_inserts():
    limiter = MinSize(5)
    for _ in range(4):
        assert limiter.try_insert(1)
    assert not limiter.can_sample(1)
    limiter.insert(1)
    assert limiter.try_sample(10_000)
    assert limiter.try_insert(10_000)


def test_min_size_counts_deletes():
    limiter = MinSize(3)
    limiter.insert(3)
    limiter.delete(1)
    assert not limiter.can_sample(1)


@pytest.mark.parametrize("spi", [0.25, 1.0, 4.0, 32.0])
def test_sample_to_insert_ratio_holds_within_error_buffer(spi):
    error = max(64.0, 4 * spi)
    limiter = SampleToInsertRatio(spi, min_size_to_sample=10, error_buffer=error)
    offset = spi * 10
    # Greedy: the actor inserts while allowed, the learner samples batches of 8 while allowed.
    for _ in range(2000):
        inserted = limiter.try_insert(1)
        sampled = limiter.try_sample(8) if not inserted else False
        if not inserted and not sampled:
            pytest.fail(f"deadlock: {limiter}")
        c = limiter.counters()
        if c["inserts"] > 10:
            diff = c["inserts"] * spi - c["samples"]
            assert offset - error <= diff <= offset + error + spi


def test_sample_blocks_until_another_thread_inserts():
    limiter = SampleToInsertRatio(1.0, min_size_to_sample=1, error_buffer=4.0)
    done = []

    def learner():
        limiter.sample(1, timeout=5)
        done.append(time.monotonic())

    thread = threading.Thread(target=learner)
    thread.start()
    time.sleep(0.05)
    assert not done
    limiter.insert(1)
    thread.join(5)
    assert done


def test_timeout_is_typed_and_states_the_counters():
    limiter = SampleToInsertRatio(2.0, min_size_to_sample=3, error_buffer=6.0)
    limiter.insert(1)
    with pytest.raises(RateLimiterTimeout) as info:
        limiter.sample(1, timeout=0.01)
    assert isinstance(info.value, (XReplayError, TimeoutError))
    assert "inserts=1" in str(info.value) and "samples=0" in str(info.value)
    assert limiter.counters() == {"inserts": 1, "samples": 0, "deletes": 0}


def test_insert_blocks_when_learner_falls_behind_then_timeout():
    limiter = SampleToInsertRatio(1.0, min_size_to_sample=2, error_buffer=2.0)
    limiter.insert(4)  # diff 4 = offset 2 + error 2
    with pytest.raises(RateLimiterTimeout, match="insert of 1 items"):
        limiter.insert(1, timeout=0.01)
    limiter.sample(1)
    limiter.insert(1, timeout=0.01)


def test_queue_samples_each_item_once_and_bounds_waiting_items():
    q = Queue(3)
    q.insert(3)
    assert not q.try_insert(1)
    assert q.try_sample(2) and q.try_sample(1)
    assert not q.try_sample(1)
    assert q.try_insert(3)


def test_impossible_sample_is_refused_at_once():
    limiter = SampleToInsertRatio(1.0, min_size_to_sample=1, error_buffer=8.0)
    with pytest.raises(ValueError, match="never be allowed"):
        limiter.sample(100, timeout=None)


def test_impossible_insert_above_min_size_is_refused_instead_of_hanging():
    limiter = SampleToInsertRatio(1.0, min_size_to_sample=2, error_buffer=4.0)
    limiter.insert(2)
    with pytest.raises(ValueError, match="can never be allowed"):
        limiter.insert(50, timeout=None)


def test_large_first_insert_below_min_size_is_allowed():
    limiter = SampleToInsertRatio(1.0, min_size_to_sample=100, error_buffer=4.0)
    limiter.insert(100, timeout=0)
    assert limiter.counters()["inserts"] == 100


@pytest.mark.parametrize(
    "make, error",
    [
        pytest.param(lambda: SampleToInsertRatio(4.0, 10, 1.0), "narrower", id="error_buffer_too_small"),
        pytest.param(lambda: SampleToInsertRatio(-1.0, 10, 10.0), "samples_per_insert", id="negative_ratio"),
        pytest.param(lambda: SampleToInsertRatio(math.nan, 10, 10.0), "samples_per_insert", id="nan_ratio"),
        pytest.param(lambda: RateLimiter(1.0, 0, 0.0, 1.0), "min_size_to_sample", id="zero_min_size"),
        pytest.param(lambda: RateLimiter(1.0, 1, 2.0, 1.0), "min_diff", id="inverted_range"),
        pytest.param(lambda: Queue(0), "queue size", id="empty_queue"),
        pytest.param(lambda: MinSize(2).insert(-1), "insert count", id="negative_insert"),
        pytest.param(lambda: MinSize(2).sample(1.5), "sample count", id="fractional_sample"),
        pytest.param(lambda: MinSize(2).insert(1, timeout=-1), "timeout", id="negative_timeout"),
    ],
)
def test_bad_parameters_are_refused_with_the_name(make, error):
    with pytest.raises((ValueError, TypeError), match=error):
        make()


def test_close_wakes_waiters():
    limiter = MinSize(10)
    errors = []

    def learner():
        try:
            limiter.sample(1)
        except RateLimiterTimeout as exc:
            errors.append(exc)

    thread = threading.Thread(target=learner)
    thread.start()
    time.sleep(0.05)
    limiter.close()
    thread.join(5)
    assert errors and "closed" in str(errors[0])


def test_state_dict_round_trip_and_validation():
    limiter = SampleToInsertRatio(2.0, 4, 8.0)
    limiter.insert(6)
    limiter.sample(3)
    limiter.delete(1)
    other = SampleToInsertRatio(2.0, 4, 8.0)
    other.load_state_dict(limiter.state_dict())
    assert other.counters() == limiter.counters()
    with pytest.raises(ValueError, match="samples_per_insert"):
        SampleToInsertRatio(1.0, 4, 8.0).load_state_dict(limiter.state_dict())
    bad = {**limiter.state_dict(), "inserts": -3}
    with pytest.raises(ValueError, match="inserts"):
        other.load_state_dict(bad)
    assert other.counters()["inserts"] == 6


def test_in_process_limiter_refuses_to_pickle():
    with pytest.raises(TypeError, match="shared=True"):
        pickle.dumps(MinSize(1))


@settings(max_examples=50, deadline=None)
@given(
    spi=st.floats(0.1, 16.0),
    min_size=st.integers(1, 50),
    ops=st.lists(st.tuples(st.sampled_from(["insert", "sample", "delete"]), st.integers(0, 20)), max_size=80),
)
def test_limiter_matches_reference_rule(spi, min_size, ops):
    error = 2 * max(1.0, spi) + 20
    limiter = SampleToInsertRatio(spi, min_size, error)
    inserts = samples = deletes = 0
    low, high = spi * min_size - error, spi * min_size + error
    for op, n in ops:
        if op == "insert":
            expected = inserts + n - deletes <= min_size or (inserts + n) * spi - samples <= high
            assert limiter.try_insert(n) == expected
            inserts += n * expected
        elif op == "sample":
            if n > high - low:
                continue
            expected = inserts - deletes >= min_size and inserts * spi - samples - n >= low
            assert limiter.try_sample(n) == expected
            samples += n * expected
        else:
            n = min(n, inserts - deletes)
            limiter.delete(n)
            deletes += n
        assert limiter.counters() == {"inserts": inserts, "samples": samples, "deletes": deletes}


def _actor(limiter, count):
    for _ in range(count):
        limiter.insert(1, timeout=20)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_shared_limiter_paces_worker_processes(method):
    ctx = multiprocessing.get_context(method)
    limiter = SampleToInsertRatio(2.0, min_size_to_sample=4, error_buffer=6.0, shared=True, context=ctx)
    workers = [ctx.Process(target=_actor, args=(limiter, 50)) for _ in range(2)]
    for w in workers:
        w.start()
    sampled = 0
    while sampled < 198:  # diff may not fall below min_diff = 2: the last 2 samples need more inserts
        limiter.sample(1, timeout=20)
        sampled += 1
        c = limiter.counters()
        assert c["inserts"] * 2.0 - c["samples"] <= 8.0 + 6.0 + 2.0  # offset + error + one insert
    for w in workers:
        w.join(20)
        assert w.exitcode == 0
    assert limiter.counters() == {"inserts": 100, "samples": 198, "deletes": 0}
    assert not limiter.try_sample(1)
