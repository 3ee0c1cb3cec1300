"""PyMARL's episode storage as a drop-in: change ``components.episode_buffer`` to this module.

pymarl2's ``PrioritizedReplayBuffer`` is here too (``sample(batch_size, t)``
returns ``(batch, idxes, weights)``; ``update_priorities(idxes, priorities)``),
with its upstream defects fixed: see :mod:`xreplay.compat.pymarl.prioritized`.

``EpisodeBatch``, ``ReplayBuffer``, ``Transform`` and ``OneHot`` keep PyMARL's
signatures, attributes (``scheme``, ``groups``, ``batch_size``,
``max_seq_length``, ``preprocess``, ``device``, ``data.transition_data``,
``data.episode_data``, ``buffer_size``, ``buffer_index``,
``episodes_in_buffer``), values, dtypes, shapes, view/copy aliasing and
exception classes, and ``ReplayBuffer.sample`` draws through
``numpy.random.choice`` exactly as PyMARL does, so a seeded run samples the
same episodes.

Underneath, each batch is xreplay's packed row storage: every field of an
episode lives in one row, so inserting a batch with the same layout is one
row copy and sampling is one gather of whole rows. Sampled fields are views
into the gathered rows (equal values, dtypes and shapes; they are not
contiguous tensors).

Upstream defects that are fixed rather than reproduced:

* ``extend(scheme, groups=None)`` always raised ``TypeError``; it now adds the
  new fields, zero-filled.
* ``insert_episode_batch`` recursed once per wrap (and repeatedly for batches
  larger than the buffer); slots are now planned at once. The stored rows,
  ``buffer_index`` and ``episodes_in_buffer`` are the same.
* Indexing passed a list as a multi-dimensional index (a deprecation warning
  in torch); a tuple is passed now, with identical results.
* Looking up an unknown key raised ``ValueError()`` with no message; the
  message now names the key and the known fields.
* ``update`` wrote keys one by one, so a bad value left earlier keys (and
  ``filled``) written; every value is now converted and checked first, and a
  rejected update changes nothing. Exception classes are unchanged.
* ``sample`` failed with a bare ``assert``; it still raises
  ``AssertionError``, with a message naming both numbers.
* ``torch.tensor(tensor)`` warned on every insert; tensors are copied with
  ``detach().to(copy=True)``, which gives the same values.
* EPyMARL and pymarl2 runners feed gymnasium environments, whose values are
  numpy scalars: ``[(terminated != limit,)]`` holds a ``numpy.bool_``, which
  ``torch.tensor`` refuses for an integer field (``TypeError``, so such a run
  stopped at its first step). Where oxwhirl's conversion raises on a list and
  EPyMARL's ``torch.tensor(np.array(v))`` succeeds, EPyMARL's result is stored
  (spec §12); everywhere else oxwhirl's result is kept.
* Every refusal is a typed :class:`~xreplay.errors.XReplayError` that also
  derives from the class upstream raised there (``TypeError``,
  ``ValueError``, ``RuntimeError``, ``IndexError``, ``KeyError``), and its
  message names the field or index (upstream passed torch's wording on).
* Values that upstream changed silently are refused: complex numbers into a
  real field (the imaginary part was dropped with a warning), NaN or infinity
  into an integer field (garbage integers), integers out of the field's range
  reached through EPyMARL's ``np.array`` route. The documented casts stay:
  float to integer truncates, an out-of-range ndarray wraps.
* ``sample``, ``sample_latest`` and ``insert_episode_batch`` check their
  arguments (an int batch size, an ``EpisodeBatch``) before drawing or
  writing; pymarl2's ``sample_latest`` fell back to ``self.sample``, which on
  its ``PrioritizedReplayBuffer`` lacks ``t`` (``TypeError``); it samples
  uniformly.

Compact storage (opt-in: ``ReplayBuffer(..., compact=True)`` or
``set_compact_default(True)``) stores integer fields in the narrowest dtype
that holds every value written so far (widening losslessly when a larger
value arrives) and stores one-hot preprocess outputs as a presence bit per
step, recomputed from the source at read time. Every read returns the
declared dtypes and the same values as the default layout. With compact
storage, reading a field of the buffer (``buffer["obs"]``,
``buffer.data.transition_data[k]``) or indexing it returns a decoded copy
rather than a view of storage: write through ``update``.
"""

from xreplay.compat.pymarl import checkpoint as _checkpoint  # noqa: E402, F401 - registers the checkpoint kinds
from xreplay.compat.pymarl.episode_batch import EpisodeBatch, set_compact_default
from xreplay.compat.pymarl.prioritized import PrioritizedReplayBuffer
from xreplay.compat.pymarl.replay_buffer import ReplayBuffer
from xreplay.compat.pymarl.transforms import OneHot, Transform

__all__ = [
    "EpisodeBatch",
    "OneHot",
    "PrioritizedReplayBuffer",
    "ReplayBuffer",
    "Transform",
    "set_compact_default",
]
