"""Fuzzed checkpoints are refused with a typed error, or load exactly as saved (a reduced run;
``benchmarks/checkpoint_fuzz.py`` runs 1,000)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.persistence.fuzzing import MUTATIONS, Fuzzer, tally

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "darwin", reason="needs POSIX files")


def test_fuzzed_checkpoints_are_refused_or_load_as_saved(tmp_path):
    cases = Fuzzer(tmp_path, seed=9).run(120)
    failed = [f"{c.kind} | {c.mutation} | {c.reader} | {c.verdict} | {c.detail[:200]}" for c in cases if c.failed]
    assert failed == []
    counts = tally(cases)
    assert counts["refused"] > 100  # the mutations do damage
    assert {c.mutation.split()[0] for c in cases} >= {"flip", "truncate", "delete", "set"}
    assert len({name for name in MUTATIONS}) == 9
