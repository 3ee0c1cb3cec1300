"""to_hdf5 / from_hdf5 integrity: per-dataset CRC-32 (the default), Fletcher-32 chunks, truncation, older files."""

from __future__ import annotations

import functools
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.datasets.helpers import (
    assert_unchanged,
    buffer_state,
    episode_buffer,
    same_episodes,
    same_transitions,
    transition_buffer,
)
from xreplay.datasets import from_hdf5, to_hdf5
from xreplay.errors import ArgumentError, DatasetCorruptError

h5py = pytest.importorskip("h5py")

DATA = Path(__file__).parent / "data"
# Written by to_hdf5 before the per-dataset CRC-32 existed (Fletcher-32 chunks, no root 'checksum' attribute),
# from transition_buffer("wrapped") and episode_buffer(6, 5).
LEGACY = {"transitions": DATA / "fletcher32-transitions-v1.h5", "episodes": DATA / "fletcher32-episodes-v1.h5"}


def _datasets(path: Path) -> list[str]:
    """Return the names of every dataset in the file."""
    names: list[str] = []
    with h5py.File(path) as f:
        f.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
    return names


def _data_ranges(path: Path, name: str) -> list[tuple[int, int]]:
    """Return the file byte ranges (offset, length) of the rows a chunked dataset holds (not its chunks' padding)."""
    with h5py.File(path) as f:
        dataset = f[name]
        row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
        chunk_rows = dataset.chunks[0]
        ranges = []
        for k in range(dataset.id.get_num_chunks()):
            info = dataset.id.get_chunk_info(k)
            rows = min(chunk_rows, dataset.shape[0] - info.chunk_offset[0])
            ranges.append((info.byte_offset, rows * row_bytes))
        return ranges


def _flip(path: Path, offset: int, bit: int) -> None:
    """Flip one bit of the file at byte ``offset``."""
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)[0]
        raw.seek(offset)
        raw.write(bytes([byte ^ (1 << bit)]))


def test_default_is_a_crc32_per_dataset_that_zlib_recomputes(tmp_path):
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5")
    with h5py.File(path) as f:
        assert f.attrs["checksum"] == "crc32"
        for name in _datasets(path):
            dataset = f[name]
            assert not dataset.fletcher32
            assert int(dataset.attrs["crc32"]) == zlib.crc32(np.ascontiguousarray(dataset[:]).tobytes()), name


@pytest.mark.parametrize(
    "write_bytes, chunk_bytes",
    [
        pytest.param(8 << 20, 1 << 20, id="one_write"),
        pytest.param(64, 64, id="a_write_per_chunk"),
        pytest.param(200, 64, id="several_chunks_per_write"),
    ],
)
@pytest.mark.parametrize("kind", ["wrapped", "next_obs_once", "nested", "empty"])
def test_crc_is_the_same_however_the_rows_are_split(tmp_path, monkeypatch, write_bytes, chunk_bytes, kind):
    import xreplay.datasets.hdf5.export as export

    monkeypatch.setattr(export, "_WRITE_BYTES", write_bytes)
    buf = transition_buffer(kind)
    path = to_hdf5(buf, tmp_path / "replay.h5", chunk_bytes=chunk_bytes)
    with h5py.File(path) as f:
        for name in _datasets(path):
            assert int(f[name].attrs["crc32"]) == zlib.crc32(np.ascontiguousarray(f[name][:]).tobytes()), name
    same_transitions(buf, from_hdf5(path))


@pytest.mark.parametrize("kind", ["wrapped", "nested"])
def test_zlib_crc_on_a_helper_thread_gives_the_same_file(tmp_path, monkeypatch, kind):
    """Without ISA-L, zlib's CRC runs beside the writes; the attribute is the same and loads back."""
    import xreplay.datasets.hdf5.export as export

    monkeypatch.setattr(export, "_WRITE_BYTES", 64)  # a run of rows per chunk: the stage is reused between runs
    fast = to_hdf5(transition_buffer(kind), tmp_path / "fast.h5", chunk_bytes=64)
    monkeypatch.setattr(export, "crc32", zlib.crc32)
    slow = to_hdf5(transition_buffer(kind), tmp_path / "zlib.h5", chunk_bytes=64)
    with h5py.File(fast) as f, h5py.File(slow) as g:
        for name in _datasets(fast):
            assert int(f[name].attrs["crc32"]) == int(g[name].attrs["crc32"]), name
    same_transitions(transition_buffer(kind), from_hdf5(slow))


def test_episode_buffer_crc_round_trip(tmp_path, monkeypatch):
    import xreplay.datasets.hdf5.export as export

    monkeypatch.setattr(export, "_WRITE_BYTES", 100)  # several writes per dataset, across the ring's wrap
    buf = episode_buffer(6, 5)
    path = to_hdf5(buf, tmp_path / "episodes.h5", chunk_bytes=100)
    same_episodes(buf, from_hdf5(path))


@pytest.mark.parametrize("checksum", [True, False, "md5", 32])
def test_unknown_checksum_is_refused_before_writing(tmp_path, checksum):
    with pytest.raises(ArgumentError, match=r"checksum .*expected one of 'crc32', 'fletcher32', None"):
        to_hdf5(transition_buffer("plain"), tmp_path / "replay.h5", checksum=checksum)
    assert list(tmp_path.iterdir()) == []


# -- corrupted bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "checksum, message",
    [
        pytest.param("crc32", r"'/fields/obs' fails its checksum: expected CRC-32 0x[0-9a-f]{8}", id="crc32"),
        pytest.param("fletcher32", r"'/fields/obs' rows 0\.\.32 cannot be read", id="fletcher32"),
    ],
)
def test_corrupted_bytes_are_detected(tmp_path, checksum, message):
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5", checksum=checksum)
    offset = _data_ranges(path, "fields/obs")[0][0]
    with open(path, "r+b") as raw:
        raw.seek(offset + 4)
        raw.write(b"\xff\xfe\xfd\xfc")
    with pytest.raises(DatasetCorruptError, match=message) as info:
        from_hdf5(path)
    assert str(path) in str(info.value)


def test_without_checksum_corruption_loads_silently(tmp_path):
    """What checksum=None gives up: the flipped value is loaded as it is."""
    buf = transition_buffer("wrapped")
    path = to_hdf5(buf, tmp_path / "replay.h5", checksum=None)
    _flip(path, _data_ranges(path, "fields/reward")[0][0], 3)
    back = from_hdf5(path)
    assert len(back) == len(buf)
    with pytest.raises(AssertionError):
        same_transitions(buf, back)


@functools.cache
def _file_and_its_data(kind: str) -> tuple[bytes, list[tuple[str, int, int]]]:
    """Return a file's bytes and, per dataset, the byte range of its rows (a crc32 file of one buffer kind)."""
    folder = Path(tempfile.mkdtemp())
    try:
        buf = transition_buffer("wrapped") if kind == "transitions" else episode_buffer(6, 5)
        path = to_hdf5(buf, folder / "file.h5", chunk_bytes=256)  # several chunks per dataset
        ranges = [(name, *r) for name in _datasets(path) for r in _data_ranges(path, name) if r[1]]
        return path.read_bytes(), ranges
    finally:
        shutil.rmtree(folder)


def _nth_data_byte(ranges: list[tuple[str, int, int]], at: int) -> tuple[str, int]:
    """Return the dataset and file offset of the ``at``-th byte of the datasets' rows, counted over all of them."""
    for name, offset, length in ranges:
        if at < length:
            return name, offset + at
        at -= length
    raise IndexError(at)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["transitions", "episodes"]), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7)
)
def test_any_flipped_bit_in_any_dataset_is_detected(kind, where, bit):
    raw, ranges = _file_and_its_data(kind)
    name, offset = _nth_data_byte(ranges, int(where * sum(length for _n, _o, length in ranges)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.h5"
        path.write_bytes(raw)
        _flip(path, offset, bit)
        with pytest.raises(DatasetCorruptError, match=f"'/{name}' fails its checksum"):
            from_hdf5(path)


def test_corrupted_file_leaves_an_existing_buffer_unchanged(tmp_path):
    path = to_hdf5(episode_buffer(6, 5), tmp_path / "episodes.h5")
    target = from_hdf5(path)
    before = buffer_state(target)
    _flip(path, _data_ranges(path, "fields/reward")[0][0] + 5, 0)
    with pytest.raises(DatasetCorruptError, match="'/fields/reward' fails its checksum"):
        from_hdf5(path, buffer=target)
    assert_unchanged(target, before)


@pytest.mark.parametrize(
    "edit, message",
    [
        pytest.param(
            lambda f: f["fields/obs"].attrs.__delitem__("crc32"),
            r"'/fields/obs' has no 'crc32' attribute, which the root attribute checksum='crc32' promises",
            id="crc_attribute_missing",
        ),
        pytest.param(
            lambda f: f["fields/action"].attrs.__setitem__("crc32", np.uint32(12345)),
            r"'/fields/action' fails its checksum: expected CRC-32 0x00003039",
            id="crc_attribute_changed",
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("checksum", "sha1"),
            r"root attribute 'checksum' is 'sha1', expected 'crc32', 'fletcher32' or 'none'",
            id="unknown_method",
        ),
    ],
)
def test_damaged_checksum_attributes(tmp_path, edit, message):
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5")
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(DatasetCorruptError, match=message):
        from_hdf5(path)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda f: f.attrs.__delitem__("checksum"), id="root_attribute_deleted"),
        pytest.param(lambda f: f.attrs.__setitem__("checksum", "fletcher32"), id="root_says_fletcher32"),
        pytest.param(lambda f: f.attrs.__setitem__("checksum", "none"), id="root_says_none"),
    ],
)
def test_a_damaged_root_attribute_does_not_turn_the_crc_off(tmp_path, edit):
    """Each dataset's crc32 attribute is checked whatever the root says; a promised Fletcher-32 must be there."""
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5")
    _flip(path, _data_ranges(path, "fields/reward")[0][0], 3)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(DatasetCorruptError, match="fails its checksum"):
        from_hdf5(path)


def test_a_file_naming_fletcher32_without_its_chunk_checksums_is_refused(tmp_path):
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5", checksum=None)
    with h5py.File(path, "r+") as f:
        f.attrs["checksum"] = "fletcher32"
    with pytest.raises(DatasetCorruptError, match="has no Fletcher-32 chunk checksums"):
        from_hdf5(path)


@pytest.mark.parametrize("value", ["not a number", np.float64("nan"), np.array([1, 2], np.uint32)], ids=repr)
def test_a_crc_attribute_that_is_no_integer_is_a_corrupt_file(tmp_path, value):
    path = to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5")
    with h5py.File(path, "r+") as f:
        f["fields/obs"].attrs["crc32"] = value
    with pytest.raises(DatasetCorruptError, match="'crc32' attribute should be a CRC-32"):
        from_hdf5(path)


def test_datasets_stored_in_other_files_are_refused(tmp_path):
    """An untrusted file may name data anywhere on disk: an external link, external raw storage, a virtual dataset."""
    buf = transition_buffer("wrapped")
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["reward"] = np.zeros(len(buf), np.float32)
        f["fields/reward"] = np.zeros(len(buf), np.float32)
    linked = to_hdf5(buf, tmp_path / "linked.h5")
    with h5py.File(linked, "r+") as f:
        crc = f["fields/reward"].attrs["crc32"]
        del f["fields/reward"]
        f["fields/reward"] = h5py.ExternalLink(str(outside), "reward")
    with pytest.raises(DatasetCorruptError, match="'fields/reward' is a link to another file"):
        from_hdf5(linked)
    group = to_hdf5(buf, tmp_path / "group.h5")
    with h5py.File(group, "r+") as f:
        del f["fields"]
        f["fields"] = h5py.ExternalLink(str(outside), "fields")
    with pytest.raises(DatasetCorruptError, match="'fields' is a link to another file"):
        from_hdf5(group)
    virtual = to_hdf5(buf, tmp_path / "virtual.h5")
    with h5py.File(virtual, "r+") as f:
        del f["fields/reward"]
        layout = h5py.VirtualLayout(shape=(len(buf),), dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(outside), "reward", shape=(len(buf),))
        f.create_virtual_dataset("fields/reward", layout)
        f["fields/reward"].attrs["crc32"] = crc
    with pytest.raises(DatasetCorruptError, match="keeps its data in other files"):
        from_hdf5(virtual)


@pytest.mark.parametrize("checksum", ["crc32", "fletcher32", None])
@pytest.mark.parametrize("keep", [pytest.param(0.5, id="half"), pytest.param(0.98, id="last_bytes")])
def test_truncated_files_are_refused(tmp_path, checksum, keep):
    path = to_hdf5(episode_buffer(6, 5), tmp_path / "episodes.h5", checksum=checksum)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DatasetCorruptError):
        from_hdf5(path)


# -- files written before the CRC-32 ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["transitions", "episodes"])
def test_older_fletcher32_files_still_load(kind):
    back = from_hdf5(LEGACY[kind])
    if kind == "transitions":
        same_transitions(transition_buffer("wrapped"), back)
    else:
        same_episodes(episode_buffer(6, 5), back)
    with h5py.File(LEGACY[kind]) as f:
        assert "checksum" not in f.attrs and f["fields/obs"].fletcher32


def test_older_fletcher32_files_still_detect_corruption(tmp_path):
    path = Path(shutil.copy(LEGACY["transitions"], tmp_path / "old.h5"))
    _flip(path, _data_ranges(path, "fields/obs")[0][0] + 7, 2)
    with pytest.raises(DatasetCorruptError, match=r"'/fields/obs' rows 0\.\.32 cannot be read"):
        from_hdf5(path)


def test_an_export_during_writes_is_one_consistent_state(tmp_path, monkeypatch):
    """Writers wait while to_hdf5 copies, so its file verifies (a write between the CRC and the copy would not)."""
    import sys
    import threading

    import xreplay.datasets.hdf5.export as export
    from xreplay import TransitionBuffer

    monkeypatch.setattr(export, "_WRITE_BYTES", 1 << 14)  # many writes per dataset, as a large buffer has
    switch = sys.getswitchinterval()
    buf = TransitionBuffer(20_000, seed=0)
    for k in range(20):
        buf.extend({"obs": np.full((1000, 16), k, np.float32)})
    stop, counter = threading.Event(), [20]

    def writer() -> None:
        while not stop.is_set():
            buf.extend({"obs": np.full((500, 16), counter[0], np.float32)})
            counter[0] += 1

    thread = threading.Thread(target=writer)
    sys.setswitchinterval(1e-4)
    thread.start()
    try:
        paths = [to_hdf5(buf, tmp_path / f"replay-{i}.h5", chunk_bytes=1 << 14) for i in range(3)]
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    for path in paths:
        obs = from_hdf5(path).gather(np.arange(20_000))["obs"].numpy()
        assert (obs == obs[:, :1]).all()  # no item torn between two writes
