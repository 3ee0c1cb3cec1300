"""Samplers decide which stored slots come out."""

from xreplay.samplers.prioritized import PrioritizedSample, PrioritizedSampler
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import ConstantSchedule, LinearSchedule
from xreplay.samplers.uniform import UniformSampler

__all__ = [
    "ConstantSchedule",
    "LinearSchedule",
    "PrioritizedSample",
    "PrioritizedSampler",
    "PriorityTree",
    "UniformSampler",
]
