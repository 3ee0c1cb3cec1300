import pytest
import torch

from xreplay import AUTO, Field, OneHot, Scheme, TensorStorage


def make_storage(row_order: str = "field") -> TensorStorage:
    scheme = Scheme(
        {
            "a": Field((1,), dtype=torch.long, storage_dtype=AUTO),
            "oh": Field((3,), derived=OneHot("a", 3)),
            "x": Field((2,)),
        }
    )
    return TensorStorage(scheme, capacity=4, max_seq_length=2, row_order=row_order)


def test_columns_are_aligned_typed_views_of_one_row(row_order):
    storage = make_storage(row_order)
    for name, column in storage.layout.columns.items():
        size = storage.columns[name].element_size()
        assert column.offset % (8 if row_order == "field" else size) == 0  # step-major: natural alignment
        assert storage.columns[name].untyped_storage().data_ptr() == storage.rows.untyped_storage().data_ptr()
    assert storage.layout.row_bytes % 8 == 0


def test_auto_column_widens_and_keeps_values(row_order):
    storage = make_storage(row_order)
    storage.columns["a"][0] = torch.ones(2, 1, dtype=torch.bool)
    storage.columns["x"][0] = torch.tensor([[1.5, 2.5], [3.5, 4.5]])
    value = torch.tensor([[[-5], [700]]])
    storage.relayout(storage.plan_dtypes({"a": value}))
    assert storage.layout.columns["a"].dtype == torch.int16
    storage.columns["a"][1:2] = value
    decoded = storage.decode(storage.rows)
    assert decoded["a"][:2, :, 0].tolist() == [[1, 1], [-5, 700]]
    assert decoded["x"][0].tolist() == [[1.5, 2.5], [3.5, 4.5]]


def test_derived_columns_start_absent_and_decode_indices(row_order):
    storage = make_storage(row_order)
    assert torch.count_nonzero(storage.decode(storage.rows)["oh"]) == 0  # unwritten steps are all zeros
    storage.columns["oh"][0] = torch.tensor([[2], [3]], dtype=torch.uint8)  # class 2, then absent
    assert storage.decode(storage.rows)["oh"][0].tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_encode_derived_refuses_values_that_are_not_one_hot(row_order):
    storage = make_storage(row_order)
    assert storage.encode_derived("oh", torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])).view(-1).tolist() == [1, 3]
    assert storage.encode_derived("oh", torch.tensor([[0.0, 0.5, 0.0]])) is None
    assert storage.encode_derived("oh", torch.tensor([[1.0, 1.0, 0.0]])) is None


def test_derived_column_materialises_keeping_values(row_order):
    storage = make_storage(row_order)
    storage.columns["oh"][0] = torch.tensor([[1], [3]], dtype=torch.uint8)
    before = storage.decode(storage.rows)["oh"].clone()
    assert before[0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    storage.relayout({"oh": torch.float32})
    assert not storage.layout.columns["oh"].mask and storage.layout.order == row_order
    assert torch.equal(storage.decode(storage.rows)["oh"], before)


def test_gather_then_decode_is_one_row_copy(row_order):
    storage = make_storage(row_order)
    storage.columns["x"][:] = torch.arange(16, dtype=torch.float32).view(4, 2, 2)
    rows = storage.gather(torch.tensor([3, 1]))
    assert rows.shape == (2, storage.layout.row_bytes)
    assert storage.decode(rows)["x"][:, 0, 0].tolist() == [12.0, 4.0]


def filled_storage(materialised: bool) -> TensorStorage:
    """Return a storage of narrowed, derived (or materialised) and per-episode fields, every slot written."""
    scheme = Scheme(
        {
            "a": Field((1,), dtype=torch.long, storage_dtype=torch.uint8),
            "oh": Field((3,), derived=OneHot("a", 3)),
            "x": Field((2,)),
            "done": Field((1,), dtype=torch.uint8, storage_dtype=torch.bool),
            "seed": Field((), dtype=torch.int64, per_step=False),
        }
    )
    storage = TensorStorage(scheme, capacity=5, max_seq_length=4)
    g = torch.Generator().manual_seed(0)
    storage.columns["a"][:] = torch.randint(0, 3, (5, 4, 1), generator=g, dtype=torch.uint8)
    storage.columns["oh"][:] = torch.randint(0, 4, (5, 4, 1), generator=g, dtype=torch.uint8)  # 3: absent
    storage.columns["x"][:] = torch.randn(5, 4, 2, generator=g)
    storage.columns["done"][:] = torch.randint(0, 2, (5, 4, 1), generator=g).bool()
    storage.columns["seed"][:] = torch.arange(5) * 7
    if materialised:
        storage.relayout({"oh": torch.float32})
    return storage


@pytest.mark.parametrize("materialised", [False, True], ids=["onehot_indices", "onehot_materialised"])
@pytest.mark.parametrize("steps", [None, 0, 2, 4])
@pytest.mark.parametrize("slots", [[3, 1, 3], [0], [], [4, 3, 2, 1, 0]], ids=["repeated", "one", "none", "all"])
def test_gather_fields_equals_decoding_gathered_rows(materialised, steps, slots):
    storage = filled_storage(materialised)
    index = torch.tensor(slots, dtype=torch.int64)
    expected = storage.decode(storage.gather(index), steps=steps)
    got = storage.gather_fields(index, steps=steps)
    assert list(got) == list(expected)
    for name, value in got.items():
        assert value.dtype == expected[name].dtype == storage.scheme[name].dtype
        assert torch.equal(value, expected[name]), name
        assert value.is_contiguous()
    assert list(storage.gather_fields(index, ["x", "oh"], steps)) == ["x", "oh"]
