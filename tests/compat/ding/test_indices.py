import copy
import dataclasses
import gc
import os
import pickle
import tracemalloc
import weakref

import pytest

from xreplay.compat.ding import BufferedData, DequeBuffer, PriorityExperienceReplay


def is_index(text):
    return isinstance(text, str) and len(text) == 32 and not text.strip("0123456789abcdef")


def test_stored_record_keeps_dataclass_behaviour():
    buf = DequeBuffer(size=4)
    rec = buf.push({"x": 1}, meta={"m": 2})
    assert [f.name for f in dataclasses.fields(rec)] == ["data", "index", "meta"]
    assert is_index(rec.index) and rec.index == rec.index
    assert repr(rec) == f"BufferedData(data={{'x': 1}}, index={rec.index!r}, meta={{'m': 2}})"
    same = BufferedData(data={"x": 1}, index=rec.index, meta={"m": 2})
    assert same == rec and rec != dataclasses.replace(rec, index="0" * 32)
    assert dataclasses.replace(rec, data=5).index == rec.index
    assert dataclasses.asdict(rec) == {"data": {"x": 1}, "index": rec.index, "meta": {"m": 2}}
    assert weakref.ref(rec)() is rec
    with pytest.raises(AttributeError):
        rec.extra = 1


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda r: pickle.loads(pickle.dumps(r))])
def test_copies_and_pickles_carry_the_index_string(clone):
    buf = DequeBuffer(size=2)
    rec = buf.push([1, 2], meta={"a": 1})
    other = clone(rec)
    assert other == rec and other.index == rec.index and other is not rec
    assert buf.get_by_index(other.index) is rec


def test_assigned_index_reads_back_unchanged():
    assert BufferedData(1, 7, {}).index == 7 and BufferedData(1, None, {}).index is None
    rec = BufferedData(1, "a", {})
    rec.index = "b"
    assert rec.index == "b" and rec == BufferedData(1, "b", {})


def test_pickle_of_earlier_slotted_dataclass_still_loads():
    rec = BufferedData.__new__(BufferedData)
    rec.__setstate__([1, "f" * 32, {"a": 1}])  # what earlier versions' pickles restore
    assert rec == BufferedData(1, "f" * 32, {"a": 1})


def test_indices_unique_across_buffers_evictions_deletes_and_clear():
    a, b = DequeBuffer(size=3), DequeBuffer(size=3)
    seen = []
    for i in range(10):
        seen += [a.push(i).index, b.push(i).index]
        if i % 4 == 3:
            a.delete(a.storage[0].index)
    a.clear()
    seen += [a.push(0).index]
    assert all(map(is_index, seen)) and len(set(seen)) == len(seen)


def test_stale_index_never_touches_the_newer_record_in_its_slot():
    buf = DequeBuffer(size=2)
    old = buf.push("old", meta={"k": 1})
    old_index = old.index
    buf.delete(old_index)
    new = buf.push("new", meta={"k": 2})  # reuses the freed slot
    assert new.index != old_index
    assert buf.update(old_index, data="x", meta={"k": 9}) is False
    buf.delete(old_index)
    assert buf.count() == 1 and new.data == "new" and new.meta == {"k": 2}
    with pytest.raises(KeyError):
        buf.get_by_index(old_index)
    with pytest.raises(KeyError):
        buf.indices.get(old_index)
    with pytest.raises(KeyError):
        buf.sample(indices=[old_index])
    assert old_index not in buf.indices and len(buf.indices) == 1
    assert old.index == old_index  # an evicted record keeps its index


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:16] + s[16:].upper(),
        lambda s: s[:16] + "+" + s[17:],
        lambda s: s[:16] + s[16:29] + "_" + s[30:],
        lambda s: ("1" if s[0] == "0" else "0") + s[1:],  # another buffer's tag, the same handle
        lambda s: s[:-1],
        lambda s: s + "0",
    ],
)
def test_other_spellings_of_an_index_are_unknown(mangle):
    buf = DequeBuffer(size=1)
    for i in range(11):
        rec = buf.push(i)
    bad = mangle(rec.index)
    assert rec.index[-1] in "abcdef" and bad != rec.index
    assert len(bad) != 32 or int(bad[16:], 16) == int(rec.index[16:], 16)  # the same handle, spelled otherwise
    assert buf.update(bad, data=-1) is False and rec.data == 10
    buf.delete(bad)
    assert buf.count() == 1
    for unknown in (bad, None, 12, "0" * 32, "g" * 32):
        assert unknown not in buf.indices
        with pytest.raises(KeyError):
            buf.get_by_index(unknown)


def test_index_lookups_follow_positions_after_deletes():
    buf = DequeBuffer(size=5)
    recs = [buf.push(i) for i in range(7)]
    buf.delete([recs[3].index, recs[5].index])
    kept = [r for r in recs[2:] if r.data not in (3, 5)]
    assert [buf.indices.get(r.index) for r in kept] == [0, 1, 2]
    assert [r.data for r in buf.sample(indices=[r.index for r in reversed(kept)])] == [6, 4, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_pushes_indices_the_parent_never_uses():
    buf = DequeBuffer(size=8)
    before = buf.push("before").index
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write, (buf.get_by_index(before).index + buf.push("child").index).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    reply = os.read(read, 64).decode()
    os.close(read)
    parent = buf.push("parent").index
    assert reply[:32] == before and is_index(reply[32:]) and reply[32:] != parent


def test_checkpoint_keeps_indices_and_later_pushes_do_not_repeat_them(tmp_path):
    buf = DequeBuffer(size=4)
    per = PriorityExperienceReplay(buf, IS_weight=False)
    buf.use(per)
    saved = [buf.push({"x": i}, meta={"priority": 1.0 + i}).index for i in range(3)]
    buf.save_data(str(tmp_path / "ckpt"))
    handed_out = saved + [buf.push({"x": i}).index for i in range(3, 9)]
    buf.load_data(str(tmp_path / "ckpt"))  # rewinds the buffer to three records
    assert [r.index for r in buf.storage] == saved
    assert [buf.indices.get(i) for i in saved] == [0, 1, 2] and set(per.buffer_idx.values()) == set(saved)
    assert buf.update(saved[1], None, {"priority": 5.0}) is None and buf.get_by_index(saved[1]).meta["priority"] == 5.0
    later = [buf.push({"x": i}).index for i in range(9)]
    assert not set(later) & set(handed_out) and len(set(later)) == 9
    assert saved[0] not in buf.indices  # evicted by the later pushes


def test_checkpoint_with_indices_that_name_no_slot_still_resolves(tmp_path):
    buf = DequeBuffer(size=3)
    for i in range(3):
        buf.push(i).index = f"legacy-{i}"  # like the indices of checkpoints from earlier versions
    buf.save_data(str(tmp_path / "ckpt"))
    other = DequeBuffer(size=3)
    other.load_data(str(tmp_path / "ckpt"))
    assert other.get_by_index("legacy-1").data == 1 and other.indices.get("legacy-2") == 2
    other.delete("legacy-1")
    other.push(3)
    other.push(4)  # evicts legacy-0
    assert "legacy-0" not in other.indices and "legacy-1" not in other.indices
    assert [r.index for r in other.storage][0] == "legacy-2" and other.count() == 3


def test_memory_per_stored_record_is_at_most_half_of_di_engines():
    payload = {"x": 1}
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        buf = DequeBuffer(size=20_000)
        for _ in range(20_000):
            buf.push(payload)
        per_item = (tracemalloc.get_traced_memory()[0] - base) / 20_000
    finally:
        tracemalloc.stop()
    assert buf.count() == 20_000
    assert per_item <= 373 / 2, f"{per_item:.1f} bytes per stored record (DI-engine 0.5.3: 373)"


def test_threads_pushing_get_distinct_indices():
    import threading

    buf = DequeBuffer(size=4000)
    out = []

    def work():
        out.extend(buf.push(i).index for i in range(1000))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 4000 and all(buf.get_by_index(i) is not None for i in out)
