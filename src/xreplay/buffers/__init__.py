"""Buffers compose a storage, a writer and a sampler behind a short API."""

from xreplay.buffers.episode_writer import EpisodeWriter
from xreplay.buffers.episodes import EpisodeBuffer, EpisodeSample

__all__ = ["EpisodeBuffer", "EpisodeSample", "EpisodeWriter"]
