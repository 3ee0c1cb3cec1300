import json

import pytest

from xreplay.errors import CheckpointError
from xreplay.persistence import FORMAT_VERSION, read_snapshot, write_snapshot


def test_round_trip_with_metadata(tmp_path):
    write_snapshot(tmp_path / "a" / "s", "kind", {"x": [1, 2]}, {"count": 2})
    assert read_snapshot(tmp_path / "a" / "s", "kind") == ({"x": [1, 2]}, {"count": 2})


def test_overwrite_is_atomic_replace(tmp_path):
    write_snapshot(tmp_path / "s", "k", 1)
    write_snapshot(tmp_path / "s", "k", 2)
    assert read_snapshot(tmp_path / "s", "k")[0] == 2 and len(list(tmp_path.iterdir())) == 1


def test_other_version_and_kind_rejected(tmp_path):
    path = tmp_path / "s"
    write_snapshot(path, "k", 1)
    with pytest.raises(CheckpointError, match="expected a 'other'"):
        read_snapshot(path, "other")
    blob = path.read_bytes()
    patched = blob.replace(f'"format_version": {FORMAT_VERSION}'.encode(), b'"format_version": 9')
    path.write_bytes(patched)
    with pytest.raises(CheckpointError, match="format version 9"):
        read_snapshot(path, "k")


def test_header_is_json_with_version(tmp_path):
    write_snapshot(tmp_path / "s", "k", 1, {"a": 1})
    blob = (tmp_path / "s").read_bytes()
    length = int.from_bytes(blob[8:16], "little")
    header = json.loads(blob[16 : 16 + length])
    assert header["format_version"] == FORMAT_VERSION and header["metadata"] == {"a": 1}
