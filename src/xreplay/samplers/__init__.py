"""Samplers decide which stored slots come out."""

from xreplay.samplers.prioritized import PrioritizedSample, PrioritizedSampler
from xreplay.samplers.prioritized_sequences import PrioritizedSequenceSample, PrioritizedSequenceSampler
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import ConstantSchedule, LinearSchedule
from xreplay.samplers.sequences import SequenceSample, SequenceSampler, sequence_priorities
from xreplay.samplers.uniform import UniformSampler

__all__ = [
    "ConstantSchedule",
    "LinearSchedule",
    "PrioritizedSample",
    "PrioritizedSampler",
    "PrioritizedSequenceSample",
    "PrioritizedSequenceSampler",
    "PriorityTree",
    "SequenceSample",
    "SequenceSampler",
    "UniformSampler",
    "sequence_priorities",
]
