"""RowLayout in both row orders: every column is its own bytes of the row, a typed view the row can hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreplay.errors import ArgumentError
from xreplay.scheme import Field, Scheme
from xreplay.storage.layout import ROW_ORDERS, RowLayout
from xreplay.storage.npy import npy_header, record_dtype

DTYPES = [torch.bool, torch.uint8, torch.int16, torch.float32, torch.int64, torch.float64, torch.bfloat16]

fields = st.lists(
    st.tuples(
        st.sampled_from(DTYPES),
        st.lists(st.integers(0, 3), max_size=2).map(tuple),  # item shapes, empty items included
        st.booleans(),  # per step
    ),
    min_size=1,
    max_size=6,
)


def _scheme(specs: list[tuple[torch.dtype, tuple[int, ...], bool]]) -> Scheme:
    return Scheme({f"f{i}": Field(shape, dtype, per_step=per_step) for i, (dtype, shape, per_step) in enumerate(specs)})


@given(specs=fields, steps=st.integers(1, 4), order=st.sampled_from(ROW_ORDERS))
def test_columns_hold_their_own_bytes_and_read_back_what_was_written(specs, steps, order):
    layout = RowLayout(_scheme(specs), steps, order=order)
    assert layout.row_bytes % 8 == 0
    owner = np.full(layout.row_bytes, -1)
    for k, (name, column) in enumerate(layout.columns.items()):
        span = _bytes_of(layout, name)
        assert span.sum() == column.nbytes  # exactly its values' bytes...
        assert (owner[span] == -1).all(), f"{name} overlaps another column"  # ...shared with no other column
        owner[span] = k
    rows = torch.zeros((3, layout.row_bytes), dtype=torch.uint8)
    written = {}
    for k, name in enumerate(layout.columns):
        view = layout.view(rows, name)
        written[name] = torch.full(view.shape, k % 2 + 1).to(view.dtype)
        view.copy_(written[name])
    for name, value in layout.views(rows).items():
        assert torch.equal(value, written[name]), name
    if order == "step":
        for name, column in layout.columns.items():
            if layout.scheme[name].per_step:
                item = math.prod(column.shape[1:]) * torch.empty((), dtype=column.dtype).element_size()
                assert column.step_stride == layout.step_bytes and column.offset + item <= layout.step_bytes
            else:
                assert column.offset >= steps * layout.step_bytes  # after the last step


def _bytes_of(layout: RowLayout, name: str) -> np.ndarray:
    """Return a mask of the bytes of one row that column ``name`` spans (by writing through its view)."""
    rows = torch.zeros((1, layout.row_bytes), dtype=torch.uint8)
    view = layout.view(rows, name)
    raw = torch.empty(view.shape, dtype=view.dtype)
    raw.view(torch.uint8).fill_(0xFF) if raw.element_size() == 1 else raw.view(_int_of(raw)).fill_(-1)
    view.copy_(raw)
    return rows[0].numpy() != 0


def _int_of(tensor: torch.Tensor) -> torch.dtype:
    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]


def test_a_step_major_row_keeps_each_step_together():
    scheme = Scheme({"obs": Field((3,)), "done": Field((), torch.bool), "won": Field((), per_step=False)})
    layout = RowLayout(scheme, 4, order="step")
    rows = torch.zeros((1, layout.row_bytes), dtype=torch.uint8)
    layout.view(rows, "obs")[0, 2] = torch.tensor([1.0, 2.0, 3.0])
    layout.view(rows, "done")[0, 2] = True
    step = rows[0, 2 * layout.step_bytes : 3 * layout.step_bytes]
    assert step[:12].view(torch.float32).tolist() == [1.0, 2.0, 3.0] and bool(step[12])
    assert int(rows.count_nonzero()) == int(step.count_nonzero())


def test_an_unknown_row_order_is_refused():
    with pytest.raises(ArgumentError, match=r"row order must be one of \('field', 'step'\), received 'episode'"):
        RowLayout(Scheme({"r": Field(())}), 2, order="episode")


def test_a_widened_column_keeps_the_row_order():
    layout = RowLayout(Scheme({"a": Field((), torch.int64, storage_dtype="auto"), "r": Field(())}), 3, order="step")
    assert layout.with_dtype("a", torch.int16).order == "step"


@given(specs=fields, steps=st.integers(1, 3), order=st.sampled_from(ROW_ORDERS))
def test_numpy_reads_every_column_from_a_npy_file_of_the_rows(tmp_path_factory, specs, steps, order):
    layout = RowLayout(_scheme(specs), steps, order=order)
    rows = torch.randint(0, 256, (3, layout.row_bytes), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    file = tmp_path_factory.mktemp("npy") / "rows.npy"
    file.write_bytes(npy_header(record_dtype(layout), (3,)) + rows.numpy().tobytes())
    records = np.load(file, mmap_mode="r")
    for name, view in layout.views(rows).items():
        if order == "step":
            field = records["steps"][name] if layout.scheme[name].per_step else records["episode"][name]
        else:
            field = records[name]
        raw = view.view(_int_of(view))  # the stored bits (bool and bfloat16 included), compared byte for byte
        assert field.shape == tuple(raw.shape)
        assert np.ascontiguousarray(field).tobytes() == raw.contiguous().numpy().tobytes(), name
