"""xreplay: fast, correct experience replay for single- and multi-agent RL.

Native buffers compose a storage, a writer and a sampler; the PyMARL and
DI-engine APIs live in :mod:`xreplay.compat.pymarl` and
:mod:`xreplay.compat.ding`; checkpoints are :func:`xreplay.save` and
:func:`xreplay.load` (see :mod:`xreplay.persistence`).
"""

from xreplay.buffers import (
    EpisodeBuffer,
    EpisodeSample,
    EpisodeWriter,
    NStepReturns,
    TransitionBuffer,
    TransitionSample,
)
from xreplay.errors import (
    ArgumentAssertionError,
    ArgumentError,
    CapacityError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointFileMissingError,
    CheckpointMismatchError,
    CheckpointVersionError,
    CheckpointWriteError,
    DeviceError,
    FieldShapeError,
    FieldShapeIndexError,
    FieldShapeRuntimeError,
    FieldTypeError,
    FieldValueError,
    FieldValueRuntimeError,
    IndexOutOfRangeError,
    InsufficientDataAssertionError,
    InsufficientDataError,
    InvalidIndexError,
    NotACheckpointError,
    PriorityError,
    RateLimiterTimeout,
    SchemeError,
    ShardError,
    ShardFactoryError,
    ShardUnavailableError,
    UnknownFieldError,
    UnknownFieldValueError,
    UnknownIndexError,
    XReplayError,
)
from xreplay.mixing import MixedSampleError, group_by_env, sample_mixed
from xreplay.persistence import load, save
from xreplay.rate_limiters import MinSize, Queue, RateLimiter, SampleToInsertRatio
from xreplay.removers import MaxUse, Staleness
from xreplay.samplers import (
    ConstantSchedule,
    LinearSchedule,
    PrioritizedSampler,
    PrioritizedSequenceSampler,
    PriorityTree,
    SequenceSampler,
    UniformSampler,
    sequence_priorities,
)
from xreplay.scheme import AUTO, Field, Scheme
from xreplay.storage import MemmapStorage, TensorStorage
from xreplay.storage.objects import ObjectStorage
from xreplay.transforms import OneHot
from xreplay.version import __version__  # noqa: E402
from xreplay.writers import RingWriter

__all__ = [
    "AUTO",
    "ArgumentAssertionError",
    "ArgumentError",
    "CapacityError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointFileMissingError",
    "CheckpointMismatchError",
    "CheckpointVersionError",
    "CheckpointWriteError",
    "ConstantSchedule",
    "DeviceError",
    "EpisodeBuffer",
    "EpisodeSample",
    "EpisodeWriter",
    "Field",
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
    "LinearSchedule",
    "MaxUse",
    "MemmapStorage",
    "MinSize",
    "MixedSampleError",
    "NStepReturns",
    "NotACheckpointError",
    "ObjectStorage",
    "OneHot",
    "PrioritizedSampler",
    "PrioritizedSequenceSampler",
    "PriorityError",
    "PriorityTree",
    "Queue",
    "RateLimiter",
    "RateLimiterTimeout",
    "RingWriter",
    "SampleToInsertRatio",
    "Scheme",
    "SchemeError",
    "ShardError",
    "ShardFactoryError",
    "ShardUnavailableError",
    "SequenceSampler",
    "Staleness",
    "TensorStorage",
    "TransitionBuffer",
    "TransitionSample",
    "UniformSampler",
    "UnknownFieldError",
    "UnknownFieldValueError",
    "UnknownIndexError",
    "XReplayError",
    "__version__",
    "group_by_env",
    "load",
    "sample_mixed",
    "save",
    "sequence_priorities",
]
