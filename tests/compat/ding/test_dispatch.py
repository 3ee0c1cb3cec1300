from xreplay.compat.ding.dispatch import StringDispatch
from xreplay.middleware import hook_for, run_pipeline


class Tag(StringDispatch):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_push(self, chain, *args, **kwargs):
        self.log.append(self.name)
        return chain(*args, **kwargs)


def test_string_dispatch_passes_unknown_actions_through():
    assert Tag("a", [])("sample", lambda n: n + 1, 1) == 2


def test_string_dispatch_calls_its_hook():
    log = []
    assert Tag("a", log)("push", lambda n: n + 1, 1) == 2 and log == ["a"]


def test_string_dispatch_middleware_runs_through_the_typed_pipeline():
    log = []
    assert run_pipeline([Tag("a", log)], "sample", lambda n: n * 2, (3,), {}) == 6 and log == []
    assert hook_for(Tag("a", log), "sample") is None
    assert run_pipeline([Tag("a", log), Tag("b", log)], "push", lambda n: n, (3,), {}) == 3 and log == ["a", "b"]
