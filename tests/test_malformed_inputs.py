"""Property: a malformed write or update, on any buffer kind, is refused with a typed error naming its
culprit and leaves the buffer's full state bit-identical; an input that is accepted is stored exactly.

The calls come from :mod:`tests.malformed` (corrupted field values, unknown or missing keys, bad sizes,
indices, lengths, priorities, metas), here drawn by Hypothesis; ``benchmarks/fuzz_malformed.py`` measures
the same catalogue over 2,000 seeded calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.malformed import KINDS, draw_call, run_call


class HypothesisChooser:
    """Draws every choice of a malformed call from Hypothesis (so failures shrink to the simplest call)."""

    def __init__(self, data: st.DataObject):
        self.data = data

    def choice(self, options: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(list(options)))


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_malformed_calls_are_refused_typed_naming_the_culprit_and_change_nothing(kind, data):
    buffer, call = draw_call(kind, HypothesisChooser(data))
    outcome = run_call(buffer, call)
    if not outcome.refused:
        assert call.check_accepted is not None, f"{call.description} was accepted"
        assert outcome.stored_right, f"{call.description} was accepted but stored other values"
        return
    assert outcome.typed, f"{call.description}: untyped {outcome.error}"
    assert outcome.names_culprit, f"{call.description}: the message names none of {call.names}: {outcome.error}"
    assert outcome.state_unchanged, f"{call.description}: refused ({outcome.error}) but the state changed"
