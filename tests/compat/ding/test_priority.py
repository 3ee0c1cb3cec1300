import math

import numpy as np
import pytest
import torch

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check
from xreplay.errors import PriorityError


def per_buffer(n, size=None, **kw):
    buf = DequeBuffer(size=size or n)
    per = PriorityExperienceReplay(buf, **kw)
    buf.use(per)
    for i in range(n):
        buf.push({"obs": i})
    return buf, per


def test_full_sample_with_equal_priorities_returns_each_once_in_slot_order():
    buf, _ = per_buffer(20)
    np.random.seed(0)
    assert [r.data["obs"] for r in buf.sample(20)] == list(range(20))


def test_is_weights_in_meta_and_data():
    buf, per = per_buffer(8)
    buf.update(buf.storage[0].index, None, {**buf.storage[0].meta, "priority": 5.0})
    sample = buf.sample(4)
    for rec in sample:
        w = rec.meta["priority_IS"]
        assert 0 < w <= 1 and rec.data["priority_IS"].dtype == torch.float32
        assert rec.data["priority_IS"].shape == (1,) and math.isclose(
            rec.data["priority_IS"].item(), w, rel_tol=1e-6
        )
    assert per.IS_weight_power_factor == pytest.approx(0.4 + 0.6 / 1e5)


def test_is_weight_formula():
    buf, per = per_buffer(4, IS_weight_power_factor=0.5)
    prios = [1.0, 2.0, 3.0, 4.0]
    for rec, p in zip(list(buf.storage), prios, strict=False):
        buf.update(rec.index, None, {**rec.meta, "priority": p})
    leaves = np.array([(p + 1e-5) ** 0.6 for p in prios])
    total = leaves.sum()
    sample = buf.sample(4)
    max_w = (4 * leaves.min() / total) ** -0.5
    for rec in sample:
        expected = (4 * leaves[rec.meta["priority_idx"]] / total) ** -0.5 / max_w
        assert rec.meta["priority_IS"] == pytest.approx(expected)


def test_update_priority_then_sample_sees_it():
    buf, per = per_buffer(5)
    for rec in buf.sample(5):
        meta = rec.meta
        meta["priority"] = 3.0
        assert buf.update(rec.index, None, meta) is None
    assert all(r.meta["priority"] == 3.0 for r in buf.sample(5))
    assert per.max_priority == pytest.approx(3.0 + 1e-5)


def test_update_requires_data_argument():
    buf, _ = per_buffer(2)
    with pytest.raises(TypeError):
        buf.update(buf.storage[0].index, meta={"priority": 1.0})
    assert buf.update("unknown", None, {"priority": 1.0}) is None


def test_push_priority_from_data_or_meta():
    buf = DequeBuffer(size=4)
    per = PriorityExperienceReplay(buf)
    buf.use(per)
    rec = buf.push({"priority": 2.5, "x": 1})
    assert rec.meta["priority"] == 2.5 and "priority" not in rec.data and rec.meta["priority_idx"] == 0
    meta = {}
    rec = buf.push({"x": 2}, meta=meta)
    assert meta is rec.meta and meta["priority"] == per.max_priority
    with pytest.raises(TypeError):
        buf.push(3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_invalid_priorities_raise_naming_index_and_value(bad):
    buf, per = per_buffer(3)
    rec = buf.storage[1]
    with pytest.raises(PriorityError, match=rec.index):
        buf.update(rec.index, None, {**rec.meta, "priority": bad})
    with pytest.raises(PriorityError, match=str(bad)):
        per.update_priorities([rec.index], [bad])
    with pytest.raises(PriorityError):
        buf.push({"x": 1}, meta={"priority": bad})
    assert buf.count() == 3


def test_delete_drops_slot_from_trees():
    buf, per = per_buffer(6)
    buf.delete(buf.storage[2].index)
    assert len(per.buffer_idx) == 5 and per.sum_tree[2] == 0.0
    buf.delete(buf.storage[0].index)
    assert len(per.buffer_idx) == 4


def test_clear_keeps_beta():
    buf, per = per_buffer(4)
    buf.sample(2)
    beta = per.IS_weight_power_factor
    assert buf.clear() is None
    assert per.buffer_idx == {} and per.sum_tree.root() == 0.0 and per.IS_weight_power_factor == beta
    with pytest.raises(AssertionError):
        buf.sample(1)


def test_update_priorities_batch_matches_single_updates():
    a, per_a = per_buffer(16)
    b, per_b = per_buffer(16)
    prios = np.linspace(0.1, 3.0, 16)
    for rec, p in zip(list(a.storage), prios, strict=False):
        a.update(rec.index, None, {**rec.meta, "priority": float(p)})
    assert per_b.update_priorities([r.index for r in b.storage], prios) == 16
    np.testing.assert_allclose(per_a.sum_tree.leaves(), per_b.sum_tree.leaves())
    assert [r.meta["priority"] for r in a.storage] == [r.meta["priority"] for r in b.storage]


def test_prioritized_sampling_is_proportional():
    buf, per = per_buffer(4, priority_power_factor=1.0, IS_weight=False)
    per.update_priorities([r.index for r in buf.storage], [1.0, 1.0, 1.0, 5.0])
    np.random.seed(0)
    counts = np.zeros(4)
    for _ in range(400):
        for r in buf.sample(1):
            counts[r.data["obs"]] += 1
    assert counts[3] / counts.sum() == pytest.approx(5 / 8, abs=0.06)


def test_per_with_use_time_check_works():
    buf = DequeBuffer(size=10)
    buf.use(use_time_check(buf, max_use=1)).use(PriorityExperienceReplay(buf))
    for i in range(4):
        buf.push({"x": i})
    assert len(buf.sample(4)) == 4 and buf.count() == 0


def test_inner_middleware_editing_the_sampled_indices_gets_the_records_it_asks_for():
    from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay

    buf = DequeBuffer(size=8)
    per = PriorityExperienceReplay(buf, IS_weight=False)

    def reverse_in_place(action, chain, *args, **kwargs):
        if action == "sample":
            kwargs["indices"].reverse()  # same list object, other order
        return chain(*args, **kwargs)

    buf.use(per).use(reverse_in_place)
    for i in range(8):
        buf.push({"x": i}, meta={"priority": 1.0})
    assert [r.data["x"] for r in buf.sample(8)] == list(range(7, -1, -1))
    assert buf._store.slot_hint is None
