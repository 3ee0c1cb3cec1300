"""Hindsight experience replay: goals relabelled at sample time over stored episodes.

:class:`HindsightSampler` draws transitions uniformly from the episodes of an
:class:`~xreplay.buffers.EpisodeBuffer` and, for a ``relabel_ratio`` share of them, replaces the
desired goal with a goal the episode achieved (``future``: at a later step, ``final``: at its
end, ``episode``: at any step) and recomputes the reward with the environment's
``compute_reward(achieved_goal, desired_goal, info)``. Nothing is copied into storage: a goal is
one more gather. Every draw comes from the buffer's generator.

Episodes are stored with gymnasium's goal-conditioned dict observations as fields
``obs/observation``, ``obs/achieved_goal`` and ``obs/desired_goal`` (see :func:`goal_scheme`),
one step per transition plus a last step that holds the observation after the last action (as
:meth:`EpisodeWriter.end` with a final step writes it, and
:func:`xreplay.datasets.from_minari` with ``kind="episodes"`` reads it): an episode of length
``L`` holds ``L - 1`` transitions, and transition ``t``'s next observation is step ``t + 1``.

Build the buffer with ``row_order="step"`` (``EpisodeBuffer(scheme, capacity, max_seq_length,
row_order="step")``): each step's fields then lie together in storage, and a sampled transition,
next observation included, is one range of bytes, about half the time of the default rows, whose
fields of one transition lie on eight or nine cache lines. Any buffer works; the batches are the same.
"""

from xreplay.her.sampler import STRATEGIES, GoalFields, HindsightSample, HindsightSampler, goal_scheme

__all__ = ["STRATEGIES", "GoalFields", "HindsightSample", "HindsightSampler", "goal_scheme"]
