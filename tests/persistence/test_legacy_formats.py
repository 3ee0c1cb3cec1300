"""Checkpoints written in older formats still load, exactly as they were saved.

``fixtures/v2/<kind>`` was written by xreplay's format-2 code (``fixtures/make_v2.py``): one
checkpoint per kind holding the state of ``kinds.filled(kind, writes=6)``, each with the files of an
incremental save (delta files, or a memmap flush's redo record).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.persistence import kinds
from xreplay.persistence import verify

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
