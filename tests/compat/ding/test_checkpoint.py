import json

import numpy as np
import pytest

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check
from xreplay.errors import CheckpointError, CheckpointMismatchError, NotACheckpointError
from xreplay.persistence import load, verify


def make(n=5):
    buf = DequeBuffer(size=8)
    per = PriorityExperienceReplay(buf)
    buf.use(use_time_check(buf, max_use=5)).use(per)
    for i in range(n):
        buf.push({"x": i}, meta={"env": i % 2})
    return buf, per


def test_round_trip_restores_records_indices_and_middleware(tmp_path):
    buf, per = make()
    buf.sample(3, groupby=None)
    per.update_priorities([buf.storage[1].index], [7.0])
    path = tmp_path / "sub" / "buf.xrp"
    buf.save_data(str(path))
    other, other_per = make(0)
    other.load_data(str(path))
    assert [r.index for r in other.storage] == [r.index for r in buf.storage]
    assert [r.data for r in other.storage] == [r.data for r in buf.storage]
    assert other.count() == 5 and other.indices.get(buf.storage[4].index) == 4
    np.testing.assert_array_equal(other_per.sum_tree.leaves(), per.sum_tree.leaves())
    assert other_per.IS_weight_power_factor == per.IS_weight_power_factor
    assert other_per.max_priority == per.max_priority and other_per.buffer_idx == per.buffer_idx
    assert (
        other._middleware[0].state_dict()["counts"].tolist()
        == buf._middleware[0].state_dict()["counts"].tolist()
    )
    assert len(other.sample(5)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]  # no temporary directory left


def test_is_a_versioned_checksummed_checkpoint_of_kind_ding(tmp_path):
    buf, _ = make()
    buf.save_data(str(tmp_path / "b"))
    meta = verify(tmp_path / "b")
    assert meta["kind"] == "ding.deque_buffer" and meta["format"] == "xreplay-checkpoint"
    assert {"generation", "order", "where", "payload.tree", "payload.data", "payload.offsets"} <= set(meta["arrays"])
    assert all("crc32" in entry for entry in meta["arrays"].values())
    fresh = load(tmp_path / "b")  # also loads as a new buffer, without middleware
    assert isinstance(fresh, DequeBuffer) and [r.data for r in fresh.storage] == [r.data for r in buf.storage]


def test_every_array_file_is_a_npy_file_numpy_opens(tmp_path):
    buf, per = make()
    per.update_priorities([buf.storage[1].index], [7.0])
    path = tmp_path / "buf.xrp"
    buf.save_data(str(path))
    arrays = json.loads((path / "metadata.json").read_text())["arrays"]
    for name, entry in arrays.items():
        array = np.load(path / entry["file"], mmap_mode="r")  # without allow_pickle: plain numbers and bytes
        assert array.dtype == np.dtype(entry["dtype"]) and list(array.shape) == entry["shape"], name
    tree = np.load(path / arrays["payload.tree"]["file"])  # the payload's JSON, as bytes
    assert json.loads(tree.tobytes())


def test_save_again_overwrites_the_earlier_save(tmp_path):
    buf = DequeBuffer(size=4)
    buf.push(1)
    buf.save_data(str(tmp_path / "b"))
    buf.push(2)
    buf.save_data(str(tmp_path / "b"))
    other = DequeBuffer(size=4)
    other.load_data(str(tmp_path / "b"))
    assert [r.data for r in other.storage] == [1, 2]
    assert json.loads((tmp_path / "b" / "metadata.json").read_text())["generation"] == 2


def test_refuses_to_replace_a_plain_file(tmp_path):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(NotACheckpointError, match="is a file"):
        DequeBuffer(size=2).save_data(str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "keep"


def test_plain_buffer_round_trip_and_groupby(tmp_path):
    buf = DequeBuffer(size=4, sliced=True)
    for i in range(6):
        buf.push(i, {"g": i % 2})
    buf.sample(2, groupby="g")
    buf.save_data(str(tmp_path / "b"))
    other = DequeBuffer(size=4)
    other.load_data(str(tmp_path / "b"))
    assert [r.data for r in other.storage] == [2, 3, 4, 5]
    assert sorted(len(g) for g in other.sample(2, groupby="g")) == [2, 2]
    assert load(tmp_path / "b").sliced


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "missing"])
def test_corrupt_checkpoint_raises_and_loads_nothing(tmp_path, damage):
    buf, _ = make()
    path = tmp_path / "buf.xrp"
    buf.save_data(str(path))
    payload = next(path.glob("payload_tree.*.npy"))
    blob = payload.read_bytes()
    if damage == "truncate":
        payload.write_bytes(blob[:-10])
    elif damage == "flip":
        payload.write_bytes(blob[:-5] + bytes([blob[-5] ^ 0xFF]) + blob[-4:])
    elif damage == "garbage":
        (path / "metadata.json").write_text("not json")
    else:
        payload.unlink()
    target = DequeBuffer(size=8)
    target.push("keep")
    with pytest.raises(CheckpointError, match="buf.xrp"):
        target.load_data(str(path))
    assert [r.data for r in target.storage] == ["keep"]


def test_capacity_and_middleware_mismatch_rejected(tmp_path):
    buf, _ = make()
    buf.save_data(str(tmp_path / "b"))
    with pytest.raises(CheckpointMismatchError, match="size 8"):
        DequeBuffer(size=4).load_data(str(tmp_path / "b"))
    plain = DequeBuffer(size=8)
    plain.save_data(str(tmp_path / "p"))
    target, _ = make(2)
    with pytest.raises(CheckpointMismatchError, match="no state for middleware"):
        target.load_data(str(tmp_path / "p"))
    assert target.count() == 2
