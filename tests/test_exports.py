import xreplay
import xreplay.compat.ding
import xreplay.compat.pymarl

EXPECTED_TOP_LEVEL = {
    "EpisodeBuffer",
    "EpisodeWriter",
    "TransitionBuffer",
    "PrioritizedSampler",
    "SequenceSampler",
    "Scheme",
    "Field",
    "OneHot",
    "TensorStorage",
    "MemmapStorage",
    "ObjectStorage",
    "RingWriter",
    "UniformSampler",
    "sample_mixed",
    "XReplayError",
    "CheckpointError",
}


def test_top_level_exports_are_curated_and_documented():
    assert len(xreplay.__all__) == len(set(xreplay.__all__))
    assert EXPECTED_TOP_LEVEL <= set(xreplay.__all__)
    for name in xreplay.__all__:
        obj = getattr(xreplay, name)
        if callable(obj):
            assert obj.__doc__, name


def test_pymarl_compat_exports():
    assert set(xreplay.compat.pymarl.__all__) >= {
        "EpisodeBatch",
        "ReplayBuffer",
        "PrioritizedReplayBuffer",
        "Transform",
        "OneHot",
    }


def test_ding_compat_exports_every_legacy_name():
    legacy = {
        "Buffer",
        "apply_middleware",
        "BufferedData",
        "DequeBuffer",
        "DequeBufferWrapper",
        "clone_object",
        "use_time_check",
        "staleness_check",
        "PriorityExperienceReplay",
        "padding",
        "group_sample",
        "sample_range_view",
    }
    assert legacy <= set(xreplay.compat.ding.__all__)
