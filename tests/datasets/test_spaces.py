"""Gymnasium spaces as buffer fields, and the curated exports of xreplay.datasets and xreplay.her."""

from __future__ import annotations

import numpy as np
import pytest

import xreplay.datasets
import xreplay.her
from xreplay.datasets.spaces import check_leaves, field_name, infer_space, leaf_names, space_leaves
from xreplay.errors import DatasetMismatchError

gym = pytest.importorskip("gymnasium")


def test_nested_dict_spaces_become_named_leaves():
    space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (4, 4), np.uint8),
            "goal": gym.spaces.Dict({"xy": gym.spaces.Box(-1, 1, (2,))}),
        }
    )
    leaves = space_leaves(space, "observation")
    assert leaves == {"goal/xy": ((2,), np.dtype(np.float32)), "image": ((4, 4), np.dtype(np.uint8))}
    assert [field_name("obs", leaf) for leaf in leaves] == ["obs/goal/xy", "obs/image"]
    assert sorted(leaf_names("obs", ["obs/goal/xy", "obs/image", "observer", "action"])) == ["goal/xy", "image"]


@pytest.mark.parametrize(
    "space, leaf",
    [
        pytest.param(gym.spaces.Discrete(5), ((), np.dtype(np.int64)), id="discrete"),
        pytest.param(gym.spaces.MultiBinary(3), ((3,), np.dtype(np.int8)), id="multi_binary"),
        pytest.param(gym.spaces.MultiDiscrete([2, 3]), ((2,), np.dtype(np.int64)), id="multi_discrete"),
    ],
)
def test_single_spaces_are_one_root_leaf(space, leaf):
    assert space_leaves(space, "action") == {"": leaf}


def test_inferred_spaces_hold_the_fields():
    leaves = {
        "observation": ((3,), np.dtype(np.float32)),
        "achieved_goal": ((2,), np.dtype(np.int16)),
        "done": ((), np.dtype(bool)),
    }
    space = infer_space(leaves)
    assert isinstance(space, gym.spaces.Dict) and space_leaves(space, "observation") == leaves
    assert space["achieved_goal"].high.max() == np.iinfo(np.int16).max
    assert infer_space({"": ((2,), np.dtype(np.float64))}) == gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)


def test_unsupported_spaces_and_mismatches_name_what_differs():
    with pytest.raises(DatasetMismatchError, match="action space Text at 'note' is not supported"):
        space_leaves(gym.spaces.Dict({"note": gym.spaces.Text(4)}), "action")
    want = {"x": ((2,), np.dtype(np.float32))}
    with pytest.raises(
        DatasetMismatchError,
        match=r"field 'x': expected shape \(2,\) and dtype float32 \(here\), "
        r"received shape \(2,\) and dtype float64",
    ):
        check_leaves(want, {"x": ((2,), np.dtype(np.float64))}, "observation", "here")
    check_leaves(want, {"x": ((2,), np.dtype(np.float64))}, "observation", "here", same_kind=True)
    with pytest.raises(DatasetMismatchError, match=r"observation fields: expected \['x'\] \(here\), received \['y'\]"):
        check_leaves(want, {"y": ((2,), np.dtype(np.float32))}, "observation", "here")


@pytest.mark.parametrize("module", [xreplay.datasets, xreplay.her], ids=["datasets", "her"])
def test_exports_are_curated_and_documented(module):
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            assert obj.__doc__, name
