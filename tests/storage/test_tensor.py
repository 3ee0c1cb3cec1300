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
