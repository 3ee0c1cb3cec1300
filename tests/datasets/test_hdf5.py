"""to_hdf5 / from_hdf5: round trips of both buffer kinds, files that h5py alone reads, and bad files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from tests.datasets.helpers import (
    age_order,
    assert_unchanged,
    buffer_state,
    episode_buffer,
    same_episodes,
    same_transitions,
    transition_buffer,
)
from xreplay import EpisodeBuffer, PrioritizedSampler, TransitionBuffer
from xreplay.datasets import from_hdf5, to_hdf5
from xreplay.errors import (
    DatasetCorruptError,
    DatasetError,
    DatasetFieldMissingError,
    DatasetMismatchError,
    XReplayError,
)

h5py = pytest.importorskip("h5py")

TRANSITION_KINDS = ["plain", "prioritized", "wrapped", "next_obs_once", "nested", "empty"]


@pytest.mark.parametrize("kind", TRANSITION_KINDS)
def test_transition_buffer_round_trip(tmp_path, kind):
    buf = transition_buffer(kind)
    back = from_hdf5(to_hdf5(buf, tmp_path / "replay.h5"), seed=1)
    assert isinstance(back, TransitionBuffer)
    assert back.capacity == buf.capacity
    assert back.next_obs_from == buf.next_obs_from and back.next_obs_fields == buf.next_obs_fields
    assert isinstance(back.sampler, PrioritizedSampler) == (kind == "prioritized")
    same_transitions(buf, back)


@pytest.mark.parametrize(
    "capacity, batches",
    [pytest.param(6, 2, id="not_full"), pytest.param(6, 5, id="wrapped"), pytest.param(4, 0, id="empty")],
)
def test_episode_buffer_round_trip_keeps_compact_dtypes(tmp_path, capacity, batches):
    buf = episode_buffer(capacity, batches)
    path = to_hdf5(buf, tmp_path / "episodes.h5")
    back = from_hdf5(path)
    assert isinstance(back, EpisodeBuffer)
    assert back.scheme == buf.scheme and back.capacity == buf.capacity and back.max_seq_length == 7
    same_episodes(buf, back)
    with h5py.File(path) as f:
        # stored as compactly as in the buffer ("auto" storage starts at bool)
        assert f["fields/action"].dtype == (np.uint8 if batches else np.bool_)
        assert f["fields/action"].attrs["dtype"] == "int64"
        assert "action_onehot" not in f["fields"]  # derived at read time, not written


def test_h5py_alone_reads_fields_in_age_order_with_counters(tmp_path):
    buf = transition_buffer("wrapped")
    path = to_hdf5(buf, tmp_path / "replay.h5")
    expected = buf.gather(age_order(buf))
    with h5py.File(path) as f:
        assert f.attrs["format"] == "xreplay.hdf5" and f.attrs["kind"] == "transition_buffer"
        assert (int(f.attrs["size"]), int(f.attrs["capacity"]), int(f.attrs["writes"])) == (32, 32, 50)
        assert set(json.loads(f.attrs["fields"])) == set(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(f[f"fields/{name}"][:], value.numpy())


def test_episode_file_has_lengths_and_scheme(tmp_path):
    buf = episode_buffer(6, 5)
    path = to_hdf5(buf, tmp_path / "episodes.h5")
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["lengths"][:], buf.episode_lengths()[age_order(buf)])
        assert list(json.loads(f.attrs["scheme"])["fields"]) == list(buf.scheme)
        assert f["fields/obs"].shape == (6, 7, 2, 3) and f["fields/seed"].shape == (6,)


@pytest.mark.parametrize(
    "options, check",
    [
        pytest.param({}, lambda d: "crc32" in d.attrs and not d.fletcher32 and d.compression is None, id="crc32"),
        pytest.param({"checksum": "fletcher32"}, lambda d: d.fletcher32 and "crc32" not in d.attrs, id="fletcher32"),
        pytest.param({"checksum": None}, lambda d: not d.fletcher32 and "crc32" not in d.attrs, id="no_checksum"),
        pytest.param({"compression": "gzip", "compression_opts": 4}, lambda d: d.compression == "gzip", id="gzip"),
        pytest.param({"compression": "lzf"}, lambda d: d.compression == "lzf", id="lzf"),
    ],
)
def test_datasets_are_chunked_with_the_filters_asked_for(tmp_path, options, check):
    buf = transition_buffer("wrapped")
    path = to_hdf5(buf, tmp_path / "replay.h5", chunk_bytes=64, **options)
    with h5py.File(path) as f:
        obs = f["fields/obs"]
        assert obs.chunks == (5, 3)  # 64 bytes / 12 bytes per row
        assert check(obs)
    same_transitions(buf, from_hdf5(path))


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "replay.h5"
    path.write_bytes(b"keep me")
    with pytest.raises(DatasetError, match="overwrite=True"):
        to_hdf5(transition_buffer("plain"), path)
    assert path.read_bytes() == b"keep me"
    to_hdf5(transition_buffer("plain"), path, overwrite=True)
    assert len(from_hdf5(path)) == 20


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import xreplay.datasets.hdf5.export as module

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_write_column", fail)
    with pytest.raises(DatasetError, match="No space left"):
        to_hdf5(transition_buffer("plain"), tmp_path / "replay.h5")
    assert list(tmp_path.iterdir()) == []


def test_missing_h5py_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'xreplay\[datasets\]'"):
        to_hdf5(transition_buffer("plain"), tmp_path / "replay.h5")


# -- bad files -------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    return to_hdf5(transition_buffer("wrapped"), tmp_path / "replay.h5")


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def test_truncated_file(saved):
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError, match="truncated"):
        from_hdf5(saved)


def test_not_hdf5(saved):
    saved.write_bytes(b"\x00" * 4096)
    with pytest.raises(DatasetCorruptError, match="cannot be opened as HDF5"):
        from_hdf5(saved)


def test_no_file(tmp_path):
    with pytest.raises(DatasetError, match="no HDF5 file"):
        from_hdf5(tmp_path / "missing.h5")


@pytest.mark.parametrize(
    "edit, error, message",
    [
        pytest.param(
            lambda f: f.__delitem__("fields/reward"),
            DatasetFieldMissingError,
            "'fields/reward' is missing",
            id="dataset_missing",
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("format", "other"),
            DatasetCorruptError,
            "'format' is 'other', expected 'xreplay.hdf5'",
            id="other_format",
        ),
        pytest.param(
            lambda f: f.attrs.__delitem__("kind"), DatasetCorruptError, "attribute 'kind' is missing", id="kind_missing"
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("format_version", 99), DatasetError, "version 99", id="newer_version"
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("size", 40),
            DatasetCorruptError,
            "size 40 and capacity 32",
            id="size_over_capacity",
        ),
        pytest.param(
            lambda f: f.attrs.__setitem__("fields", "{not json"),
            DatasetCorruptError,
            "'fields' is not a valid field list",
            id="fields_not_json",
        ),
        pytest.param(
            lambda f: (f.__delitem__("fields/action"), f.create_dataset("fields/action", data=np.zeros(31))),
            DatasetCorruptError,
            r"expected shape \(32,\), received \(31,\)",
            id="rows_missing",
        ),
        pytest.param(
            lambda f: (f.__delitem__("fields/action"), f.create_dataset("fields/action", data=np.zeros(32))),
            DatasetCorruptError,
            "expected dtype int64, received float64",
            id="other_dtype",
        ),
    ],
)
def test_inconsistent_files_name_the_field(saved, edit, error, message):
    _edit(saved, edit)
    with pytest.raises(error, match=message) as info:
        from_hdf5(saved)
    assert isinstance(info.value, XReplayError) and str(saved) in str(info.value)


def test_episode_lengths_out_of_range(tmp_path):
    # a file without checksums (a CRC-32 would refuse the edited lengths first: see test_hdf5_integrity)
    path = to_hdf5(episode_buffer(6, 2), tmp_path / "episodes.h5", checksum=None)
    _edit(path, lambda f: f["lengths"].__setitem__(0, 9))
    with pytest.raises(DatasetCorruptError, match=r"'lengths' expected values in \[0, 7\], received 9"):
        from_hdf5(path)


def test_episode_scheme_attribute_corrupt(tmp_path):
    path = to_hdf5(episode_buffer(6, 2), tmp_path / "episodes.h5")
    _edit(path, lambda f: f.attrs.__setitem__("scheme", json.dumps({"fields": {"obs": {"dtype": "float99"}}})))
    with pytest.raises(DatasetCorruptError, match="not a valid xreplay scheme"):
        from_hdf5(path)


# -- into an existing buffer -------------------------------------------------------------------------


def test_into_an_existing_buffer_appends(saved):
    target = TransitionBuffer(100, seed=3)
    from_hdf5(saved, buffer=target)
    from_hdf5(saved, buffer=target)
    assert len(target) == 64
    expected = from_hdf5(saved).gather(np.arange(32))
    got = target.gather(np.arange(32, 64))
    for name in expected:
        assert torch.equal(expected[name], got[name])


@pytest.mark.parametrize(
    "first_write, message",
    [
        pytest.param(
            {"obs": np.zeros((1, 4), np.float32)}, r"field 'action': the buffer has no such field", id="other_fields"
        ),
        pytest.param(
            {
                k: np.zeros((1, *s), d)
                for k, (s, d) in {
                    "obs": ((2,), np.float32),
                    "next_obs": ((3,), np.float32),
                    "action": ((), np.int64),
                    "reward": ((), np.float32),
                    "terminated": ((), bool),
                    "truncated": ((), bool),
                }.items()
            },
            r"field 'obs': expected item shape \(2,\) and dtype float32 \(the buffer's\), received \(3,\) and float32",
            id="other_shape",
        ),
    ],
)
def test_mismatched_buffer_is_refused_and_unchanged(saved, first_write, message):
    target = TransitionBuffer(100, seed=3)
    target.extend(first_write)
    before = buffer_state(target)
    with pytest.raises(DatasetMismatchError, match=message):
        from_hdf5(saved, buffer=target)
    assert_unchanged(target, before)


def test_corrupt_file_leaves_an_existing_buffer_unchanged(saved):
    target = from_hdf5(saved)
    before = buffer_state(target)
    with h5py.File(saved) as f:
        offset = f["fields/truncated"].id.get_chunk_info(0).byte_offset
    with open(saved, "r+b") as raw:
        raw.seek(offset)
        raw.write(b"\x07" * 8)
    with pytest.raises(DatasetCorruptError):
        from_hdf5(saved, buffer=target)
    assert_unchanged(target, before)


def test_episodes_into_a_buffer_with_longer_episodes(tmp_path):
    source = episode_buffer(6, 2)
    path = to_hdf5(source, tmp_path / "episodes.h5")
    target = EpisodeBuffer(source.scheme, 10, 12, seed=0)
    from_hdf5(path, buffer=target)
    got, want = target.get(np.arange(4), truncate=True), source.get(age_order(source), truncate=True)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_episodes_into_a_buffer_too_short_are_refused(tmp_path):
    source = episode_buffer(6, 2)
    path = to_hdf5(source, tmp_path / "episodes.h5")
    target = EpisodeBuffer(source.scheme, 10, 5, seed=0)
    before = buffer_state(target)
    with pytest.raises(DatasetMismatchError, match="episodes of up to 6 steps do not fit max_seq_length=5"):
        from_hdf5(path, buffer=target)
    assert_unchanged(target, before)


def test_episodes_into_a_transition_buffer_are_refused(tmp_path):
    path = to_hdf5(episode_buffer(6, 2), tmp_path / "episodes.h5")
    with pytest.raises(DatasetMismatchError, match="holds episodes; buffer is a TransitionBuffer"):
        from_hdf5(path, buffer=TransitionBuffer(4))
