"""Shared fixtures: a fixed hypothesis profile so CI time stays bounded.

The reference model in ``tests/reference`` is made importable as ``pymarl_reference`` here rather than in a
second ``conftest.py`` under ``tests/compat/pymarl``: pytest 9 refuses two rootdir conftest modules that share
the basename ``conftest`` ("import file mismatch") when their folders are not packages.
"""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from xreplay.storage.layout import ROW_ORDERS

_REFERENCE = str(Path(__file__).resolve().parent / "reference")
if _REFERENCE not in sys.path:
    sys.path.insert(0, _REFERENCE)

settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CI replays the same examples on every run (derandomized), so a landing never depends on luck;
# local runs keep exploring new examples.
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(params=ROW_ORDERS, scope="session")
def row_order(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs over every row order of episode storage (``"field"``, ``"step"``)."""
    return request.param
