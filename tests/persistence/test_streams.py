"""Array streams: the CRC-32 is the same with ISA-L's fast CRC and with zlib's (threaded) fallback."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import xreplay.persistence.streams as streams


@pytest.mark.parametrize("fast", [True, False], ids=["isal_or_zlib", "zlib_threaded"])
def test_written_checksums_are_zlib_crc32_whichever_implementation(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setattr(streams, "_FAST_CRC32", None)
        monkeypatch.setattr(streams, "crc32", zlib.crc32)
    array = np.random.default_rng(0).integers(0, 255, (300, 70_001), dtype=np.uint8)  # several chunks
    nbytes, crc = streams.write_chunks(tmp_path / "a.bin", array, [(5, 290)], fsync=False)
    expected = array[5:290].tobytes()
    assert nbytes == len(expected) and crc == zlib.crc32(expected)
    assert streams.file_crc(tmp_path / "a.bin", nbytes) == crc
