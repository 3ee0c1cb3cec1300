import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreplay.errors import FieldValueError
from xreplay.storage.dtypes import check_fits, covering_dtype, dtype_range


@given(st.integers(-(2**40), 2**40), st.integers(0, 2**40))
def test_covering_dtype_holds_the_range(low, width):
    high = low + width
    dtype = covering_dtype(low, high)
    lo, hi = dtype_range(dtype)
    assert lo <= low and high <= hi
    values = torch.tensor([low, high])
    assert torch.equal(values.to(dtype).to(torch.int64), values)


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [
        pytest.param(0, 1, torch.bool, id="binary_is_bool"),
        pytest.param(0, 9, torch.uint8, id="actions_uint8"),
        pytest.param(-1, 5, torch.int8, id="negative_int8"),
        pytest.param(0, 300, torch.int16, id="int16"),
    ],
)
def test_covering_dtype_is_narrowest(low, high, dtype):
    assert covering_dtype(low, high) == dtype


def test_covering_dtype_never_narrows_existing_storage():
    assert covering_dtype(0, 1, at_least=torch.uint8) == torch.uint8
    assert covering_dtype(-1, 1, at_least=torch.uint8) == torch.int16


@pytest.mark.parametrize(
    ("values", "storage", "message"),
    [
        pytest.param(torch.tensor([0, 256]), torch.uint8, r"span \[0, 256\]", id="overflow_uint8"),
        pytest.param(torch.tensor([2]), torch.bool, r"span \[2, 2\]", id="not_binary"),
        pytest.param(torch.tensor([0.5]), torch.uint8, "non-integral", id="fraction"),
        pytest.param(torch.tensor([0.1], dtype=torch.float64), torch.float32, "not held exactly", id="float_precision"),
    ],
)
def test_check_fits_rejects_lossy_values(values, storage, message):
    with pytest.raises(FieldValueError, match=message):
        check_fits("f", values, storage)


def test_check_fits_accepts_exact_values():
    check_fits("f", torch.tensor([0, 255]), torch.uint8)
    check_fits("f", torch.tensor([1.0, 2.0]), torch.uint8)
    check_fits("f", torch.tensor([0.5], dtype=torch.float64), torch.float32)


@pytest.mark.parametrize(
    ("values", "high", "expected"),
    [
        pytest.param(torch.tensor([0, 9]), 9, False, id="ints_inside"),
        pytest.param(torch.tensor([-1, 3]), 9, True, id="negative_int"),
        pytest.param(torch.tensor([10], dtype=torch.uint8), 9, True, id="above"),
        pytest.param(torch.tensor([3.0, 0.0]), 9, False, id="floats_inside"),
        pytest.param(torch.tensor([-0.5]), 9, True, id="negative_float"),
    ],
)
def test_exceeds(values, high, expected):
    from xreplay.storage.dtypes import exceeds

    assert exceeds(values, high) is expected
