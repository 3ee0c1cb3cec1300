import xreplay.compat.ding as xding
import xreplay.compat.ding.middleware as xmw

DING_BUFFER_NAMES = {"Buffer", "apply_middleware", "BufferedData", "DequeBuffer", "DequeBufferWrapper"}
DING_MIDDLEWARE = {
    "clone_object",
    "use_time_check",
    "staleness_check",
    "PriorityExperienceReplay",
    "padding",
    "group_sample",
    "sample_range_view",
}


def test_all_names_exported_from_one_module():
    assert DING_BUFFER_NAMES | DING_MIDDLEWARE <= set(xding.__all__)
    assert set(xding.__all__) == DING_BUFFER_NAMES | DING_MIDDLEWARE | {"fastcopy", "integrate"}
    assert set(xmw.__all__) == DING_MIDDLEWARE
    for name in xding.__all__:
        assert getattr(xding, name).__doc__


def test_submodule_paths_like_ding():
    from xreplay.compat.ding.middleware.priority import PriorityExperienceReplay

    assert PriorityExperienceReplay is xding.PriorityExperienceReplay
    assert xding.DequeBuffer(size=2).use(xding.padding())._middleware[0].policy == "random"
