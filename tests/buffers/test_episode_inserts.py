"""The fast insert path of EpisodeBuffer.add against its general path: same results, same refusals."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay import EpisodeBuffer
from xreplay.errors import XReplayError

from .test_episodes import T, episodes, marine_scheme

CAPACITY = 5

# Ways to spoil a valid batch: (name, edit of the episodes dict).
SPOILERS = {
    "negative_action": lambda e: e["actions"].view(-1)[:1].fill_(-1),
    "action_past_classes": lambda e: e["actions"].view(-1)[-1:].fill_(4),
    "action_past_uint8": lambda e: e["actions"].view(-1)[:1].fill_(300),
    "avail_two": lambda e: e["avail_actions"].view(-1)[:1].fill_(2),
    "avail_negative": lambda e: e["avail_actions"].view(-1)[-1:].fill_(-1),
    "terminated_two": lambda e: e["terminated"].view(-1)[:1].fill_(2),
    "actions_int32": lambda e: e.update(actions=e["actions"].int()),
    "state_float64": lambda e: e.update(state=e["state"].double()),
    "state_needs_grad": lambda e: e.update(state=e["state"].requires_grad_()),
    "obs_transposed": lambda e: e.update(obs=e["obs"].transpose(0, 1).contiguous().transpose(0, 1)),
    "obs_wrong_shape": lambda e: e.update(obs=e["obs"][..., :2]),
    "obs_as_numpy": lambda e: e.update(obs=e["obs"].numpy()),
    "extra_field": lambda e: e.update(extra=torch.zeros(1)),
    "missing_field": lambda e: e.pop("reward"),
    "seed_as_list": lambda e: e.update(seed=e["seed"].tolist()),
}

LENGTHS = {
    "none": lambda n, t, rng: None,
    "numpy": lambda n, t, rng: rng.integers(0, t + 1, n),
    "tensor": lambda n, t, rng: torch.from_numpy(rng.integers(0, t + 1, n)).int(),
    "list": lambda n, t, rng: rng.integers(0, t + 1, n).tolist(),
    "negative": lambda n, t, rng: np.full(n, -1),
    "past_t": lambda n, t, rng: np.full(n, t + 1),
    "one_too_many": lambda n, t, rng: rng.integers(0, t + 1, n + 1),
    "floats": lambda n, t, rng: np.full(n, float(t)),
    "bools": lambda n, t, rng: np.ones(n, dtype=bool),
    "column": lambda n, t, rng: torch.full((n, 1), t),
}


def outcome(buffer: EpisodeBuffer, batch: dict, lengths) -> tuple:
    """Return what a write did: its slots, or the type and message of its refusal."""
    try:
        return ("ok", buffer.add(batch, lengths=lengths).tolist())
    except XReplayError as exc:
        return (type(exc), str(exc))


def state(buffer: EpisodeBuffer) -> tuple:
    """Return everything a write may change."""
    return (
        buffer.storage.rows.clone(),
        buffer.episode_lengths().copy(),
        buffer.writer.state_dict(),
        len(buffer),
        buffer.storage.layout.columns,
    )


def same_state(a: EpisodeBuffer, b: EpisodeBuffer) -> None:
    sa, sb = state(a), state(b)
    assert torch.equal(sa[0], sb[0])
    assert np.array_equal(sa[1], sb[1])
    assert sa[2:] == sb[2:]


def buffers(compact: bool, row_order: str = "field") -> tuple[EpisodeBuffer, EpisodeBuffer]:
    """Return a buffer using the fast path and one forced onto the general path (rows in ``row_order``)."""
    fast = EpisodeBuffer(marine_scheme(compact), CAPACITY, T, seed=0, row_order=row_order)
    slow = EpisodeBuffer(marine_scheme(compact), CAPACITY, T, seed=0, row_order=row_order)
    slow._inserts.prepare = lambda buffer, episodes, lengths: None
    return fast, slow


@pytest.mark.parametrize("compact", [False, True], ids=["declared_dtypes", "compact"])
@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(
        st.tuples(
            st.integers(0, 7),  # episodes (more than the capacity: the ring keeps the last ones)
            st.integers(1, T + 1),  # steps (T + 1 is too many)
            st.sampled_from(sorted(LENGTHS)),
            st.sampled_from([None, *sorted(SPOILERS)]),
            st.integers(0, 2**16),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fast_and_general_paths_write_and_refuse_alike(compact, row_order, writes):
    fast, slow = buffers(compact, row_order)
    for n, t, lengths_kind, spoiler, seed in writes:
        results = []
        for buffer in (fast, slow):
            batch = episodes(n, t, seed)
            if spoiler is not None and (n or spoiler in ("extra_field", "missing_field")):
                SPOILERS[spoiler](batch)
            results.append(outcome(buffer, batch, LENGTHS[lengths_kind](n, t, np.random.default_rng(seed))))
        assert results[0] == results[1]
        same_state(fast, slow)


@pytest.mark.parametrize("compact", [False, True], ids=["declared_dtypes", "compact"])
@pytest.mark.parametrize("lengths_kind", ["none", "numpy", "tensor"])
def test_runner_batches_take_the_fast_path(compact, lengths_kind, row_order):
    fast, slow = buffers(compact, row_order)
    taken = []
    prepare = fast._inserts.prepare
    fast._inserts.prepare = lambda b, e, lengths: taken.append(prepare(b, e, lengths)) or taken[-1]
    for seed, (n, t) in enumerate([(1, T), (3, T - 2), (4, T), (2, 1)]):
        lengths = LENGTHS[lengths_kind](n, t, np.random.default_rng(seed))
        assert outcome(fast, episodes(n, t, seed), lengths) == outcome(slow, episodes(n, t, seed), lengths)
    assert all(slots is not None for slots in taken) and len(taken) == 4
    same_state(fast, slow)
    assert all(torch.equal(fast.get(range(4))[k], slow.get(range(4))[k]) for k in fast.get([0]))


def test_shorter_episodes_mark_derived_steps_absent_past_their_lengths(row_order):
    fast, _slow = buffers(True, row_order)
    data = episodes(2, T, seed=3)
    fast.add(data, lengths=np.array([2, T]))
    onehot = fast.get([0, 1])["actions_onehot"]
    assert torch.count_nonzero(onehot[0, 2:]) == 0 and torch.count_nonzero(onehot[1]) == T * 2
    assert torch.equal(fast.get([0])["obs"], data["obs"][:1])  # other fields keep their steps past the length


def test_a_dropped_buffer_is_freed_at_once():
    import gc
    import weakref

    gc.disable()
    try:
        buffer = EpisodeBuffer(marine_scheme(True), CAPACITY, T)
        buffer.add(episodes(2, T))
        alive = weakref.ref(buffer)
        del buffer
        assert alive() is None  # no reference cycle keeps the storage until a garbage collection
    finally:
        gc.enable()


@pytest.mark.parametrize("layout", ["episode_major", "step_major"])
def test_absent_marks_past_each_length_whatever_the_column_strides(layout):
    from xreplay.buffers.episode_inserts import FastInserts

    steps, agents = 6, 3
    lengths = np.array([0, 2, 6, 5], dtype=np.int32)
    expected = np.zeros((4, steps, agents, 1), dtype=np.uint8)
    expected[np.arange(steps)[None, :] >= lengths[:, None]] = 9
    if layout == "episode_major":
        column = np.zeros((4, steps, agents, 1), dtype=np.uint8)
    else:  # steps outermost in memory: the column's episodes do not flatten to one run each
        column = np.zeros((steps, 4, agents, 1), dtype=np.uint8).transpose(1, 0, 2, 3)
    FastInserts(steps)._mark_absent(column, lengths, steps, 9)
    assert np.array_equal(column, expected)
