"""Shared-memory buffers for worker processes: many writers, one learner, on one machine.

The learner creates a :class:`SharedTransitionBuffer` or a
:class:`SharedEpisodeBuffer`; its storage, reservation counter and slot
states live in one segment file in ``/dev/shm``. Worker processes get a
picklable writer handle (``buffer.writer()``) and add transitions or whole
episodes; the learner samples and updates priorities (its priority tree learns
of each item when the item is published, at the writer's initial priority or
the largest so far).

Guarantees:

* **No torn item.** A writer reserves slots (a short critical section under a
  robust process-shared mutex), copies outside it, then publishes; the learner
  keeps a sampled slot only if its state word was the same, published one
  before and after the copy.
* **Writers may die.** A writer killed mid-write leaves its slots unpublished;
  nothing waits on them, and the ring reuses them when it comes round. A lock
  whose holder died passes to the next writer.
* **Typed refusals.** A bad write raises the local buffers' errors
  (:class:`~xreplay.errors.UnknownFieldError`, :class:`~xreplay.errors.FieldShapeError`,
  :class:`~xreplay.errors.FieldValueError`, :class:`~xreplay.errors.PriorityError`)
  in the writer's process and reserves nothing; a closed handle or buffer raises
  :class:`~xreplay.errors.BufferClosedError`; a segment that does not fit fails
  with :class:`~xreplay.errors.CapacityError` before anything is created.
* **Clean up.** Closing the buffer, or the learner's exit, removes the segment;
  a segment left by a crashed learner is reported (:func:`stale_segments`, and
  :class:`~xreplay.errors.StaleSegmentError` for its name), never reused.
* **Checkpoints.** :meth:`SharedTransitionBuffer.save` writes the published
  items as a ``transition_buffer`` checkpoint (the existing format; a local
  :class:`~xreplay.buffers.TransitionBuffer` opens it too) and
  :meth:`SharedEpisodeBuffer.save` as a ``shared_episode_buffer`` one (an
  ``episode_buffer`` state plus the priorities); ``load`` opens either in a new
  shared buffer.
"""

from xreplay.shared import episode_checkpoint as _episode_checkpoint  # noqa: F401 - registers the checkpoint kind
from xreplay.shared.episodes import SharedEpisodeBuffer, SharedEpisodeSample, SharedEpisodeWriter
from xreplay.shared.segment import list_segments, remove_stale_segments, stale_segments
from xreplay.shared.transitions import SharedTransitionBuffer, SharedTransitionWriter

__all__ = [
    "SharedEpisodeBuffer",
    "SharedEpisodeSample",
    "SharedEpisodeWriter",
    "SharedTransitionBuffer",
    "SharedTransitionWriter",
    "list_segments",
    "remove_stale_segments",
    "stale_segments",
]
