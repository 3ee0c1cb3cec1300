import random

import pytest
import torch

from xreplay.compat.ding import (
    BufferedData,
    DequeBuffer,
    clone_object,
    group_sample,
    padding,
    sample_range_view,
    staleness_check,
    use_time_check,
)


def test_middleware_order_first_registered_is_outermost():
    calls = []

    def make(name):
        def mw(action, chain, *args, **kwargs):
            calls.append((name, action, args, kwargs))
            return chain(*args, **kwargs)

        return mw

    buf = DequeBuffer(size=4).use(make("a")).use(make("b"))
    buf.push(1, meta={"m": 1})
    assert calls == [("a", "push", (1,), {"meta": {"m": 1}}), ("b", "push", (1,), {"meta": {"m": 1}})]


def test_middleware_may_short_circuit_and_post_process():
    buf = DequeBuffer(size=4)
    buf.use(lambda action, chain, *a, **k: None if action == "push" else chain(*a, **k))
    assert buf.push(1) is None and buf.count() == 0


def test_middleware_added_later_affects_later_calls():
    buf = DequeBuffer(size=4)
    buf.push(1)
    buf.use(lambda action, chain, *a, **k: "hooked" if action == "sample" else chain(*a, **k))
    assert buf.sample(1) == "hooked"


def test_chain_positional_replace_from_middleware():
    buf = DequeBuffer(size=4).use(
        lambda action, chain, size, replace=False: chain(size, replace) if action == "sample" else chain(size)
    )
    for i in range(3):
        buf.push(i)
    assert len(buf.sample(2)) == 2


def test_clone_object_protects_dict_list_tensor_payloads():
    buf = DequeBuffer(size=4).use(clone_object())
    payload = {"t": torch.zeros(2), "l": [1, 2]}
    buf.push(payload)
    payload["t"] += 1
    payload["l"].append(3)
    sample = buf.sample(1)[0]
    assert sample.data["t"].sum().item() == 0 and sample.data["l"] == [1, 2]
    sample.data["l"].append(9)
    assert buf.storage[0].data["l"] == [1, 2]


def test_use_time_check_deletes_after_max_use():
    buf = DequeBuffer(size=10)
    buf.use(use_time_check(buf, max_use=2))
    for i in range(6):
        buf.push(i)
    first = buf.sample(6)
    assert {r.meta["use_count"] for r in first} == {1}
    buf.sample(6)
    assert buf.count() == 0
    with pytest.raises(ValueError):
        buf.sample(6)


def test_use_time_check_counts_duplicates_separately():
    buf = DequeBuffer(size=10)
    buf.use(use_time_check(buf, max_use=3))
    buf.push(0)
    sample = buf.sample(2, replace=True)
    assert [r.meta["use_count"] for r in sample] == [1, 2]
    sample = buf.sample(1)
    assert sample[0].meta["use_count"] == 3 and buf.count() == 0


def test_staleness_check_sequence():
    buf = DequeBuffer(size=10)
    buf.use(staleness_check(buf, max_staleness=10))
    for i in range(6):
        buf.push(i, meta={"train_iter_data_collected": 0})
    assert len(buf.sample(size=6, train_iter_sample_data=9)) == 6
    assert len(buf.sample(10, 6)) == 6  # the first positional argument is the train iter
    for i in range(2):
        buf.push(i, meta={"train_iter_data_collected": 5})
    with pytest.raises(ValueError):
        buf.sample(size=6, train_iter_sample_data=11)
    assert buf.count() == 2 and buf.storage[0].meta["staleness"] == 6


def test_staleness_check_needs_keyword_meta():
    buf = DequeBuffer(size=10)
    buf.use(staleness_check(buf))
    with pytest.raises(AssertionError):
        buf.push(1, {"train_iter_data_collected": 0})
    with pytest.raises(AssertionError):
        buf.push(1, meta={})
    buf.push(1, meta={"train_iter_data_collected": 0})
    with pytest.raises(TypeError):
        buf.sample(1, train_iter_sample_data=1)


def test_padding_random_equalises_groups():
    buf = DequeBuffer(size=20).use(padding())
    for g, n in enumerate([3, 3, 2, 2]):
        for i in range(n):
            buf.push((g, i), {"g": g})
    assert [len(x) for x in buf.sample(4, groupby="g")] == [3, 3, 3, 3]


def test_padding_unknown_policy_pads_nothing():
    buf = DequeBuffer(size=20).use(padding(policy="other"))
    for g, n in enumerate([3, 1]):
        for i in range(n):
            buf.push((g, i), {"g": g})
    assert sorted(len(x) for x in buf.sample(2, groupby="g")) == [1, 3]


def test_group_sample_with_padding_outermost():
    buf = DequeBuffer(size=20).use(padding(policy="none")).use(group_sample(size_in_group=5))
    for g, n in enumerate([4, 6]):
        for i in range(n):
            buf.push((g, i), {"g": g})
    groups = buf.sample(2, groupby="g")
    assert [len(x) for x in groups] == [5, 5]
    short = [x for x in groups if x[0].data[0] == 0][0]
    assert [r.data is None for r in short] == [False] * 4 + [True]
    assert short[-1] == BufferedData(None, None, None)


def test_group_sample_needs_keyword_groupby():
    buf = DequeBuffer(size=4).use(group_sample(2))
    buf.push(1, {"g": 0})
    with pytest.raises(Exception):  # noqa: B017 - DI-engine raises a plain Exception; ours is a TypeError
        buf.sample(1, None, False, None, False, "g")


def test_sample_range_view_positions_and_dropped_kwargs():
    buf = DequeBuffer(size=10)
    for i in range(10):
        buf.push(i)
    mid = buf.view().use(sample_range_view(buf, start=-5, end=-2))
    tail = buf.view().use(sample_range_view(buf, start=-2))
    random.seed(0)
    assert {r.data for _ in range(50) for r in mid.sample(2)} == {5, 6, 7}
    assert {r.data for _ in range(20) for r in tail.sample(1)} == {8, 9}
    with pytest.raises(AssertionError, match="One of size"):
        mid.sample(size=2)
    with pytest.raises(AssertionError):
        sample_range_view(buf)


def test_cached_pipeline_follows_replaced_and_added_middleware():
    import copy
    import dataclasses

    from xreplay.compat.ding import DequeBuffer

    @dataclasses.dataclass
    class Tag:
        tag: str

        def __call__(self, action, chain, *args, **kwargs):
            result = chain(*args, **kwargs)
            return [self.tag, *result] if action == "sample" else result

    buf = DequeBuffer(size=4)
    buf.push(1)
    first = Tag("a")
    buf.use(first)
    assert buf.sample(1)[0] == "a"
    buf._middleware[0] = Tag("a")  # equal but another object: its own hook must run
    buf._middleware[0].tag = "b"
    assert buf.sample(1)[0] == "b"
    buf.use(Tag("c"))
    assert buf.sample(1)[:2] == ["b", "c"]
    clone = copy.deepcopy(buf)
    assert clone.sample(1)[:2] == ["b", "c"] and clone._chains.keys() <= {"sample"}
