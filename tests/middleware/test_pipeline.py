import pytest

from xreplay.middleware import hook_for, run_pipeline


class Tag:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_push(self, chain, *args, **kwargs):
        self.log.append(self.name)
        return chain(*args, **kwargs)


def test_typed_and_string_middleware_compose_in_order():
    log = []

    def legacy(action, chain, *args, **kwargs):
        log.append(("legacy", action, args, kwargs))
        return chain(*args, **kwargs)

    out = run_pipeline([Tag("a", log), legacy, Tag("b", log)], "push", lambda *a, **k: (a, k), (1,), {"m": 2})
    assert out == ((1,), {"m": 2}) and log == ["a", ("legacy", "push", (1,), {"m": 2}), "b"]


def test_typed_middleware_without_hook_is_skipped():
    log = []
    assert run_pipeline([Tag("a", log)], "sample", lambda n: n * 2, (3,), {}) == 6 and log == []
    assert hook_for(Tag("a", log), "sample") is None


def test_callable_typed_middleware_is_called_only_through_its_hooks():
    class CallableTag(Tag):
        def __call__(self, action, chain, *args, **kwargs):
            raise AssertionError("a typed middleware is never called as a string-dispatched one")

    log = []
    assert run_pipeline([CallableTag("a", log)], "sample", lambda n: n * 2, (3,), {}) == 6 and log == []
    assert run_pipeline([CallableTag("a", log)], "push", lambda n: n, (3,), {}) == 3 and log == ["a"]


def test_non_callable_entry_is_rejected():
    with pytest.raises(TypeError, match="on_push"):
        hook_for(42, "push")
