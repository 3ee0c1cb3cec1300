"""Buffers compose a storage, a writer and a sampler behind a short API."""

from xreplay.buffers.episode_writer import EpisodeWriter
from xreplay.buffers.episodes import EpisodeBuffer, EpisodeSample
from xreplay.buffers.n_step import NStepReturns
from xreplay.buffers.transitions import TransitionBuffer, TransitionSample

__all__ = ["EpisodeBuffer", "EpisodeSample", "EpisodeWriter", "NStepReturns", "TransitionBuffer", "TransitionSample"]
