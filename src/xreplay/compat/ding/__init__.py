"""DI-engine's buffer API as a drop-in: replace ``ding.data.buffer[.*]`` imports by this module.

``Buffer``, ``apply_middleware``, ``BufferedData``, ``DequeBuffer``,
``DequeBufferWrapper`` and the middleware ``clone_object``,
``use_time_check``, ``staleness_check``, ``PriorityExperienceReplay``,
``padding``, ``group_sample`` and ``sample_range_view`` keep DI-engine
0.5.3's signatures, argument passing (middleware see arguments exactly as
written), results, exception classes and internals (``storage``,
``indices``, ``meta_index``, ``_middleware``, ``buffer_idx``). Random draws go
through Python's global ``random`` (plain, group, window, padding draws) and
numpy's global RNG (prioritized strata) with the same calls as DI-engine, so
a seeded run samples the same records.

Underneath: xreplay's ``ObjectStorage`` (O(1) positions and index lookups,
so ``sample(32)`` does not walk a deque; FIFO order from a ``RingWriter``),
the ``GroupedSampler`` (O(window) grouped sampling), the typed middleware
pipeline (:mod:`xreplay.compat.ding.dispatch` gives it DI-engine's calling
convention), the ``PrioritizedSampler`` and its ``PriorityTree`` (the same
as every prioritized xreplay buffer; :mod:`xreplay.compat.ding.priorities`
reproduces DI-engine's float results on it, so prioritized draws and
importance weights are bit-identical) and the ``MaxTimesSampled``/``MaxAge``
removers (in DI-engine's terms ``MaxUse``/``Staleness``,
:mod:`xreplay.compat.ding.removers`). Every call holds the buffer's
re-entrant lock, so collector and learner threads may share a buffer.

Differences from DI-engine 0.5.3 (upstream defects fixed, each tested in
``tests/compat/ding/test_defects.py``):

* D1 ``delete`` rebuilt the index map truncated to as many entries as indices
  were passed, so later ``update``/``get_by_index`` missed or hit the wrong
  record. Every remaining record stays indexed.
* D2 ``delete`` left ``meta_index`` stale (deleted groups could be drawn).
  Deleted positions are dropped from ``meta_index`` and the group index.
* D3 ``use_time_check`` with ``PriorityExperienceReplay`` crashed every
  sample (a list passed to PER's delete). PER's delete takes one index or
  several and ignores unknown ones.
* D4 PER's slot pivot kept cycling after deletes, so a new record could take
  the slot of a live one. A record's slot is its storage slot.
* D5 Grouping where some records lack the key raised ``KeyError`` when the
  ``None`` group was drawn. A missing key is the group ``None`` throughout.
* D6 PER's ``state_dict`` raised ``AttributeError`` and delete with
  ``IS_weight=False`` too. Both work.
* D7 (kept by default, for sample parity) non-sliced group windows never
  start at the last full window; ``DequeBuffer(..., full_last_window=True)``
  fixes it.
* Bad input changes nothing (DI-engine replaced a record's meta, popped the
  priority out of pushed data or drew from numpy's generator before it
  raised): PER's ``update`` checks the meta (a dict with a ``'priority'``;
  ``'priority_idx'``, when given, the record's slot) and the priority (a
  finite real number >= 0, text refused) before the record changes, and a
  new meta without ``'priority_idx'`` gets the record's slot (DI-engine raised
  ``KeyError`` and every later sample failed); ``push`` checks the priority
  before popping it from the data; ``sample`` checks its arguments before
  drawing; ``update_priorities`` checks lengths and values first. Priorities
  whose ``priority ** alpha`` could overflow the sum over all slots are
  refused (the sum became infinite and every sample raised
  ``ZeroDivisionError``); zero priorities stay out of the importance-weight
  minimum (DI-engine divided by zero). A meta must be a dict (or None) on
  ``push`` and ``update``. Every refusal is a typed ``XReplayError`` that also
  derives from DI-engine's class for it (``TypeError``, ``KeyError``,
  ``AssertionError``, ``ValueError``, ``IndexError``).

Other decisions: index strings are 32 lowercase hex characters (a random
per-buffer tag + the record's slot handle, see
:mod:`xreplay.compat.ding.indices`) instead of ``uuid1``; a stored record
keeps its index as a compact integer and spells the string out when
``index`` is read, and lookups parse the string instead of using a dict
(about 184 bytes per stored record, half of DI-engine's 373); PER's
``buffer_idx`` is a read-only mapping view of the records entered in the
trees instead of a dict; ``use_time_check``
deletes each worn-out record once even when it occurs twice in a sample;
group membership is the meta value at push/update time (in-place edits of a
stored meta's group key are not seen); NaN, infinite or negative priorities
raise ``PriorityError`` (a ``ValueError``) naming the record; ``save_data``
writes an xreplay checkpoint directory (kind ``ding.deque_buffer``, not
hickle) and ``load_data`` requires the same capacity; a view shares deletions
with its buffer; ``BufferedData`` has slots (no instance ``__dict__``);
``priority_IS`` tensors of one sample are views of one float32 storage.
``PriorityExperienceReplay.update_priorities(indices, priorities)`` updates a
batch of priorities in one vectorized step.

When DI-engine is imported, xreplay buffers register as DI-engine
``Buffer``s and PER objects are instances of DI-engine's PER class, so
DI-engine's own ``data_pusher``/``OffPolicyLearner`` accept them (see
:mod:`xreplay.compat.ding.integration`).
"""

from xreplay.compat.ding import checkpoint as _checkpoint  # noqa: F401 - registers the checkpoint kind
from xreplay.compat.ding.base import Buffer, apply_middleware
from xreplay.compat.ding.data import BufferedData, fastcopy
from xreplay.compat.ding.deque_buffer import DequeBuffer
from xreplay.compat.ding.integration import integrate
from xreplay.compat.ding.middleware import (
    PriorityExperienceReplay,
    clone_object,
    group_sample,
    padding,
    sample_range_view,
    staleness_check,
    use_time_check,
)
from xreplay.compat.ding.wrapper import DequeBufferWrapper

__all__ = [
    "Buffer",
    "BufferedData",
    "DequeBuffer",
    "DequeBufferWrapper",
    "PriorityExperienceReplay",
    "apply_middleware",
    "clone_object",
    "fastcopy",
    "group_sample",
    "integrate",
    "padding",
    "sample_range_view",
    "staleness_check",
    "use_time_check",
]
