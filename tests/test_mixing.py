import random

import pytest

from xreplay.compat.ding import DequeBuffer
from xreplay.mixing import MixedSampleError, sample_mixed


def buffers(*sizes):
    out = []
    for b, n in enumerate(sizes):
        buf = DequeBuffer(size=max(n, 1))
        for i in range(n):
            buf.push((b, i))
        out.append(buf)
    return out


def test_weights_truncate_and_concatenate_in_order():
    a, b, c = buffers(10, 10, 20)
    got = sample_mixed([(a, 1), (b, 2), (c, 3)], 3)
    assert [r.data[0] for r in got] == [0] * 3 + [1] * 6 + [2] * 9


def test_same_random_calls_as_sequential_samples():
    a, b = buffers(10, 10)
    random.seed(4)
    got = [r.data for r in sample_mixed([(a, 0.5), (b, 0.5)], 5)]
    random.seed(4)
    assert got == [r.data for r in a.sample(2)] + [r.data for r in b.sample(2)]


def test_names_the_buffer_that_falls_short():
    a, b = buffers(10, 1)
    with pytest.raises(
        MixedSampleError, match=r"buffer #1 \(DequeBuffer\) cannot supply its share of 4 items: it holds 1"
    ):
        sample_mixed([(a, 0.5), (b, 0.5)], 8)
    with pytest.raises(ValueError, match="buffer #0"):
        sample_mixed([(a, 0.1), (b, 0.5)], 2)


def test_native_episode_buffer_and_deque_buffer_mix():
    torch = pytest.importorskip("torch")
    from xreplay import EpisodeBuffer, Field, InsufficientDataError, Scheme, UniformSampler

    native = EpisodeBuffer(
        Scheme({"reward": Field((1,))}), capacity=8, max_seq_length=3, seed=0, sampler=UniformSampler(replace=False)
    )
    native.add({"reward": torch.ones(4, 3, 1)})
    (deque_buffer,) = buffers(6)
    got = sample_mixed([(deque_buffer, 0.5), (native, 0.5)], 4)
    assert [r.data[0] for r in got[:2]] == [0, 0] and got[2]["reward"].shape[0] == 2
    with pytest.raises(MixedSampleError, match=r"buffer #1 \(EpisodeBuffer\).*it holds 4") as info:
        sample_mixed([(deque_buffer, 0.5), (native, 1.0)], 10)
    assert isinstance(info.value.__cause__, InsufficientDataError)
