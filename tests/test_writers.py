import pytest
from hypothesis import given
from hypothesis import strategies as st

from xreplay.writers import RingWriter


def reference_ring(capacity: int, batches: list[int]) -> tuple[list[int | None], int, int]:
    """Write items one by one into a list ring; return the item id held by each slot."""
    slots: list[int | None] = [None] * capacity
    cursor, size, item = 0, 0, 0
    for n in batches:
        for _ in range(n):
            slots[cursor] = item
            cursor = (cursor + 1) % capacity
            size = min(capacity, size + 1)
            item += 1
    return slots, cursor, size


@given(st.integers(1, 9), st.lists(st.integers(0, 25), max_size=8))
def test_ring_writer_matches_item_by_item_reference(capacity, batches):
    writer = RingWriter(capacity)
    slots: list[int | None] = [None] * capacity
    first = 0
    for n in batches:
        plan = writer.reserve(n)
        for slot, item, count in plan.segments:
            for k in range(count):
                slots[slot + k] = first + item + k
        assert plan.slots().tolist() == [s for s, _, c in plan.segments for s in range(s, s + c)]
        first += n
    expected, cursor, size = reference_ring(capacity, batches)
    assert slots == expected
    assert (writer.cursor, writer.size) == (cursor, size)


@pytest.mark.parametrize(
    ("cursor_batches", "n", "segments"),
    [
        pytest.param([], 2, ((0, 0, 2),), id="fits"),
        pytest.param([2], 2, ((2, 0, 1), (0, 1, 1)), id="wraps_around_end"),
        pytest.param([], 7, ((1, 4, 2), (0, 6, 1)), id="batch_larger_than_ring"),
        pytest.param([], 0, (), id="empty_batch"),
    ],
)
def test_plan_segments(cursor_batches, n, segments):
    writer = RingWriter(3)
    for b in cursor_batches:
        writer.reserve(b)
    assert writer.plan(n).segments == segments


def test_state_dict_round_trip_and_capacity_check():
    writer = RingWriter(4)
    writer.reserve(6)
    other = RingWriter(4)
    other.load_state_dict(writer.state_dict())
    assert (other.cursor, other.size, other.writes) == (2, 4, 6)
    with pytest.raises(ValueError, match="capacity 4"):
        RingWriter(5).load_state_dict(writer.state_dict())
