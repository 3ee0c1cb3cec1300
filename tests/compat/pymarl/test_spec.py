"""Targeted tests of the observable behaviours in /work/shared/specs/pymarl-buffer-spec.md.

Where xreplay deliberately fixes an upstream defect (see the ``xreplay.compat.pymarl``
docstring) the test asserts xreplay's behaviour and a comment names upstream's.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pymarl_compare import assert_same_batch, rng_state_equal

from xreplay.compat.pymarl import EpisodeBatch, OneHot, ReplayBuffer, Transform
from xreplay.errors import FieldShapeError

GROUPS = {"agents": 2}


def scheme():
    return {
        "state": {"vshape": 3},
        "obs": {"vshape": (2,), "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (4,), "group": "agents", "dtype": torch.int32},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
        "count": {"vshape": (1,), "dtype": torch.long},
        "ep_id": {"vshape": (2,), "dtype": torch.long, "episode_const": True},
    }


def preprocess():
    return {"actions": ("actions_onehot", [OneHot(4)])}


@pytest.fixture(params=[pytest.param(False, id="default"), pytest.param(True, id="compact")])
def compact(request):
    return request.param


def batch(bs=3, T=5, compact=False, **kw):
    return EpisodeBatch(scheme(), GROUPS, bs, T, preprocess=preprocess(), compact=compact, **kw)


def buffer(size=3, T=5, compact=False):
    return ReplayBuffer(scheme(), GROUPS, size, T, preprocess=preprocess(), compact=compact)


def tagged_episodes(n, T=5, compact=False):
    """``n`` episodes whose ``count`` and ``ep_id`` hold the episode number (filled for all steps)."""
    ep = batch(n, T, compact=compact)
    for i in range(n):
        ep.update({"count": [[[i]] * T], "reward": [[[float(i)]] * T]}, bs=i)
        ep.update({"ep_id": [[i, -i]]}, bs=i)
    return ep


def stored_ids(buf):
    return buf["ep_id"][:, 0].tolist()


# ======================================================================================
# Construction
# ======================================================================================


def test_scheme_is_shallow_copy():
    s = scheme()
    b = EpisodeBatch(s, GROUPS, 2, 3, preprocess=preprocess())
    assert list(s) == list(scheme())  # the caller's dict gains no keys
    assert b.scheme is not s
    assert b.scheme["obs"] is s["obs"]  # per-field info dicts are shared...
    assert s["obs"] == {"vshape": (2,), "group": "agents"}  # ...and not modified


def test_scheme_key_order_preprocess_outputs_then_filled():
    b = batch()
    expected = [*scheme(), "actions_onehot", "filled"]
    assert list(b.scheme) == expected
    assert list(b.data.transition_data) == [k for k in expected if k != "ep_id"]
    assert list(b.data.episode_data) == ["ep_id"]


def test_filled_entry_is_last_and_long():
    b = batch()
    assert list(b.scheme)[-1] == "filled"
    assert b.scheme["filled"] == {"vshape": (1,), "dtype": torch.long}
    assert b["filled"].dtype == torch.long and b["filled"].shape == (3, 5, 1)


def test_int_vshape_is_kept_in_scheme():
    b = batch()
    assert b.scheme["state"]["vshape"] == 3 and type(b.scheme["state"]["vshape"]) is int
    assert b["state"].shape == (3, 5, 3)


def test_preprocess_output_entry():
    b = batch()
    assert b.scheme["actions_onehot"] == {"vshape": (4,), "dtype": torch.float32, "group": "agents"}
    assert b["actions_onehot"].shape == (3, 5, 2, 4) and b["actions_onehot"].dtype == torch.float32


def test_preprocess_output_copies_falsy_group_and_episode_const():
    s = {"a": {"vshape": (1,), "dtype": torch.long, "group": None, "episode_const": False}}
    b = EpisodeBatch(s, {}, 1, 2, preprocess={"a": ("a_oh", [OneHot(3)])})
    assert b.scheme["a_oh"] == {"vshape": (3,), "dtype": torch.float32, "group": None, "episode_const": False}


def test_episode_const_preprocess_output_goes_to_episode_data():
    s = {"a": {"vshape": (1,), "dtype": torch.long, "episode_const": True}}
    b = EpisodeBatch(s, {}, 2, 3, preprocess={"a": ("a_oh", [OneHot(3)])})
    assert b.data.episode_data["a_oh"].shape == (2, 3)
    b.update({"a": [[2]]}, bs=1)
    assert b["a_oh"][1].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("vshape", "shape"),
    [
        pytest.param(3, (3,), id="int"),
        pytest.param([2, 3], (2, 3), id="list"),
        pytest.param((), (), id="empty-tuple"),
    ],
)
def test_vshape_forms(vshape, shape):
    b = EpisodeBatch({"x": {"vshape": vshape}}, {}, 2, 4)
    assert b["x"].shape == (2, 4, *shape)
    assert b["x"].dtype == torch.float32  # default dtype


def test_groups_and_preprocess_stored_by_reference():
    g, p = {"agents": 2}, preprocess()
    b = EpisodeBatch(scheme(), g, 1, 2, preprocess=p, device="cpu")
    assert b.groups is g and b.preprocess is p and b.device == "cpu"
    assert EpisodeBatch(scheme(), g, 1, 2).preprocess == {}


def test_data_is_adopted_as_is():
    data = SimpleNamespace(transition_data={"x": torch.ones(1)}, episode_data={})
    b = EpisodeBatch({"x": {"vshape": 5}}, {}, 7, 9, data=data, preprocess=preprocess())
    assert b.data is data
    assert list(b.scheme) == ["x"]  # no filled added, nothing validated or allocated
    assert b.preprocess.keys() == {"actions"}


@pytest.mark.parametrize(
    ("bad_scheme", "groups", "pre", "exc", "message"),
    [
        pytest.param(
            {"filled": {"vshape": (1,)}},
            {},
            None,
            AssertionError,
            '"filled" is a reserved key for masking.',
            id="reserved-filled",
        ),
        pytest.param(
            {"x": {"dtype": torch.long}},
            {},
            None,
            AssertionError,
            "Scheme must define vshape for x",
            id="missing-vshape",
        ),
        pytest.param(
            {"x": {"vshape": 1, "group": "team"}},
            {"agents": 2},
            None,
            AssertionError,
            "Group team must have its number of members defined in _groups_",
            id="unknown-group",
        ),
        pytest.param(
            {"a": {"vshape": (1,)}}, {}, {"a": ("o", [OneHot(2)])}, KeyError, "'dtype'", id="preprocess-source-no-dtype"
        ),
        pytest.param(
            {"a": {"dtype": torch.long}},
            {},
            {"a": ("o", [OneHot(2)])},
            KeyError,
            "'vshape'",
            id="preprocess-source-no-vshape",
        ),
        pytest.param(
            {"a": {"vshape": (1,)}}, {}, {"b": ("o", [OneHot(2)])}, AssertionError, None, id="preprocess-source-missing"
        ),
        pytest.param(
            {"a": {"vshape": (1,)}, "filled": {"vshape": (1,)}},
            {},
            {"a": ("o", [OneHot(2)])},
            KeyError,
            "'dtype'",
            id="preprocess-error-wins-over-filled",
        ),
    ],
)
def test_init_errors(bad_scheme, groups, pre, exc, message):
    with pytest.raises(exc) as info:
        EpisodeBatch(bad_scheme, groups, 1, 2, preprocess=pre)
    if message is not None:
        assert str(info.value) == message


def test_replay_buffer_init():
    buf = buffer(size=4, T=6)
    assert (buf.buffer_size, buf.buffer_index, buf.episodes_in_buffer, buf.batch_size) == (4, 0, 0, 4)
    assert buf["state"].shape == (4, 6, 3)


# ======================================================================================
# Index parsing and item counting
# ======================================================================================


@pytest.mark.parametrize(
    ("item", "rows", "size"),
    [
        pytest.param(1, [1], 1, id="int-keeps-dim"),
        pytest.param(-1, [], -2, id="minus-one-is-empty"),
        pytest.param(-2, [1], 1, id="minus-two-selects-one"),
        pytest.param(True, [1], 1, id="bool-is-int"),
        pytest.param(slice(2, 1), [], -1, id="reversed-slice-negative-count"),
        pytest.param(slice(0, None, 2), [0, 2], 2, id="stepped-slice"),
        pytest.param([2, 0, 2], [2, 0, 2], 3, id="list-with-duplicates"),
        pytest.param(np.array([1, 0]), [1, 0], 2, id="ndarray"),
        pytest.param(torch.tensor([2, 1]), [2, 1], None, id="long-tensor-count-none"),
        pytest.param(torch.tensor(1), [1], None, id="0d-long-tensor"),
    ],
)
def test_batch_index_rows_and_count(compact, item, rows, size):
    b = tagged_episodes(3, compact=compact)
    sub = b[item]
    if isinstance(item, torch.Tensor) and item.dim() == 0:
        assert sub["ep_id"][0].tolist() == rows[0]  # 0-d tensor: plain integer indexing drops the dim
    else:
        assert sub["ep_id"][:, 0].tolist() == rows
    assert sub.batch_size == size
    assert sub.max_seq_length == 5


@pytest.mark.parametrize(
    ("ts", "size", "shape"),
    [
        pytest.param(2, 1, (3, 1, 3), id="int"),
        pytest.param(-1, -4, (3, 0, 3), id="minus-one-negative-count"),
        pytest.param(slice(1, 3), 2, (3, 2, 3), id="slice"),
        pytest.param(np.int64(2), None, (3, 3), id="np-int64-drops-dim"),
        pytest.param(np.array([0, 4]), 2, (3, 2, 3), id="ndarray-advanced"),
    ],
)
def test_time_index(ts, size, shape):
    b = batch()
    sub = b[:, ts]
    assert sub.max_seq_length == size
    assert sub["state"].shape == shape


def test_time_slice_bound_may_be_one_element_tensor():
    b = batch()
    b.update({"reward": [[[1.0], [1.0]]]}, bs=0, ts=slice(0, 2))
    sub = b[:, : b.max_t_filled()]
    assert sub.max_seq_length == 2 and type(sub.max_seq_length) is int
    assert sub["reward"].shape == (3, 2, 1)


def test_list_time_index_raises():
    with pytest.raises(IndexError, match="^Indexing across Time must be contiguous$"):
        batch()[:, [0, 1]]
    with pytest.raises(IndexError, match="^Indexing across Time must be contiguous$"):
        batch().update({"reward": [1.0]}, bs=0, ts=[0])


def test_one_tuple_raises_index_error():
    with pytest.raises(IndexError):
        batch()[(0,)]


def test_numpy_scalar_item_raises_index_error():
    with pytest.raises(IndexError, match="invalid index to scalar variable"):
        batch()[np.int64(1)]


def test_update_np_int64_time_drops_dim():
    b = batch()
    b.update({"state": [[1, 2, 3]]}, bs=1, ts=np.int64(2))  # dest shape (1, 3)
    assert b["state"][1, 2].tolist() == [1.0, 2.0, 3.0]
    assert b["filled"][:, :, 0].tolist() == [[0] * 5, [0, 0, 1, 0, 0], [0] * 5]


# ======================================================================================
# update
# ======================================================================================


def test_update_returns_none_and_marks_filled_region(compact):
    b = batch(compact=compact)
    assert b.update({"reward": [[[1.0]], [[2.0]]]}, bs=slice(1, 3), ts=3) is None
    assert b["filled"][:, :, 0].tolist() == [[0] * 5, [0, 0, 0, 1, 0], [0, 0, 0, 1, 0]]
    assert b["reward"][1:, 3, 0].tolist() == [1.0, 2.0]


def test_update_mark_filled_false(compact):
    b = batch(compact=compact)
    b.update({"reward": [[1.0]]}, bs=0, ts=0, mark_filled=False)
    assert b["filled"].sum().item() == 0


def test_update_episode_const_ignores_ts_and_does_not_mark(compact):
    b = batch(compact=compact)
    b.update({"ep_id": [[5, -6]]}, bs=2, ts=4)
    assert b["ep_id"].tolist() == [[0, 0], [0, 0], [5, -6]]
    assert b["filled"].sum().item() == 0


def test_update_filled_key_after_transition_key_leaves_zeros(compact):
    b = batch(compact=compact)
    b.update({"reward": [[1.0]], "filled": [[0]]}, bs=0, ts=0)
    assert b["filled"].sum().item() == 0
    assert b["reward"][0, 0, 0].item() == 1.0


def test_update_unknown_key_raises_and_changes_nothing(compact):
    b = batch(compact=compact)
    with pytest.raises(KeyError, match="nope not found in transition or episode data"):
        # Upstream writes "reward" and filled before raising; xreplay's update is atomic.
        b.update({"reward": [[1.0]], "nope": [1]}, bs=0, ts=0)
    assert b["reward"].sum().item() == 0
    assert b["filled"].sum().item() == 0


def test_update_unsafe_reshape_message():
    with pytest.raises(ValueError) as info:
        batch().update({"state": [1, 2]}, bs=0, ts=0)
    # Upstream's message is the bare "Unsafe reshape of ... to ..."; ours names the field and the rule.
    assert isinstance(info.value, FieldShapeError)
    assert str(info.value).startswith("field 'state': Unsafe reshape of torch.Size([2]) to torch.Size([1, 1, 3]);")


@pytest.mark.parametrize(
    ("key", "value", "bs", "ts", "exc"),
    [
        pytest.param("state", 1.0, 0, 0, IndexError, id="0d-value"),
        pytest.param("reward", [1.0], 0, 0, IndexError, id="1-elem-into-three-size1-dims"),
        pytest.param("obs", [1.0, 2.0], 0, 0, IndexError, id="(2,)-into-(1,1,2,2)-cursor-wraps"),
        pytest.param("state", [[1.0, 2, 3]] * 4, 0, slice(0, 1), RuntimeError, id="(4,3)-into-(1,1,3)"),
        pytest.param("state", [[[1.0, 2, 3, 4]]], 0, 0, ValueError, id="wrong-trailing-dim"),
    ],
)
def test_update_shape_errors_change_nothing(compact, key, value, bs, ts, exc):
    b = batch(compact=compact)
    with pytest.raises(exc):
        b.update({key: value}, bs=bs, ts=ts)
    assert b["filled"].sum().item() == 0  # upstream marks filled before the check; xreplay is atomic
    assert b[key].abs().sum().item() == 0


def test_update_wrong_shape_passing_check_fails_in_view():
    b = EpisodeBatch({"x": {"vshape": (2,)}}, {}, 2, 3)
    with pytest.raises(RuntimeError):  # (2,) into (2, 2): the check passes, view_as fails
        b.update({"x": [1.0, 2.0]}, bs=slice(0, 2), ts=np.int64(0))
    assert b["x"].abs().sum().item() == 0 and b["filled"].sum().item() == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([[[2.9]]], 2, id="positive"),
        pytest.param([[[-2.9]]], -2, id="negative-toward-zero"),
        pytest.param(np.array([[[7.99]]]), 7, id="ndarray"),
        pytest.param(torch.tensor([[[-0.5]]]), 0, id="tensor"),
    ],
)
def test_update_float_to_int_truncates(compact, value, expected):
    b = batch(compact=compact)
    b.update({"count": value}, bs=1, ts=2)
    assert b["count"][1, 2, 0].item() == expected and b["count"].dtype == torch.long


def test_update_uint8_overflow_from_list_raises(compact):
    b = batch(compact=compact)
    with pytest.raises(RuntimeError):
        b.update({"terminated": [[[300]]]}, bs=0, ts=0)
    assert b["filled"].sum().item() == 0


def test_update_uint8_overflow_from_ndarray_wraps(compact):
    b = batch(compact=compact)
    b.update({"terminated": np.array([[[300]]])}, bs=0, ts=0)
    assert b["terminated"][0, 0, 0].item() == 44 and b["terminated"].dtype == torch.uint8


def test_update_copies_tensor_values():
    b = batch()
    src = torch.tensor([[[1.0, 2.0, 3.0]]])
    b.update({"state": src}, bs=0, ts=0)
    src += 10
    assert b["state"][0, 0].tolist() == [1.0, 2.0, 3.0]


def test_update_list_bs_advanced_indexing():
    b = tagged_episodes(3)
    b.update({"state": [[[1, 1, 1]], [[2, 2, 2]]]}, bs=[2, 0], ts=1)
    assert b["state"][:, 1, 0].tolist() == [2.0, 0.0, 1.0]
    assert b["filled"][:, 1, 0].tolist() == [1, 1, 1]  # tagged episodes are filled everywhere


@pytest.mark.parametrize("bs", [pytest.param([1], id="list"), pytest.param(np.array([1]), id="ndarray")])
def test_compact_update_with_advanced_index(bs):
    b = batch(compact=True)
    b.update({"terminated": [[[1]]]}, bs=bs, ts=0)
    assert b["terminated"][1, 0, 0].item() == 1
    assert b["filled"][:, 0, 0].tolist() == [0, 1, 0]


def test_update_out_of_range_bs_raises_index_error_before_conversion():
    with pytest.raises(IndexError):
        batch().update({"terminated": [[[300]]]}, bs=[7], ts=0)


def test_update_preprocess_writes_one_hot(compact):
    b = batch(compact=compact)
    b.update({"actions": [[[3], [1]]]}, bs=0, ts=0)
    assert b["actions_onehot"][0, 0].tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]
    assert b["actions_onehot"][0, 1].sum().item() == 0


def test_update_one_hot_error_changes_nothing(compact):
    b = batch(compact=compact)
    with pytest.raises(RuntimeError):
        # Upstream writes "actions" (and filled) and then raises; xreplay's update is atomic.
        b.update({"actions": [[[4], [0]]]}, bs=0, ts=0)
    assert b["actions"].abs().sum().item() == 0 and b["filled"].sum().item() == 0


def test_update_through_slice_lands_in_parent_without_preprocess():
    b = batch()
    child = b[1:3]
    child.update({"actions": [[[2], [3]]]}, bs=0, ts=4)
    assert b["actions"][1, 4, :, 0].tolist() == [2, 3]
    assert b["filled"][1, 4, 0].item() == 1
    assert b["actions_onehot"][1, 4].sum().item() == 0  # derived batches have empty preprocess


# ======================================================================================
# __getitem__
# ======================================================================================


def test_str_item_returns_stored_tensor():
    b = batch()
    assert b["state"] is b.data.transition_data["state"]
    assert b["ep_id"] is b.data.episode_data["ep_id"]


def test_str_item_episode_data_checked_first():
    data = SimpleNamespace(transition_data={"x": torch.zeros(1)}, episode_data={"x": torch.ones(2)})
    b = EpisodeBatch({"x": {"vshape": 1}}, {}, 1, 1, data=data)
    assert b["x"] is data.episode_data["x"]


def test_unknown_str_item_raises_value_error(compact):
    with pytest.raises(ValueError, match="nope"):  # upstream: ValueError() with an empty message
        batch(compact=compact)["nope"]


def test_key_tuple_batch_shares_tensors():
    b = batch()
    sub = b[("reward", "obs", "ep_id")]
    assert type(sub) is EpisodeBatch
    assert list(sub.scheme) == ["reward", "obs", "ep_id"]  # requested order, no filled
    assert sub.groups == {"agents": 2}
    assert sub.preprocess == {}
    assert (sub.batch_size, sub.max_seq_length, sub.device) == (3, 5, "cpu")
    assert sub["reward"] is b["reward"] and sub["ep_id"] is b["ep_id"]
    assert list(sub.data.transition_data) == ["reward", "obs"] and list(sub.data.episode_data) == ["ep_id"]


def test_key_tuple_without_group_keys_has_empty_groups():
    assert batch()[("reward",)].groups == {}
    assert list(batch()[()].scheme) == []


def test_key_tuple_unknown_key():
    with pytest.raises(KeyError, match="Unrecognised key nope"):
        batch()[("reward", "nope")]


@pytest.mark.parametrize(
    "item", [pytest.param(["reward", "obs"], id="list-of-keys"), pytest.param(("reward", 1), id="mixed-tuple")]
)
def test_non_key_tuple_of_names_raises_type_error(item):
    with pytest.raises(TypeError):
        batch()[item]


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(slice(0, 2), id="slice"),
        pytest.param(1, id="int"),
        pytest.param((slice(None), slice(1, 3)), id="time-slice"),
    ],
)
def test_basic_indices_give_views(item):
    b = batch()
    sub = b[item]
    sub["reward"].fill_(7.0)
    sub["ep_id"].fill_(3)
    assert (b["reward"] == 7.0).any() and (b["ep_id"] == 3).any()


@pytest.mark.parametrize(
    "item",
    [
        pytest.param([0, 1], id="list"),
        pytest.param(np.array([0, 1]), id="ndarray"),
        pytest.param(torch.tensor([0, 1]), id="tensor"),
    ],
)
def test_advanced_indices_give_copies(item):
    b = batch()
    sub = b[item]
    sub["reward"].fill_(7.0)
    sub["ep_id"].fill_(3)
    assert b["reward"].abs().sum().item() == 0 and b["ep_id"].abs().sum().item() == 0


def test_advanced_time_index_copies_transition_but_views_episode_data():
    b = batch()
    sub = b[:, np.array([0, 1])]
    sub["reward"].fill_(7.0)
    sub["ep_id"].fill_(3)  # episode data is indexed by the batch part only: a view here
    assert b["reward"].abs().sum().item() == 0
    assert (b["ep_id"] == 3).all()


def test_derived_batch_is_plain_episode_batch(compact):
    buf = buffer(compact=compact)
    sub = buf[0:2]
    assert type(sub) is EpisodeBatch
    assert sub.preprocess == {}
    assert sub.groups is buf.groups
    assert list(sub.scheme) == list(buf.scheme) and sub.scheme["filled"] is buf.scheme["filled"]
    assert sub.device == buf.device


def test_episode_data_ignores_time_index():
    b = tagged_episodes(3)
    sub = b[1:3, 2:4]
    assert sub["ep_id"].tolist() == [[1, -1], [2, -2]]
    assert sub["count"].shape == (2, 2, 1)


# ======================================================================================
# max_t_filled, to, repr, extend
# ======================================================================================


def test_max_t_filled_counts_filled_steps(compact):
    b = batch(compact=compact)
    b.update({"reward": [[[1.0]] * 3]}, bs=1, ts=slice(0, 3))
    b.update({"reward": [[1.0]]}, bs=2, ts=4)  # not a prefix: counted, not located
    m = b.max_t_filled()
    assert m.shape == (1,) and m.dtype == torch.int64 and m.tolist() == [3]


def test_max_t_filled_on_empty_batch_raises():
    with pytest.raises((IndexError, RuntimeError)):
        batch()[0:0].max_t_filled()


def test_to_returns_none_and_sets_device(compact):
    b = batch(compact=compact)
    b.update({"reward": [[1.0]]}, bs=0, ts=0)
    assert b.to("cpu") is None
    assert b.device == "cpu"
    assert b["reward"][0, 0, 0].item() == 1.0 and b["reward"].device.type == "cpu"


def test_repr_episode_batch():
    assert repr(batch()) == (
        "EpisodeBatch. Batch Size:3 Max_seq_len:5 Keys:dict_keys(['state', 'obs', 'actions', 'avail_actions', "
        "'reward', 'terminated', 'count', 'ep_id', 'actions_onehot', 'filled']) Groups:dict_keys(['agents'])"
    )


def test_repr_replay_buffer():
    buf = buffer(size=4)
    buf.insert_episode_batch(batch(2))
    assert repr(buf) == (
        "ReplayBuffer. 2/4 episodes. Keys:dict_keys(['state', 'obs', 'actions', 'avail_actions', "
        "'reward', 'terminated', 'count', 'ep_id', 'actions_onehot', 'filled']) Groups:dict_keys(['agents'])"
    )


def test_repr_of_derived_batch_with_none_sizes():
    assert repr(batch()[torch.tensor([0])]).startswith("EpisodeBatch. Batch Size:None Max_seq_len:5 Keys:")


def test_extend_adds_zero_filled_fields(compact):
    # Upstream's extend always raises TypeError; xreplay's adds the fields.
    b = tagged_episodes(2, compact=compact)
    b.extend({"extra": {"vshape": (3,), "group": "agents"}})
    assert b["extra"].shape == (2, 5, 2, 3) and b["extra"].abs().sum().item() == 0
    assert b["count"][:, 0, 0].tolist() == [0, 1]
    b.update({"extra": [[[[1, 2, 3], [4, 5, 6]]]]}, bs=1, ts=0)
    assert b["extra"][1, 0].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_no_extra_dunder_methods():
    b = batch()
    for name in ("split", "__len__", "__setitem__", "__iter__", "clone"):
        assert not hasattr(b, name), name
    assert type(b).__eq__ is object.__eq__


# ======================================================================================
# ReplayBuffer.insert_episode_batch
# ======================================================================================


def test_insert_seven_into_size_three(compact):
    buf = buffer(size=3, compact=compact)
    assert buf.insert_episode_batch(tagged_episodes(7)) is None
    assert stored_ids(buf) == [6, 4, 5]
    assert (buf.buffer_index, buf.episodes_in_buffer) == (1, 3)


def test_insert_wraps_around(compact):
    buf = buffer(size=3, compact=compact)
    buf.insert_episode_batch(tagged_episodes(2))
    ep = tagged_episodes(4)
    ep.update({"ep_id": [[10, 0], [11, 0], [12, 0], [13, 0]]})
    buf.insert_episode_batch(ep[2:4])
    assert stored_ids(buf) == [13, 1, 12]
    assert (buf.buffer_index, buf.episodes_in_buffer) == (1, 3)


def test_insert_copies_filled_and_episode_data(compact):
    buf = buffer(size=3, compact=compact)
    ep = batch(1)
    ep.update({"reward": [[[1.0], [2.0]]]}, ts=slice(0, 2))
    ep.update({"ep_id": [[4, 5]]})
    buf.insert_episode_batch(ep)
    assert buf["filled"][0, :, 0].tolist() == [1, 1, 0, 0, 0]
    assert buf["ep_id"][0].tolist() == [4, 5]
    assert (buf.buffer_index, buf.episodes_in_buffer) == (1, 1)


def test_insert_shorter_episode_leaves_stale_data(compact):
    buf = buffer(size=2, compact=compact)
    buf.insert_episode_batch(tagged_episodes(2))  # filled and count set at every step
    short = batch(1, T=2)
    short.update({"count": [[[9], [9]]]}, ts=slice(0, 2))
    buf.insert_episode_batch(short)
    assert buf["count"][0, :, 0].tolist() == [9, 9, 0, 0, 0]
    assert buf["filled"][0, :, 0].tolist() == [1, 1, 1, 1, 1]  # stale filled survives


def test_insert_longer_episode_raises_and_changes_nothing(compact):
    buf = buffer(size=2, compact=compact)
    with pytest.raises(ValueError, match="Unsafe reshape"):
        buf.insert_episode_batch(tagged_episodes(1, T=6))
    assert (buf.buffer_index, buf.episodes_in_buffer) == (0, 0)
    assert buf["count"].abs().sum().item() == 0


def test_insert_empty_longer_batch_raises():
    buf = buffer(size=2)
    with pytest.raises(ValueError, match="Unsafe reshape"):
        buf.insert_episode_batch(batch(0, T=6))


def test_insert_batch_from_tensor_index_raises_type_error():
    buf = buffer(size=2)
    with pytest.raises(TypeError):
        buf.insert_episode_batch(batch(2)[torch.tensor([0, 1])])


def test_insert_unfilled_steps_have_zero_one_hot(compact):
    buf = buffer(size=2, compact=compact)
    ep = batch(1)
    ep.update({"actions": [[[2], [1]]]}, ts=0)
    buf.insert_episode_batch(ep)
    assert buf["actions_onehot"][0, 0].tolist() == [[0, 0, 1, 0], [0, 1, 0, 0]]
    assert buf["actions_onehot"][0, 1:].abs().sum().item() == 0  # not the one-hot of action 0


def test_insert_keeps_ep_actions_onehot_over_recomputed(compact):
    buf = buffer(size=2, compact=compact)
    ep = batch(1)
    ep.update({"actions": [[[2], [1]]]}, ts=0)
    ep["actions_onehot"][0, 0, 0] = torch.tensor([0.5, 0.0, 0.0, 2.0])  # edited in place on the runner batch
    buf.insert_episode_batch(ep)
    assert buf["actions_onehot"][0, 0].tolist() == [[0.5, 0, 0, 2.0], [0, 1, 0, 0]]


# ======================================================================================
# ReplayBuffer.sample / can_sample
# ======================================================================================


def test_sample_exactly_stored_is_view_in_storage_order_without_rng(compact):
    buf = buffer(size=4, compact=compact)
    buf.insert_episode_batch(tagged_episodes(3))
    np.random.seed(5)
    before = np.random.get_state()
    s = buf.sample(3)
    assert rng_state_equal(before, np.random.get_state())
    assert s["ep_id"][:, 0].tolist() == [0, 1, 2]
    assert s.batch_size == 3 and s.max_seq_length == 5


def test_sample_exactly_stored_aliases_storage():
    buf = buffer(size=4)
    buf.insert_episode_batch(tagged_episodes(3))
    s = buf.sample(3)
    s["reward"].fill_(9.0)
    assert (buf["reward"][:3] == 9.0).all()


def test_sample_zero_from_empty_buffer(compact):
    s = buffer(compact=compact).sample(0)
    assert s.batch_size == 0 and s["state"].shape == (0, 5, 3)


@pytest.mark.parametrize(
    ("stored", "n", "seed"),
    [
        pytest.param(5, 2, 0, id="5-choose-2"),
        pytest.param(5, 4, 123, id="5-choose-4"),
        pytest.param(8, 1, 7, id="8-choose-1"),
        pytest.param(8, 7, 2**31, id="8-choose-7"),
    ],
)
def test_sample_matches_numpy_choice(compact, stored, n, seed):
    buf = buffer(size=8, compact=compact)
    buf.insert_episode_batch(tagged_episodes(stored))
    np.random.seed(seed)
    expected = np.random.choice(stored, n, replace=False)
    expected_state = np.random.get_state()
    np.random.seed(seed)
    s = buf.sample(n)
    assert s["ep_id"][:, 0].tolist() == expected.tolist()
    assert s["count"][:, 3, 0].tolist() == expected.tolist()
    assert rng_state_equal(expected_state, np.random.get_state())
    assert type(s) is EpisodeBatch and s.preprocess == {} and s.batch_size == n and s.max_seq_length == 5


def test_sample_is_a_copy():
    buf = buffer(size=4)
    buf.insert_episode_batch(tagged_episodes(4))
    buf.insert_episode_batch(tagged_episodes(1))  # still 4 stored
    np.random.seed(0)
    s = buf.sample(2)
    s["reward"].fill_(99.0)
    assert (buf["reward"] != 99.0).all()


def test_sample_only_covers_stored_rows(compact):
    buf = buffer(size=8, compact=compact)
    buf.insert_episode_batch(tagged_episodes(3))
    np.random.seed(0)
    seen = set()
    for _ in range(30):
        seen.update(buf.sample(2)["filled"][:, 0, 0].tolist())
    assert seen == {1}


@pytest.mark.parametrize(("stored", "n", "ok"), [(0, 0, True), (2, 2, True), (2, 3, False), (3, 1, True)])
def test_can_sample(stored, n, ok):
    buf = buffer(size=4)
    buf.insert_episode_batch(tagged_episodes(stored))
    assert buf.can_sample(n) is ok


def test_sample_too_many_raises_assertion_naming_both_numbers():
    buf = buffer(size=4)
    buf.insert_episode_batch(tagged_episodes(2))
    with pytest.raises(AssertionError) as info:  # upstream: a bare assert without message
        buf.sample(3)
    assert "3" in str(info.value) and "2" in str(info.value)


# ======================================================================================
# OneHot / Transform
# ======================================================================================


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.uint8, torch.float32])
def test_onehot_output_is_float32(dtype):
    out = OneHot(3).transform(torch.tensor([[2], [0]], dtype=dtype))
    assert out.dtype == torch.float32
    assert out.tolist() == [[0, 0, 1], [1, 0, 0]]


def test_onehot_multi_hot():
    assert OneHot(4).transform(torch.tensor([[0, 3]])).tolist() == [[1, 0, 0, 1]]


def test_onehot_truncates_floats():
    assert OneHot(3).transform(torch.tensor([[1.9]])).tolist() == [[0, 1, 0]]


@pytest.mark.parametrize("bad", [pytest.param(3, id="too-large"), pytest.param(-1, id="negative")])
def test_onehot_out_of_range_raises(bad):
    with pytest.raises(RuntimeError):
        OneHot(3).transform(torch.tensor([[bad]]))


def test_onehot_empty_input():
    assert OneHot(3).transform(torch.zeros((0, 1), dtype=torch.long)).shape == (0, 3)


def test_onehot_infer_output_info_ignores_inputs():
    assert OneHot(5).infer_output_info((7, 2), torch.int8) == ((5,), torch.float32)
    assert OneHot(5).out_dim == 5


def test_transform_base_raises():
    with pytest.raises(NotImplementedError):
        Transform().transform(torch.zeros(1))
    with pytest.raises(NotImplementedError):
        Transform().infer_output_info((1,), torch.long)


# ======================================================================================
# Compact storage
# ======================================================================================


def runner_fill(buf, n_batches, seed):
    """Episode-runner style writes of random episodes (random lengths) into ``buf``."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        ep = EpisodeBatch(scheme(), GROUPS, 1, 5, preprocess=preprocess())
        length = int(rng.integers(1, 5))
        for t in range(length + 1):
            ep.update(
                {
                    "state": [rng.standard_normal(3).tolist()],
                    "avail_actions": [rng.integers(0, 2, (2, 4)).tolist()],
                    "obs": [rng.standard_normal((2, 2)).tolist()],
                },
                ts=t,
            )
            ep.update({"actions": torch.from_numpy(rng.integers(0, 4, (1, 2)))}, ts=t)
            if t < length:
                ep.update({"reward": [(float(rng.standard_normal()),)], "terminated": [(t == length - 1,)]}, ts=t)
        ep.update({"ep_id": [[int(rng.integers(-9, 9)), int(rng.integers(0, 1000))]]})
        buf.insert_episode_batch(ep)


def test_compact_samples_equal_default_samples():
    default, small = buffer(size=6), buffer(size=6, compact=True)
    runner_fill(default, 9, seed=1)
    runner_fill(small, 9, seed=1)
    for n in (6, 1, 3, 5):
        np.random.seed(n)
        a = default.sample(n)
        np.random.seed(n)
        b = small.sample(n)
        assert_same_batch(a, b, f"sample({n})")
        max_t = a.max_t_filled()
        assert torch.equal(max_t, b.max_t_filled())
        assert_same_batch(a[:, :max_t], b[:, :max_t], f"sample({n})[:, :max_t]")


@pytest.mark.parametrize(
    ("key", "value", "bs", "ts"),
    [
        pytest.param("avail_actions", [[[[0, 7, 1, 0], [1, 1, 1, 1]]]], 0, 1, id="avail-7"),
        pytest.param("count", [[[-5]]], 1, 2, id="negative-long"),
        pytest.param("count", [[[2**40]]], 2, 3, id="huge-long"),
        pytest.param("ep_id", [[-(2**62), 2**62]], 1, 0, id="episode-const-extremes"),
        pytest.param("terminated", [[[255]]], 0, 4, id="uint8-max"),
    ],
)
def test_compact_widening_keeps_exact_values(key, value, bs, ts):
    b = tagged_episodes(3, compact=True)
    b.update({key: value}, bs=bs, ts=ts)
    d = tagged_episodes(3)
    d.update({key: value}, bs=bs, ts=ts)
    expected = d[key]
    assert b[key].dtype == expected.dtype
    assert torch.equal(b[key], expected)
    assert torch.equal(b["count"], d["count"])  # earlier narrow values survive the widening


def test_compact_negative_actions_without_preprocess():
    s = {"actions": {"vshape": (1,), "group": "agents", "dtype": torch.long}}
    b = ReplayBuffer(s, GROUPS, 2, 3, compact=True)
    ep = EpisodeBatch(s, GROUPS, 1, 3)
    ep.update({"actions": [[[-3], [2]]]}, ts=0)
    ep.update({"actions": [[[-128], [300]]]}, ts=1)
    b.insert_episode_batch(ep)
    assert b["actions"][0, :2, :, 0].tolist() == [[-3, 2], [-128, 300]]
    assert b["actions"].dtype == torch.long


def test_compact_non_one_hot_values_in_actions_onehot_are_kept():
    for compact_mode in (False, True):
        b = buffer(size=2, compact=compact_mode)
        ep = batch(1)
        ep.update({"actions": [[[1], [2]]]}, ts=0)
        b.insert_episode_batch(ep)
        b.update({"actions_onehot": [[[[0.25, 0, 0, 0], [0, 0, 1, 0]]]]}, bs=0, ts=0)
        b.update({"actions_onehot": [[[[0, 0, 0, 0], [3, 0, 0, -1]]]]}, bs=1, ts=2)
        assert b["actions_onehot"][0, 0].tolist() == [[0.25, 0, 0, 0], [0, 0, 1, 0]]
        assert b["actions_onehot"][1, 2].tolist() == [[0, 0, 0, 0], [3, 0, 0, -1]]
        assert b["actions"][0, 0, :, 0].tolist() == [1, 2]


def test_compact_reads_declared_dtypes():
    b = tagged_episodes(2, compact=True)
    for key, info in b.scheme.items():
        assert b[key].dtype == info.get("dtype", torch.float32), key


def test_compact_negative_step_slice_raises():
    with pytest.raises(ValueError, match="step must be greater than zero"):
        batch(compact=True)[::-1]
