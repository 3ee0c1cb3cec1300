import pytest

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


# The public surface, spelled out: adding or dropping a name is a decision this test makes visible.
ALL_TOP_LEVEL = {
    # buffers, their samples and writers
    "EpisodeBuffer",
    "EpisodeSample",
    "EpisodeWriter",
    "NStepReturns",
    "TransitionBuffer",
    "TransitionSample",
    # components: storage, writer, samplers, schedules, rate limiters, removers, mixing
    "MemmapStorage",
    "ObjectStorage",
    "TensorStorage",
    "RingWriter",
    "UniformSampler",
    "PrioritizedSampler",
    "PrioritizedSequenceSampler",
    "PriorityTree",
    "SequenceSampler",
    "sequence_priorities",
    "ConstantSchedule",
    "LinearSchedule",
    "MinSize",
    "Queue",
    "RateLimiter",
    "SampleToInsertRatio",
    "MaxAge",
    "MaxTimesSampled",
    "MixedSampleError",
    "sample_mixed",
    # schemes
    "AUTO",
    "Field",
    "OneHot",
    "Scheme",
    # checkpoints
    "load",
    "save",
    "__version__",
    # errors
    "ArgumentAssertionError",
    "ArgumentError",
    "BufferClosedError",
    "CapacityError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointFileMissingError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "CheckpointPathError",
    "CheckpointSchemaError",
    "CheckpointTooLargeError",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetFieldMissingError",
    "DatasetMismatchError",
    "DeviceError",
    "FieldShapeError",
    "FieldShapeIndexError",
    "FieldShapeRuntimeError",
    "FieldTypeError",
    "FieldValueError",
    "FieldValueRuntimeError",
    "IndexOutOfRangeError",
    "InsufficientDataAssertionError",
    "InsufficientDataError",
    "InvalidIndexError",
    "NotACheckpointError",
    "PriorityError",
    "RateLimiterTimeout",
    "SchemeError",
    "ShardError",
    "ShardFactoryError",
    "ShardUnavailableError",
    "SharedMemoryError",
    "StaleSegmentError",
    "UnknownFieldError",
    "UnknownFieldValueError",
    "UnknownIndexError",
    "UntrustedCheckpointError",
    "XReplayError",
}
ALL_PYMARL = {"EpisodeBatch", "OneHot", "PrioritizedReplayBuffer", "ReplayBuffer", "Transform", "set_compact_default"}
ALL_DING = {
    "Buffer",
    "BufferedData",
    "DequeBuffer",
    "DequeBufferWrapper",
    "PriorityExperienceReplay",
    "apply_middleware",
    "clone_object",
    "fastcopy",
    "group_sample",
    "integrate",
    "padding",
    "sample_range_view",
    "staleness_check",
    "use_time_check",
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [(xreplay, ALL_TOP_LEVEL), (xreplay.compat.pymarl, ALL_PYMARL), (xreplay.compat.ding, ALL_DING)],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_all_is_exactly_the_public_surface_and_every_name_resolves(module, expected):
    names = module.__all__
    assert len(names) == len(set(names)), f"{module.__name__}.__all__ lists a name twice"
    assert set(names) - expected == set(), f"{module.__name__}.__all__ gained names"
    assert expected - set(names) == set(), f"{module.__name__}.__all__ lost names"
    namespace: dict = {}
    exec(f"from {module.__name__} import *", namespace)  # a star import sees exactly __all__
    assert {name for name in namespace if name != "__builtins__"} == expected
    for name in names:
        assert getattr(module, name) is namespace[name]


def test_dings_own_names_stay_out_of_the_core():
    for name in ("MaxUse", "Staleness", "group_by_env", "StringDispatch"):
        assert not hasattr(xreplay, name), name
    from xreplay.compat.ding.groups import group_by_env
    from xreplay.compat.ding.removers import MaxUse, Staleness

    assert MaxUse.__doc__ and Staleness.__doc__ and group_by_env.__doc__
