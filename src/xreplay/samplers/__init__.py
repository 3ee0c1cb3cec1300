"""Samplers decide which stored slots come out; every one implements the protocol of :mod:`xreplay.samplers.base`."""

from xreplay.samplers.base import Draw, Sampler
from xreplay.samplers.choice import make_sampler
from xreplay.samplers.prioritized import PrioritizedSampler
from xreplay.samplers.prioritized_sequences import PrioritizedSequenceSampler
from xreplay.samplers.priority_tree import PriorityTree
from xreplay.samplers.schedules import ConstantSchedule, LinearSchedule
from xreplay.samplers.sequences import SequenceSampler, sequence_priorities
from xreplay.samplers.uniform import UniformSampler

__all__ = [
    "ConstantSchedule",
    "Draw",
    "LinearSchedule",
    "PrioritizedSampler",
    "PrioritizedSequenceSampler",
    "PriorityTree",
    "Sampler",
    "SequenceSampler",
    "UniformSampler",
    "make_sampler",
    "sequence_priorities",
]
