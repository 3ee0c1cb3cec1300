import pytest

from xreplay.compat.ding import DequeBuffer
from xreplay.compat.ding.groups import group_by_env
from xreplay.compat.ding.selection import group_index


def test_group_by_env_groups_per_env():
    torch = pytest.importorskip("torch")
    buf = DequeBuffer(size=10)
    group_by_env(buf, range(6), [torch.tensor(i % 2) for i in range(6)])
    groups = buf.sample(2, groupby="env")
    assert sorted([r.data for r in g] for g in groups) == [[0, 2, 4], [1, 3, 5]]


def test_group_order_follows_the_first_record_in_storage():
    """Groups are ordered by their oldest stored record (DI-engine counts them in storage order)."""
    buf = DequeBuffer(size=3)
    for env in ["x", "y", "x"]:
        buf.push(env, meta={"env": env})
    assert group_index(buf, "env").sampler.groups() == ["x", "y"]
    buf.push("y", meta={"env": "y"})  # evicts the first "x": a "y" is now the oldest record
    assert [r.data for r in buf.storage] == ["y", "x", "y"]
    assert group_index(buf, "env").sampler.groups() == ["y", "x"]
    assert group_index(buf, "env").sampler.groups(min_size=2) == ["y"]
