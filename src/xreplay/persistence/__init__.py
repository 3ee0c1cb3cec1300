"""Crash-safe, versioned checkpoints of buffers: :func:`save`, :func:`load`, :func:`verify`.

A checkpoint is a directory of raw array files (memory-mappable) plus a
``metadata.json`` that is replaced atomically, so a save either completes or
leaves the previous checkpoint as it was; see :mod:`xreplay.persistence.format`
for the layout and :mod:`xreplay.persistence.kinds` for the protocol a buffer
implements to be saved.

Example:
    >>> import tempfile, torch
    >>> from xreplay import EpisodeBuffer, Field, Scheme
    >>> buf = EpisodeBuffer(Scheme({"r": Field((1,))}), capacity=4, max_seq_length=2, seed=0)
    >>> _ = buf.add({"r": torch.ones(3, 2, 1)})
    >>> path = tempfile.mkdtemp() + "/ckpt"
    >>> save(buf, path).generation
    1
    >>> len(load(path)), len(load(path, mmap=True))
    (3, 3)
"""

from xreplay.persistence import episode_buffer as _episode_buffer  # noqa: F401 - registers its kind
from xreplay.persistence import transition_buffer as _transition_buffer  # noqa: F401 - registers its kind
from xreplay.persistence.checkpoint import MAX_DELTAS, SaveReport, load, save, verify
from xreplay.persistence.format import FORMAT_VERSION
from xreplay.persistence.kinds import CheckpointAdapter, register_kind
from xreplay.persistence.memmap import flush, open_storage

__all__ = [
    "FORMAT_VERSION",
    "MAX_DELTAS",
    "CheckpointAdapter",
    "SaveReport",
    "flush",
    "load",
    "open_storage",
    "register_kind",
    "save",
    "verify",
]
