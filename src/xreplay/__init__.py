"""xreplay: fast, correct experience replay for single- and multi-agent RL."""

from xreplay.buffers import EpisodeBuffer, EpisodeSample, EpisodeWriter
from xreplay.errors import (
    CapacityError,
    FieldShapeError,
    FieldValueError,
    IndexOutOfRangeError,
    InsufficientDataError,
    SchemeError,
    UnknownFieldError,
    XReplayError,
)
from xreplay.samplers import UniformSampler
from xreplay.scheme import AUTO, Field, Scheme
from xreplay.storage import TensorStorage
from xreplay.transforms import OneHot
from xreplay.writers import RingWriter

__version__ = "0.1.0"

__all__ = [
    "AUTO",
    "CapacityError",
    "EpisodeBuffer",
    "EpisodeSample",
    "EpisodeWriter",
    "Field",
    "FieldShapeError",
    "FieldValueError",
    "IndexOutOfRangeError",
    "InsufficientDataError",
    "OneHot",
    "RingWriter",
    "Scheme",
    "SchemeError",
    "TensorStorage",
    "UniformSampler",
    "UnknownFieldError",
    "XReplayError",
    "__version__",
]
