"""A checkpoint is untrusted input: each attack of issue 9 (findings 1, 2, 3 and 7) is refused with a typed error.

Findings: (1) file names that reach outside the folder, (2) checksums that could be dropped or skipped,
(3) pickles that run code on load, (7) metadata values trusted as written.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import zlib

import numpy as np
import pytest
import torch

import xreplay
from tests.persistence import kinds
from tests.persistence.persistence_helpers import filled_buffer, read_meta, reseal
from xreplay import EpisodeBuffer
from xreplay.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointPathError,
    CheckpointSchemaError,
    CheckpointTooLargeError,
    UntrustedCheckpointError,
)
from xreplay.persistence import load, open_storage, verify
from xreplay.persistence.inspect import summarize
from xreplay.storage.npy import npy_header

OPENED: list[str] = []


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_audit)


@pytest.fixture
def box(tmp_path):
    """A checkpoint in ``inside/ckpt`` and a secret file outside it."""
    (tmp_path / "outside").mkdir()
    path = tmp_path / "inside" / "ckpt"
    path.parent.mkdir()
    xreplay.save(filled_buffer(), path)
    return path, tmp_path / "outside" / "secret.bin"


def _point_rows_at(path, name, secret):
    """Make the rows entry name ``name``, with a secret of the right size and checksum (only the path check stands)."""
    meta = read_meta(path)
    entry = meta["arrays"]["rows"]
    secret.write_bytes(bytes(range(256)) * (entry["nbytes"] // 256) + bytes(entry["nbytes"] % 256))
    entry.update(file=name, crc32=zlib.crc32(secret.read_bytes()))
    reseal(path, meta)


def _opened_outside(secret):
    return [p for p in OPENED if p.startswith(os.path.realpath(secret.parent))]


READERS = {
    "load": lambda p: load(p),
    "load_mmap": lambda p: load(p, mmap=True),
    "load_shared": lambda p: load(p, mmap="shared"),
    "verify": verify,
    "inspect": summarize,
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../../outside/secret.bin", id="parent_dirs"),
        pytest.param("ABSOLUTE", id="absolute"),
        pytest.param("sub/rows.g000001.bin", id="separator"),
        pytest.param("..", id="dotdot"),
        pytest.param("rows.g000001.bin/../../../outside/secret.bin", id="through_a_file"),
    ],
)
def test_file_names_leading_out_are_refused_before_any_open(box, reader, name):
    path, secret = box
    _point_rows_at(path, str(secret) if name == "ABSOLUTE" else name, secret)
    OPENED.clear()
    with pytest.raises(CheckpointPathError, match="arrays.rows.file must be a plain file name") as info:
        READERS[reader](path)
    assert isinstance(info.value, CheckpointCorruptError) and str(path) in str(info.value)
    assert _opened_outside(secret) == []


@pytest.mark.parametrize("reader", list(READERS))
def test_a_link_inside_that_leads_out_is_refused(box, reader):
    path, secret = box
    meta = read_meta(path)
    rows = path / meta["arrays"]["rows"]["file"]
    _point_rows_at(path, rows.name, secret)  # same name, the secret's checksum
    rows.unlink()
    rows.symlink_to(secret)
    OPENED.clear()
    with pytest.raises(CheckpointPathError, match="outside the checkpoint folder"):
        READERS[reader](path)
    assert _opened_outside(secret) == []


def test_a_pipe_with_a_valid_name_is_refused_without_blocking(box):
    path, _secret = box
    rows = path / read_meta(path)["arrays"]["rows"]["file"]
    rows.unlink()
    os.mkfifo(rows)
    with pytest.raises(CheckpointPathError, match="not a regular file"):
        load(path)


def test_metadata_json_linked_outside_is_refused(box):
    path, secret = box
    secret.write_text((path / "metadata.json").read_text())
    (path / "metadata.json").unlink()
    (path / "metadata.json").symlink_to(secret)
    with pytest.raises(CheckpointPathError):
        load(path)


def test_live_rows_pointed_outside_cannot_be_written_or_deleted(tmp_path):
    # The finding: a "live" rows entry naming a file outside, load(mmap="shared"), an add that widens an
    # "auto" column and a save wrote into that file, created one beside it and deleted it.
    victim = tmp_path / "outside" / "victim.bin"
    victim.parent.mkdir()
    path = tmp_path / "inside" / "m"
    buffer = kinds.filled("memmap", path)
    xreplay.save(buffer, path)
    meta = read_meta(path)
    victim.write_bytes(b"v" * meta["arrays"]["rows"]["shape"][0] * meta["arrays"]["rows"]["shape"][1])
    meta["arrays"]["rows"]["file"] = "../../outside/victim.bin"
    reseal(path, meta)
    before = victim.read_bytes()
    readers = (lambda: xreplay.load(path, mmap="shared", kind=EpisodeBuffer), lambda: open_storage(path))
    for reader in readers:
        with pytest.raises(CheckpointPathError):
            reader()
    assert victim.read_bytes() == before and sorted(p.name for p in victim.parent.iterdir()) == ["victim.bin"]


def test_a_dropped_checksum_is_corruption(box):
    path, _secret = box
    meta = read_meta(path)
    del meta["arrays"]["rows"]["crc32"]
    reseal(path, meta)
    for reader in (load, verify, lambda p: load(p, mmap=True)):
        with pytest.raises(CheckpointSchemaError, match="arrays.rows.crc32' is missing") as info:
            reader(path)
        assert info.value.key == "arrays.rows.crc32"


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_loads_verify_by_default_and_verify_false_is_explicit(box, mmap):
    path, _secret = box
    rows = path / read_meta(path)["arrays"]["rows"]["file"]
    data = bytearray(rows.read_bytes())
    data[4096 + 7] ^= 0x10  # a byte of the data, after the .npy header
    rows.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError, match="fails its checksum"):
        load(path, mmap=mmap)
    loaded = load(path, mmap=mmap, verify=False)  # the caller accepts the risk: the damage loads silently
    assert not torch.equal(loaded.storage.rows, filled_buffer().storage.rows)


def test_every_byte_flip_of_metadata_json_is_a_typed_error(box):
    path, _secret = box
    good = (path / "metadata.json").read_bytes()
    expected = kinds.snapshot(load(path))
    positions = np.random.default_rng(0).choice(len(good), size=min(300, len(good)), replace=False)
    for position in positions:
        data = bytearray(good)
        data[position] ^= 1 << int(position % 8)
        (path / "metadata.json").write_bytes(bytes(data))
        try:
            loaded = load(path)
        except CheckpointError as error:
            assert str(path) in str(error)
        else:  # only a change JSON does not see (whitespace) may load, and then exactly as saved
            assert json.loads(bytes(data)) == json.loads(good) and kinds.snapshot(loaded) == expected
    (path / "metadata.json").write_bytes(good)


class Marker:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class Payload:
    """A user class a DI-engine record may hold (pickled: needs trusted=True)."""

    def __init__(self, value):
        self.value = value


def _set_array(path, meta, name, data, dtype="|u1"):
    file = f"{name.replace('.', '_')}.g000009.npy"
    shape = [len(data) // np.dtype(dtype).itemsize]
    (path / file).write_bytes(npy_header(np.dtype(dtype), tuple(shape)) + data)  # what xreplay writes
    meta["arrays"][name] = {
        "dtype": dtype,
        "shape": shape,
        "file": file,
        "nbytes": len(data),
        "crc32": zlib.crc32(data),
        "deltas": [],
    }


@pytest.mark.parametrize("reader", ["load_data", "generic_load", "generic_load_kind"])
@pytest.mark.parametrize("hidden", [False, True], ids=["version1_pickle", "pickle_inside_safe_payload"])
def test_a_pickled_payload_runs_no_code_on_load(tmp_path, reader, hidden):
    path, marker = tmp_path / "buf", tmp_path / "pwned"
    kinds.filled("ding").save_data(str(path))
    meta = read_meta(path)
    blob = pickle.dumps({"items": [Marker(marker)]})
    if hidden:  # a pickle node in the code-free encoding, with metadata that claims there is none
        _set_array(path, meta, "payload.tree", b'{"p":0}')
        _set_array(path, meta, "payload.data", blob)
        _set_array(path, meta, "payload.offsets", np.array([0, len(blob)], np.int64).tobytes(), "<i8")
        meta["state"]["python_objects"] = []
    else:
        meta["state"]["payload_version"] = 1
        _set_array(path, meta, "payload", blob)
    reseal(path, meta)
    target = kinds.make("ding")
    run = {
        "load_data": lambda: target.load_data(str(path)),
        "generic_load": lambda: load(path),
        "generic_load_kind": lambda: load(path, kind="ding.deque_buffer"),
    }[reader]
    with pytest.raises(UntrustedCheckpointError, match="trusted=True"):
        run()
    assert not marker.exists() and target.count() == 0


def test_plain_records_load_without_trust_and_objects_need_it(tmp_path):
    from xreplay.compat.ding import DequeBuffer

    plain = DequeBuffer(size=4)
    plain.push({"obs": np.arange(3.0), "t": torch.ones(2), "info": {"ok": True, "tags": ("a", 1)}})
    plain.save_data(str(tmp_path / "plain"))
    assert read_meta(tmp_path / "plain")["state"]["python_objects"] == []
    other = DequeBuffer(size=4)
    other.load_data(str(tmp_path / "plain"))
    record = other.storage[0].data
    assert record["obs"].tolist() == [0.0, 1.0, 2.0] and torch.equal(record["t"], torch.ones(2))
    assert record["info"] == {"ok": True, "tags": ("a", 1)}

    objects = DequeBuffer(size=4)
    objects.push(Payload(7))
    objects.save_data(str(tmp_path / "objects"))
    listed = read_meta(tmp_path / "objects")["state"]["python_objects"]
    assert listed == [f"{Payload.__module__}.Payload"]
    target = DequeBuffer(size=4)
    with pytest.raises(UntrustedCheckpointError, match=r"Payload.*unpickling runs code.*trusted=True") as info:
        target.load_data(str(tmp_path / "objects"))
    assert "load_data(path, trusted=True)" in str(info.value) and target.count() == 0
    target.load_data(str(tmp_path / "objects"), trusted=True)  # the caller trusts the author
    assert target.storage[0].data.value == 7


def _set_state(path, update):
    meta = read_meta(path)
    update(meta)
    reseal(path, meta)


def _lengths(path, meta, value):
    lengths = np.zeros(meta["arrays"]["lengths"]["shape"][0], np.int32)
    lengths[0] = value
    _set_array(path, meta, "lengths", lengths.tobytes(), "<i4")


def _one_row(path, meta):
    rows = meta["arrays"]["rows"]
    _set_array(path, meta, "rows", bytes(rows["shape"][1]))
    meta["arrays"]["rows"]["shape"] = [1, rows["shape"][1]]


CRAFTED = [
    pytest.param("episode", lambda p, m: m["state"]["writer"].update(cursor=13), "state.writer.cursor", id="cursor_13"),
    pytest.param("episode", lambda p, m: m["state"]["writer"].update(size=-1), "state.writer.size", id="size_minus_1"),
    pytest.param("episode", lambda p, m: _lengths(p, m, 999), "arrays.lengths", id="length_999"),
    pytest.param("episode", lambda p, m: _lengths(p, m, -5), "arrays.lengths", id="length_minus_5"),
    pytest.param("episode", _one_row, "arrays.rows.shape", id="one_row_column"),
    pytest.param("episode", lambda p, m: m["structure"]["layout"].update(order="diagonal"), "structure.layout.order",
                 id="unknown_row_order"),  # fmt: skip
    pytest.param("episode", lambda p, m: m["structure"].update(capacity=10**11), "arrays.rows.shape", id="capacity"),
    pytest.param("episode", lambda p, m: m["state"].update(rng={"bit_generator": "PCG64", "state": 1}), "state.rng",
                 id="garbage_rng"),  # fmt: skip
    pytest.param("episode", lambda p, m: m["state"]["rng"].update(bit_generator="os.system"),
                 "state.rng.bit_generator", id="unknown_rng"),  # fmt: skip
    pytest.param("transition", lambda p, m: m["structure"]["sampler"].update(beta={"type": "cosine"}),
                 "structure.sampler.beta.type", id="unknown_schedule"),  # fmt: skip
    pytest.param("transition", lambda p, m: m["structure"].update(capacity=10**11), "column0.shape",
                 id="transition_capacity"),  # fmt: skip
    pytest.param("ding", lambda p, m: m["state"].update(count=10**6), "state.count", id="ding_count"),
    pytest.param("pymarl", lambda p, m: m["state"]["writer"].update(cursor=8), "state.writer.cursor",
                 id="pymarl_cursor"),  # fmt: skip
]


@pytest.mark.parametrize(("kind", "craft", "key"), CRAFTED)
def test_crafted_metadata_values_name_the_key_and_the_rule(tmp_path, kind, craft, key):
    path = tmp_path / "ckpt"
    kinds.save(kind, kinds.filled(kind), path)
    _set_state(path, lambda meta: craft(path, meta))
    target = kinds.make(kind)
    with pytest.raises(CheckpointSchemaError) as info:
        kinds.load_back(kind, path) if kind != "ding" else target.load_data(str(path))
    assert key in info.value.key and info.value.rule and key in str(info.value)
    if kind == "ding":
        assert target.count() == 0  # the buffer loaded into is unchanged


def test_sizes_are_checked_against_memory_before_allocating(box, monkeypatch):
    path, _secret = box
    monkeypatch.setattr("xreplay.persistence.memory.available_memory", lambda: 1000)
    with pytest.raises(CheckpointTooLargeError, match=r"needs .* GiB .* mmap=True") as info:
        load(path)
    assert isinstance(info.value, MemoryError)
    assert len(load(path, mmap=True)) == 10  # mapped: nothing is allocated for the rows


@pytest.mark.parametrize("kind", ["episode", "memmap"])
@pytest.mark.parametrize("order", ["step", "field", None])
def test_a_row_order_in_a_checkpoint_without_npy_headers_is_refused(tmp_path, kind, order):
    import shutil
    from pathlib import Path

    from tests.persistence.persistence_helpers import read_meta, reseal

    path = tmp_path / kind
    shutil.copytree(Path(__file__).parent / "fixtures" / "v2" / kind, path)  # format 2: raw rows, no header
    meta = read_meta(path)
    meta["structure"]["layout"]["order"] = order  # only a header could tell the orders apart
    reseal(path, meta)
    with pytest.raises(xreplay.CheckpointSchemaError, match="structure.layout.order"):
        xreplay.load(path)
