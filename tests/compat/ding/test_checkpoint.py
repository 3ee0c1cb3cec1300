import os

import numpy as np
import pytest

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check
from xreplay.errors import CheckpointError


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
    assert other.count() == 5 and other.indices.get(buf.storage[4].index) == 4
    np.testing.assert_array_equal(other_per.sum_tree.leaves(), per.sum_tree.leaves())
    assert other_per.IS_weight_power_factor == per.IS_weight_power_factor
    assert other_per.max_priority == per.max_priority and other_per.buffer_idx == per.buffer_idx
    assert (
        other._middleware[0].state_dict()["counts"].tolist()
        == buf._middleware[0].state_dict()["counts"].tolist()
    )
    assert len(other.sample(5)) == 5
    assert not [f for f in os.listdir(path.parent) if f.endswith(".tmp")]


def test_plain_buffer_round_trip_and_groupby(tmp_path):
    buf = DequeBuffer(size=4)
    for i in range(6):
        buf.push(i, {"g": i % 2})
    buf.sample(2, groupby="g")
    buf.save_data(str(tmp_path / "b"))
    other = DequeBuffer(size=4)
    other.load_data(str(tmp_path / "b"))
    assert [r.data for r in other.storage] == [2, 3, 4, 5]
    assert sorted(len(g) for g in other.sample(2, groupby="g")) == [2, 2]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "missing"])
def test_corrupt_file_raises_and_loads_nothing(tmp_path, damage):
    buf, _ = make()
    path = tmp_path / "buf.xrp"
    buf.save_data(str(path))
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) - 10])
    elif damage == "flip":
        path.write_bytes(blob[:-5] + bytes([blob[-5] ^ 0xFF]) + blob[-4:])
    elif damage == "garbage":
        path.write_bytes(b"not a snapshot")
    else:
        path.unlink()
    target = DequeBuffer(size=8)
    target.push("keep")
    with pytest.raises(CheckpointError, match="buf.xrp"):
        target.load_data(str(path))
    assert [r.data for r in target.storage] == ["keep"]


def test_capacity_and_middleware_mismatch_rejected(tmp_path):
    buf, _ = make()
    buf.save_data(str(tmp_path / "b"))
    with pytest.raises(CheckpointError, match="size 8"):
        DequeBuffer(size=4).load_data(str(tmp_path / "b"))
    plain = DequeBuffer(size=8)
    plain.save_data(str(tmp_path / "p"))
    target, _ = make(2)
    with pytest.raises(CheckpointError, match="no state for middleware"):
        target.load_data(str(tmp_path / "p"))
    assert target.count() == 2
