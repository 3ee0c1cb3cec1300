"""Checkpoints written in older formats still load, exactly as they were saved.

``fixtures/v1/<kind>`` was written by xreplay 0.1.0 (format 1, ``fixtures/make_v1.py``) the same way.
``fixtures/v2/<kind>`` was written by xreplay's format-2 code (``fixtures/make_v2.py``): one
checkpoint per kind holding the state of ``kinds.filled(kind, writes=6)``, each with the files of an
incremental save (delta files, or a memmap flush's redo record).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.persistence import kinds
from xreplay.errors import UntrustedCheckpointError
from xreplay.persistence import load, verify

FIXTURES = Path(__file__).parent / "fixtures"


def _copy(tmp_path: Path, kind: str, version: int = 2) -> Path:
    path = tmp_path / kind
    shutil.copytree(FIXTURES / f"v{version}" / kind, path)
    return path


def _expected(tmp_path: Path, kind: str) -> tuple[str, dict[str, bytes]]:
    buffer = kinds.filled(kind, tmp_path / "fresh" if kind == "memmap" else None, writes=6)
    return kinds.snapshot(buffer, same_indices=kind != "ding")


@pytest.mark.parametrize("kind", kinds.KINDS)
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_format_2_checkpoint_loads_as_saved(tmp_path, kind, mmap):
    path = _copy(tmp_path, kind)
    assert verify(path)["format_version"] == 2
    loaded = kinds.load_back(kind, path, mmap=mmap)
    assert kinds.snapshot(loaded, same_indices=kind != "ding") == _expected(tmp_path, kind)


def _without_rng(text: str) -> tuple[str, dict]:
    """Return the snapshot text without the buffer's RNG state, and that state."""
    meta = json.loads(text)
    return json.dumps({**meta, "state": {k: v for k, v in meta["state"].items() if k != "rng"}}), meta["state"]["rng"]


@pytest.mark.parametrize("kind", kinds.KINDS)
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_format_1_checkpoint_loads_as_saved(tmp_path, kind, mmap):
    path = _copy(tmp_path, kind, version=1)
    saved = json.loads((path / "metadata.json").read_text())
    assert saved["format_version"] == 1 and "checksum" not in saved
    if kind == "ding":  # 0.1.0 pickled the DI-engine payload whole: loading it runs code, so it must be asked for
        with pytest.raises(UntrustedCheckpointError):
            kinds.load_back(kind, path)
        loaded = kinds.load_back(kind, path, mmap=mmap, trusted=True)
    elif kind == "memmap":  # a format-1 rows file has no row checksums: loading it unchecked must be asked for
        loaded = load(path, mmap=mmap, verify=False)
    else:
        verify(path)
        loaded = kinds.load_back(kind, path, mmap=mmap)
    (text, arrays), (expected_text, expected_arrays) = kinds.snapshot(loaded, kind != "ding"), _expected(tmp_path, kind)
    assert arrays == expected_arrays
    if kind in ("episode", "memmap"):  # 0.1.0's sampler drew from the generator differently: its saved state loads
        (text, rng), (expected_text, _rng) = _without_rng(text), _without_rng(expected_text)
        assert rng == saved["state"]["rng"]
    assert text == expected_text
