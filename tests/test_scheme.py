import pytest
import torch

from xreplay import AUTO, Field, OneHot, Scheme, SchemeError


def test_item_shape_puts_group_size_first():
    scheme = Scheme({"obs": Field((40,), group="agents"), "state": Field(68)}, groups={"agents": 4})
    assert scheme.item_shape("obs") == (4, 40)
    assert scheme.item_shape("state") == (68,)


@pytest.mark.parametrize(
    ("fields", "groups", "message"),
    [
        pytest.param({"obs": Field((2,), group="agents")}, {}, "group 'agents' has no size", id="unknown_group"),
        pytest.param({"oh": Field((3,), derived=OneHot("a", 3))}, {}, "derived from 'a'", id="missing_source"),
        pytest.param(
            {"a": Field((1,), dtype=torch.long), "oh": Field((3,), per_step=False, derived=OneHot("a", 3))},
            {},
            "same group and per_step",
            id="source_mismatch",
        ),
    ],
)
def test_invalid_schemes_name_the_field(fields, groups, message):
    with pytest.raises(SchemeError, match=message):
        Scheme(fields, groups)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"shape": (-1,)}, id="negative_dim"),
        pytest.param({"dtype": "float"}, id="dtype_not_torch"),
        pytest.param({"storage_dtype": "small"}, id="bad_storage_dtype"),
        pytest.param({"dtype": torch.float32, "storage_dtype": AUTO}, id="auto_on_float"),
    ],
)
def test_invalid_fields(kwargs):
    with pytest.raises(SchemeError):
        Field(**kwargs)


def test_from_pymarl_compact_derives_onehot_and_narrows_integers():
    from xreplay.compat.pymarl import OneHot as PymarlOneHot

    scheme = {
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "actions_onehot": {"vshape": (5,), "group": "agents", "dtype": torch.float32},
        "state": {"vshape": 3, "episode_const": True},
    }
    pre = {"actions": ("actions_onehot", [PymarlOneHot(5)])}
    core = Scheme.from_pymarl(scheme, {"agents": 2}, pre, compact=True)
    assert core["actions"].storage_dtype == AUTO
    assert core["actions_onehot"].derived == OneHot("actions", 5)
    assert core["state"].per_step is False and core["state"].shape == (3,)
    plain = Scheme.from_pymarl(scheme, {"agents": 2}, pre)
    assert plain["actions"].storage_dtype is None and plain["actions_onehot"].derived is None


@pytest.mark.parametrize(
    "field", [dict(dtype=torch.complex64), dict(dtype=torch.float32, storage_dtype=torch.complex128)]
)
def test_complex_fields_are_refused_with_the_way_to_store_them(field):
    with pytest.raises(SchemeError, match="complex fields are not stored"):
        Field((2,), **field)
