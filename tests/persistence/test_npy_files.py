"""Every array file of a format-3 checkpoint is a ``.npy`` file numpy alone opens; a crafted header is refused."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import xreplay
from tests.persistence import kinds
from tests.persistence.persistence_helpers import episodes, filled_buffer, read_meta, reseal
from xreplay import EpisodeBuffer, Field, Scheme
from xreplay.errors import CheckpointCorruptError, CheckpointSchemaError
from xreplay.persistence import FORMAT_VERSION, flush, load, verify
from xreplay.persistence.codec import decode_layout, decode_scheme
from xreplay.storage.dtypes import numpy_dtype

FIXTURES = Path(__file__).parent / "fixtures"


def _saved(tmp_path: Path, kind: str, row_order: str = "field") -> tuple[Path, object]:
    """Return a checkpoint of a filled ``kind`` buffer holding base files only (a first save), and the buffer."""
    path = tmp_path / kind
    buffer = kinds.filled(kind, path if kind == "memmap" else None, writes=6, row_order=row_order)
    if kind == "memmap":
        flush(buffer)  # the storage's own folder is its checkpoint; its rows file is written in place
    else:
        kinds.save(kind, buffer, path)
    return path, buffer


@pytest.mark.parametrize("kind", kinds.KINDS)
def test_numpy_opens_every_array_file_with_the_metadata_dtype_and_shape(tmp_path, kind):
    path, buffer = _saved(tmp_path, kind)
    meta = read_meta(path)
    _text, state = kinds.snapshot(buffer, same_indices=True)
    compared = 0
    for name, entry in meta["arrays"].items():
        assert entry["file"].endswith(".npy") and not entry.get("deltas"), name
        array = np.load(path / entry["file"], mmap_mode="r")  # numpy's defaults: allow_pickle=False
        assert isinstance(array, np.memmap) and array.offset == 4096, name  # page-aligned data
        if array.dtype.names:  # episode rows: one record per slot
            assert name == "rows" and array.shape == (entry["shape"][0],)
            assert array.dtype.itemsize == entry["shape"][1]
            array = array.view(np.uint8).reshape(entry["shape"])
        assert array.dtype == np.dtype(entry["dtype"]) and list(array.shape) == entry["shape"], name
        if name in state:
            assert np.ascontiguousarray(array).tobytes() == state[name], name
            compared += 1
    assert compared >= len(state) - 1  # all the buffer's arrays (a DI-engine checkpoint adds none; memmap adds CRCs)


EPISODE_KINDS = [
    pytest.param("episode", "field", id="episode"),
    pytest.param("memmap", "field", id="memmap"),
    pytest.param("pymarl", "field", id="pymarl"),
    pytest.param("pymarl_prioritized", "field", id="pymarl_prioritized"),
    pytest.param("episode", "step", id="episode-step_major"),
    pytest.param("memmap", "step", id="memmap-step_major"),
]


@pytest.mark.parametrize(("kind", "row_order"), EPISODE_KINDS)
def test_each_field_of_an_episode_checkpoint_reads_from_its_rows_file_with_numpy(tmp_path, kind, row_order):
    path, _buffer = _saved(tmp_path, kind, row_order)
    meta = read_meta(path)
    layout = decode_layout(decode_scheme(meta["structure"]["scheme"]), meta["structure"]["layout"])
    assert layout.order == row_order and meta["structure"]["layout"].get("order", "field") == row_order
    loaded = xreplay.load(path, kind=None) if kind in ("episode", "memmap") else None
    records = np.load(path / meta["arrays"]["rows"]["file"], mmap_mode="r")
    if row_order == "step":  # a record of every step's per-step fields, then one of the per-episode fields
        assert list(records.dtype.names) == ["steps"] and records["steps"].shape == (records.shape[0], kinds.T)
        fields = records["steps"]
    else:
        fields = records
    assert list(fields.dtype.names) == list(layout.columns)
    for name, column in layout.columns.items():
        field = fields[name]
        assert field.dtype == numpy_dtype(column.dtype) and field.shape == (records.shape[0], *column.shape), name
        if loaded is not None and not column.mask:  # stored values (a derived column holds class indices)
            assert np.array_equal(field, loaded.storage.columns[name].numpy()), name
    if loaded is not None:  # what the user added: slot 1 holds write 1's first episode (2 steps), as numpy reads it
        added = kinds._episodes(2, 1)["obs"][0, :2].numpy()
        assert np.array_equal(fields["obs"][1, :2], added) and np.array_equal(fields[1]["obs"][:2], added)


def test_per_episode_fields_of_a_step_major_checkpoint_are_its_episode_record(tmp_path):
    buffer = filled_buffer(n=6, row_order="step")
    xreplay.save(buffer, tmp_path / "ckpt")
    meta = read_meta(tmp_path / "ckpt")
    records = np.load(tmp_path / "ckpt" / meta["arrays"]["rows"]["file"], mmap_mode="r")
    assert records.dtype.names == ("steps", "episode") and records["episode"].dtype.names == ("won",)
    assert np.array_equal(records["episode"]["won"], buffer.storage.columns["won"].numpy())
    assert np.array_equal(records["steps"]["obs"], buffer.storage.columns["obs"].numpy())


@pytest.mark.parametrize("reader", ["load", "mmap", "unverified", "verify"])
@pytest.mark.parametrize("saved", ["field", "step"])
def test_metadata_claiming_the_other_row_order_is_refused_by_the_rows_header(tmp_path, saved, reader):
    """Both orders of this scheme have rows of the same size: only the rows file's header tells them apart."""
    scheme = Scheme({"obs": Field((4,)), "reward": Field((2,))})
    buffer = EpisodeBuffer(scheme, 4, 3, seed=0, row_order=saved)
    assert buffer.storage.layout.row_bytes == EpisodeBuffer(scheme, 4, 3, row_order="field").storage.layout.row_bytes
    buffer.add({"obs": torch.ones(2, 3, 4), "reward": torch.zeros(2, 3, 2)})
    path = tmp_path / "ckpt"
    xreplay.save(buffer, path)
    meta = read_meta(path)
    meta["structure"]["layout"]["order"] = "field" if saved == "step" else "step"
    reseal(path, meta)
    read = {
        "load": load, "mmap": lambda p: load(p, mmap=True),
        "unverified": lambda p: load(p, mmap=True, verify=False),
    }
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy does not start with the 4096-byte \.npy"):
        read.get(reader, verify)(path)


def test_a_transition_column_file_is_its_field(tmp_path):
    path, buffer = _saved(tmp_path, "transition")
    meta = read_meta(path)
    for position, name in enumerate(meta["structure"]["fields"]):  # column<i>: the i-th field of structure.fields
        column = np.load(path / meta["arrays"][f"column{position}"]["file"], mmap_mode="r")
        assert np.array_equal(column, buffer.storage.columns[name]), name


def test_a_full_save_after_incremental_ones_leaves_npy_files_numpy_reads_as_the_buffer(tmp_path):
    buffer = filled_buffer(n=4)
    xreplay.save(buffer, tmp_path / "ckpt")
    buffer.add(episodes(3, 9))
    assert xreplay.save(buffer, tmp_path / "ckpt").incremental  # numpy would see the base files only...
    stale = np.load(tmp_path / "ckpt" / read_meta(tmp_path / "ckpt")["arrays"]["lengths"]["file"])
    assert not np.array_equal(stale, buffer.state_dict()["lengths"])
    xreplay.save(buffer, tmp_path / "ckpt", incremental=False)  # ...until a full save folds the deltas in
    meta = read_meta(tmp_path / "ckpt")
    assert all(not e["deltas"] for e in meta["arrays"].values())
    lengths = np.load(tmp_path / "ckpt" / meta["arrays"]["lengths"]["file"])
    assert np.array_equal(lengths, buffer.state_dict()["lengths"])


@pytest.mark.parametrize("kind", [k for k in kinds.KINDS if k != "memmap"])
def test_saving_a_format_2_checkpoint_again_rewrites_it_as_npy_files(tmp_path, kind):
    path = tmp_path / kind
    shutil.copytree(FIXTURES / "v2" / kind, path)
    loaded = kinds.load_back(kind, path)
    before = kinds.snapshot(loaded, same_indices=kind != "ding")
    kinds.save(kind, loaded, path)  # incremental by default: an older format's base files are rewritten instead
    meta = verify(path)
    assert meta["format_version"] == FORMAT_VERSION
    assert all(e["file"].endswith(".npy") and not e["deltas"] for e in meta["arrays"].values())
    assert not list(path.glob("*.bin")) and not list(path.glob("*.delta"))
    assert kinds.snapshot(kinds.load_back(kind, path), same_indices=kind != "ding") == before


def _crafted(header: bytes, change: str) -> bytes:
    """Return xreplay's ``header`` with one change, the same size (so only the header check can catch it)."""
    text = header[10:].decode("latin1").rstrip()
    shape = text[text.index("'shape': ") :]
    text = {
        "object_dtype": "{'descr': '|O', 'fortran_order': False, " + shape,
        "fortran_order": text.replace("'fortran_order': False", "'fortran_order': True"),
        "wrong_shape": text.replace(shape, "'shape': (15,), }"),
        "code_in_header": "{'descr': __import__('os').getcwd(), 'fortran_order': False, " + shape,
    }[change]
    return header[:10] + text.encode("latin1").ljust(len(header) - 11) + b"\n"


CRAFTED = ["object_dtype", "fortran_order", "wrong_shape", "code_in_header"]


@pytest.fixture
def ckpt(tmp_path):
    xreplay.save(filled_buffer(), tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.mark.parametrize("crafted", CRAFTED)
@pytest.mark.parametrize("reader", ["load", "mmap", "unverified", "verify"])
def test_a_crafted_npy_header_is_refused_before_its_data_is_read(ckpt, monkeypatch, crafted, reader):
    rows = ckpt / read_meta(ckpt)["arrays"]["rows"]["file"]
    data = rows.read_bytes()
    header = _crafted(data[:4096], crafted)
    assert len(header) == 4096 and header != data[:4096]
    rows.write_bytes(header + data[4096:])

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load must not parse a header with numpy or unpickle anything")

    monkeypatch.setattr(np, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    read = {
        "load": load, "mmap": lambda p: load(p, mmap=True),
        "unverified": lambda p: load(p, mmap=True, verify=False),
    }
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy does not start with the 4096-byte \.npy"):
        read.get(reader, verify)(ckpt)


def test_a_pickled_array_in_place_of_an_npy_file_is_refused(ckpt):
    rows = ckpt / read_meta(ckpt)["arrays"]["rows"]["file"]
    np.save(rows, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointCorruptError, match=r"rows\.g000001\.npy holds .* bytes"):
        load(ckpt)


def test_metadata_naming_an_object_dtype_is_a_schema_error(ckpt):
    meta = read_meta(ckpt)
    meta["arrays"]["lengths"]["dtype"] = "|O"
    reseal(ckpt, meta)
    with pytest.raises(CheckpointSchemaError, match="arrays.lengths.dtype"):
        load(ckpt)


def test_a_format_3_entry_naming_a_raw_file_is_a_schema_error(ckpt):
    meta = read_meta(ckpt)
    meta["arrays"]["lengths"]["file"] = "lengths.g000001.bin"
    reseal(ckpt, meta)
    with pytest.raises(CheckpointSchemaError, match=r"of the form lengths\.g000001\.npy|rows\.g000001\.npy"):
        load(ckpt)


def test_the_numpy_recipe_of_the_checkpoint_page_reads_what_the_buffer_holds(tmp_path, row_order):
    ckpt = tmp_path / "ckpt"
    xreplay.save(filled_buffer(row_order=row_order), ckpt)
    page = (Path(__file__).parents[2] / "docs" / "checkpoints.md").read_text()
    section = page[page.index("## Reading a checkpoint with numpy alone") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))]
    names: dict = {"path": ckpt}
    exec(compile(code, "docs/checkpoints.md", "exec"), names)  # the page's code, run as a user would
    buffer = xreplay.load(ckpt)
    assert names["size"] == len(buffer) == 10
    assert np.array_equal(names["lengths"], buffer.state_dict()["lengths"])
    assert np.array_equal(names["obs"], buffer.storage.columns["obs"].numpy())
    assert np.array_equal(names["first"], buffer.storage.columns["obs"][0, : int(names["lengths"][0])].numpy())
