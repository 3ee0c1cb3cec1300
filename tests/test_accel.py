"""The numba accelerator's loader: each kernel module once; off with XREPLAY_NUMBA=0, a refused check or a failure."""

import sys
import types

import pytest

from xreplay import accel


@pytest.fixture
def fresh(monkeypatch):
    """An empty cache of loaded kernels (restored afterwards), numba not turned off."""
    monkeypatch.setattr(accel, "_LOADED", {})
    monkeypatch.delenv("XREPLAY_NUMBA", raising=False)


def _module(monkeypatch, name, body=None):
    module = types.ModuleType(name)
    if body is not None:
        exec(body, module.__dict__)  # noqa: S102 - a fixture module's own text
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_a_kernel_module_is_imported_and_checked_once(fresh, monkeypatch):
    module, calls = _module(monkeypatch, "xreplay_fake_kernels"), []
    check = lambda m: calls.append(m) or True  # noqa: E731
    assert accel.kernels("xreplay_fake_kernels", "numpy", check) is module
    assert accel.kernels("xreplay_fake_kernels", "numpy", check) is module and calls == [module]


def test_disabled_refused_or_missing_kernels_give_none(fresh, monkeypatch):
    _module(monkeypatch, "xreplay_fake_kernels")
    assert accel.kernels("xreplay_fake_kernels", "numpy", lambda m: False) is None
    assert accel.kernels("xreplay_no_such_module", "numpy") is None
    monkeypatch.setenv("XREPLAY_NUMBA", "0")
    _module(monkeypatch, "xreplay_other_kernels")
    assert accel.kernels("xreplay_other_kernels", "numpy") is None


def test_a_kernel_that_fails_to_compile_warns_and_is_not_used(fresh, monkeypatch):
    monkeypatch.delitem(sys.modules, "xreplay_broken_kernels", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Failing(), *sys.meta_path])
    with pytest.warns(RuntimeWarning, match="numba kernels xreplay_broken_kernels unavailable, torch runs"):
        assert accel.kernels("xreplay_broken_kernels", "torch") is None


class _Failing:
    """An import hook whose module raises while it loads (as numba does when it cannot compile)."""

    def find_spec(self, name, path=None, target=None):
        if name != "xreplay_broken_kernels":
            return None
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError("cannot cache the compiled kernel")
