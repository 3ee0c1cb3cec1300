import copy
import random
from collections import deque

import pytest
import torch

from xreplay.compat.ding import BufferedData, DequeBuffer


def filled(n, size=None, **kw):
    buf = DequeBuffer(size=size or n, **kw)
    for i in range(n):
        buf.push(i, meta={"env": i % 3})
    return buf


def test_push_returns_stored_record_with_meta_by_reference():
    buf = DequeBuffer(size=4)
    meta = {"a": 1}
    rec = buf.push([1], meta=meta)
    assert rec.meta is meta and buf.storage[0] is rec
    assert len(rec.index) == 32 and int(rec.index, 16) >= 0 and rec.index == rec.index.lower()


def test_empty_meta_becomes_new_dict():
    buf = DequeBuffer(size=2)
    assert buf.push(1).meta == {}


def test_full_buffer_evicts_oldest_and_indices_track_positions():
    buf = filled(10, size=4)
    assert [d.data for d in buf.storage] == [6, 7, 8, 9]
    assert len(buf.indices) == 4
    for i, rec in enumerate(buf.storage):
        assert buf.indices.get(rec.index) == i
    assert buf.storage[-1].data == 9 and buf.get(-2).data == 8
    with pytest.raises(IndexError):
        buf.get(4)


def test_sample_returns_stored_objects_and_matches_global_random():
    buf = filled(20)
    random.seed(3)
    got = buf.sample(5)
    random.seed(3)
    expected = random.sample(list(buf.storage), k=5)
    assert all(a is b for a, b in zip(got, expected, strict=False))


def test_sample_with_replace_matches_random_choices():
    buf = filled(7)
    random.seed(1)
    got = buf.sample(12, replace=True)
    random.seed(1)
    expected = random.choices(list(buf.storage), k=12)
    assert [r.index for r in got] == [r.index for r in expected]


def test_independence_copies_repeats():
    buf = DequeBuffer(size=4)
    buf.push({"x": torch.zeros(1)})
    s = buf.sample(3, replace=True)
    s[0].data["x"] += 1
    assert s[1].data["x"].item() == 0 and s[0] is buf.storage[0] and s[1] is not buf.storage[0]


@pytest.mark.parametrize(
    "size,indices", [pytest.param(0, None, id="size_zero"), pytest.param(None, [], id="no_indices")]
)
def test_size_and_indices_empty_asserts(size, indices):
    with pytest.raises(AssertionError, match="One of size and indices"):
        filled(3).sample(size, indices)


def test_argument_consistency_asserts():
    buf = filled(3)
    idx = [buf.storage[0].index]
    with pytest.raises(AssertionError):
        buf.sample(2, indices=idx)
    with pytest.raises(AssertionError):
        buf.sample(indices=idx, groupby="env")
    with pytest.raises(AssertionError):
        buf.sample(2, unroll_len=2)


def test_insufficient_raises_value_error_with_both_numbers():
    with pytest.raises(ValueError, match=r"There are less than 5 records/groups in buffer\(3\)"):
        filled(3).sample(5)


def test_ignore_insufficient_returns_empty_list():
    assert filled(3).sample(5, ignore_insufficient=True) == []


def test_replace_on_empty_population_is_index_error():
    with pytest.raises(IndexError):
        DequeBuffer(size=3).sample(2, replace=True, ignore_insufficient=True)


def test_sample_by_indices_keeps_order_and_duplicates():
    buf = filled(5)
    idx = [buf.storage[3].index, buf.storage[1].index, buf.storage[3].index]
    got = buf.sample(indices=idx)
    assert [r.data for r in got] == [3, 1, 3] and got[0] is buf.storage[3] and got[2] is not got[0]
    with pytest.raises(KeyError):
        buf.sample(indices=["nope"])


def test_sample_range_limits_population_and_rejects_negative():
    buf = filled(10)
    random.seed(0)
    assert all(5 <= r.data < 8 for r in buf.sample(3, sample_range=slice(5, 8)))
    with pytest.raises(ValueError):
        buf.sample(1, sample_range=slice(-2, None), ignore_insufficient=True)
    with pytest.raises(ValueError, match=r"buffer\(10\)"):
        buf.sample(4, sample_range=slice(5, 8))


def test_positional_replace_lands_in_indices_slot():
    buf = filled(5)
    assert len(buf.sample(3, False)) == 3


def test_update_replaces_meta_and_data():
    buf = filled(3)
    rec = buf.storage[1]
    new_meta = {"env": 9}
    assert buf.update(rec.index, data="new", meta=new_meta) is True
    assert rec.data == "new" and rec.meta is new_meta
    assert buf.update(rec.index, data=None) is True and rec.data == "new"
    assert buf.update("missing", data=1) is False


def test_delete_single_and_many_and_unknown():
    buf = filled(10)
    buf.delete(buf.storage[0].index)
    buf.delete([buf.storage[0].index, "unknown", buf.storage[4].index])
    assert [r.data for r in buf.storage] == [2, 3, 4, 6, 7, 8, 9]
    buf.delete("unknown")
    assert buf.count() == 7


def test_get_by_index_and_clear():
    buf = filled(4)
    rec = buf.storage[2]
    assert buf.get_by_index(rec.index) is rec
    buf.sample(1, groupby="env")
    buf.clear()
    assert buf.count() == 0 and len(buf.indices) == 0 and buf.meta_index == {}
    with pytest.raises(KeyError):
        buf.get_by_index(rec.index)


def test_view_shares_records_but_not_middleware():
    buf = DequeBuffer(size=10, sliced=True)
    view = buf.view()
    view.use(lambda action, chain, *a, **k: chain(*a, **k))
    view.push(1)
    assert buf.count() == 1 and buf._middleware == [] and view.sliced is False


def test_deepcopy_is_independent():
    buf = filled(4)
    other = copy.deepcopy(buf)
    other.push(99)
    assert buf.count() == 4 and [r.data for r in other.storage] == [1, 2, 3, 99]


def test_dataloader_iterates_records():
    buf = filled(6)
    loader = torch.utils.data.DataLoader(buf, batch_size=2, shuffle=False, collate_fn=lambda x: x)
    batches = list(loader)
    assert len(batches) == 3 and all(isinstance(r, BufferedData) for b in batches for r in b)


def test_buffered_data_equality_and_no_hash():
    a = BufferedData(data=1, index="i", meta={})
    assert a == BufferedData(1, "i", {}) and a.__hash__ is None
    assert 5 not in filled(6).sample(5)


def test_meta_index_assigned_list_is_appended():
    buf = DequeBuffer(size=10)
    buf.meta_index = {"label": []}
    for i in range(4):
        buf.push(i, {"label": i % 2})
    assert buf.meta_index["label"] == [0, 1, 0, 1]
    groups = buf.sample(2, groupby="label")
    assert sorted(len(g) for g in groups) == [2, 2]
    assert all(len({r.meta["label"] for r in g}) == 1 for g in groups)


def test_meta_index_built_lazily_as_deque():
    buf = filled(5)
    buf.sample(2, groupby="env")
    assert isinstance(buf.meta_index["env"], deque) and list(buf.meta_index["env"]) == [0, 1, 2, 0, 1]


def test_group_sampling_records_in_storage_order():
    buf = filled(12, size=9)
    random.seed(5)
    for group in buf.sample(3, groupby="env"):
        datas = [r.data for r in group]
        assert datas == sorted(datas) and len({d % 3 for d in datas}) == 1 and len(datas) == 3


def test_group_shortfall_without_replace_not_suppressed():
    with pytest.raises(ValueError, match="There are less than 4 groups"):
        filled(6).sample(4, groupby="env", ignore_insufficient=True)


def test_group_replace_same_group_twice_shares_list():
    buf = DequeBuffer(size=4)
    for i in range(3):
        buf.push(i, {"g": 0})
    result = buf.sample(2, groupby="g", replace=True)
    assert result[0] is result[1]
    assert all(r is not s for r, s in zip(result[0], buf.storage, strict=False))


def test_unroll_len_filters_small_groups():
    buf = DequeBuffer(size=10)
    for i in range(3):
        buf.push(i, {"g": 0})
    buf.push(3, {"g": 1})
    assert buf.sample(1, groupby="g", unroll_len=4, replace=True, ignore_insufficient=True) == []
    with pytest.raises(ValueError):
        buf.sample(1, groupby="g", unroll_len=4, replace=True)


def test_unroll_windows_are_contiguous_and_skip_last_window_by_default():
    buf = DequeBuffer(size=10)
    for i in range(6):
        buf.push(i, {"g": 0})
    starts = {buf.sample(1, groupby="g", unroll_len=2)[0][0].data for _ in range(300)}
    assert starts == {0, 1, 2, 3}


def test_sliced_windows_start_at_multiples_or_end():
    buf = DequeBuffer(size=20, sliced=True)
    for i in range(10):
        buf.push(i, {"g": 0})
    starts = set()
    for _ in range(300):
        window = buf.sample(1, groupby="g", unroll_len=4)[0]
        assert [r.data for r in window] == list(range(window[0].data, window[0].data + 4))
        starts.add(window[0].data)
    assert starts == {0, 4, 6}


def test_buffered_data_keeps_the_dataclass_api():
    import dataclasses
    import pickle

    from xreplay.compat.ding import BufferedData

    item = BufferedData(data=[1], index="i", meta={"k": 1})
    assert [f.name for f in dataclasses.fields(BufferedData)] == ["data", "index", "meta"]
    assert item == BufferedData([1], "i", {"k": 1}) and item != BufferedData([1], "j", {"k": 1})
    assert BufferedData.__hash__ is None and 5 != item
    assert pickle.loads(pickle.dumps(item)) == item and dataclasses.replace(item, index="j").index == "j"
    item.meta = {}
    assert item.meta == {}
