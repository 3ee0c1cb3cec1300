"""DI-engine's buffer middleware (``ding.data.buffer.middleware``), each also in its own submodule."""

from xreplay.compat.ding.middleware.clone_object import clone_object
from xreplay.compat.ding.middleware.group_sample import group_sample
from xreplay.compat.ding.middleware.padding import padding
from xreplay.compat.ding.middleware.priority import PriorityExperienceReplay
from xreplay.compat.ding.middleware.sample_range_view import sample_range_view
from xreplay.compat.ding.middleware.staleness_check import staleness_check
from xreplay.compat.ding.middleware.use_time_check import use_time_check

__all__ = [
    "PriorityExperienceReplay",
    "clone_object",
    "group_sample",
    "padding",
    "sample_range_view",
    "staleness_check",
    "use_time_check",
]
