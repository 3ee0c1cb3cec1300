"""SIGKILL processes while they save or flush, many times: the last committed checkpoint always loads, verifies
and holds exactly the state of its save (a reduced run; ``benchmarks/checkpoint_crash.py`` runs 50 per kind)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.persistence import kinds
from tests.persistence.crashing import crash_loop

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


@pytest.mark.parametrize("kind", kinds.KINDS)
def test_killed_saves_leave_a_loadable_verified_exact_checkpoint(tmp_path, kind):
    report = crash_loop(kind, tmp_path, kills=3, seed=kinds.KINDS.index(kind))
    assert report.verified == report.exact == report.kills == 3
    leftovers = [p.name for p in (tmp_path / kind).iterdir() if p.name not in ("ckpt", ".ckpt.xreplay-lock")]
    assert all(name.startswith(("reference", ".reference", ".ckpt.xreplay-tmp-")) for name in leftovers)
