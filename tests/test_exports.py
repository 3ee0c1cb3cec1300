import xreplay
import xreplay.compat.pymarl


def test_top_level_exports_are_curated_and_documented():
    assert sorted(xreplay.__all__) == sorted(set(xreplay.__all__))
    for name in xreplay.__all__:
        obj = getattr(xreplay, name)
        if callable(obj):
            assert obj.__doc__, name


def test_pymarl_compat_exports():
    assert set(xreplay.compat.pymarl.__all__) >= {"EpisodeBatch", "ReplayBuffer", "Transform", "OneHot"}
