"""Registration with DI-engine's classes, using stand-in modules (and the real ones when installed)."""

import abc
import importlib.util
import sys
import types
import warnings

import pytest

from xreplay.compat import ding as xding
from xreplay.compat.ding import integration


@pytest.fixture
def fake_ding(monkeypatch):
    class DingBuffer(abc.ABC):  # noqa: B024 - stands in for DI-engine's ABC
        pass

    class DingPER:
        pass

    buffer_mod = types.ModuleType(integration._BUFFER_MODULE)
    buffer_mod.Buffer = DingBuffer
    per_mod = types.ModuleType(integration._PER_MODULE)
    per_mod.PriorityExperienceReplay = DingPER
    monkeypatch.setitem(sys.modules, integration._BUFFER_MODULE, buffer_mod)
    monkeypatch.setitem(sys.modules, integration._PER_MODULE, per_mod)
    return DingBuffer, DingPER


def test_no_registration_and_no_import_without_ding():
    if importlib.util.find_spec("ding") is not None:
        pytest.skip("DI-engine is installed")
    buf = xding.DequeBuffer(size=2)
    per = xding.PriorityExperienceReplay(buf)
    assert type(per) is xding.PriorityExperienceReplay and "ding" not in sys.modules


def test_registers_buffer_and_per_when_ding_loaded(fake_ding):
    ding_buffer, ding_per = fake_ding
    buf = xding.DequeBuffer(size=4)
    per = xding.PriorityExperienceReplay(buf)
    buf.use(per)
    assert isinstance(buf, ding_buffer) and isinstance(per, ding_per)
    assert isinstance(per, xding.PriorityExperienceReplay)
    buf.push({"x": 1})
    assert len(buf.sample(1)) == 1 and len(per.buffer_idx) == 1


@pytest.mark.skipif(importlib.util.find_spec("ding") is None, reason="DI-engine not installed")
def test_real_ding_isinstance_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DI-engine's dependencies warn about deprecated torch APIs on import
        package = xding.integrate()
    from ding.data.buffer.middleware import PriorityExperienceReplay as DingPER

    buf = xding.DequeBuffer(size=4)
    per = xding.PriorityExperienceReplay(buf)
    assert isinstance(buf, package.Buffer) and isinstance(per, DingPER)
