"""Samplers decide which stored slots come out."""

from xreplay.samplers.uniform import UniformSampler

__all__ = ["UniformSampler"]
