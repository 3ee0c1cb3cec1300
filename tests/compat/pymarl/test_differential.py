"""Differential stateful test: xreplay.compat.pymarl against the reference model, op by op.

Random sequences of ``update`` (ints, slices, lists, ndarrays, np.int64 time; valid and
invalid values and shapes), indexing, ``insert_episode_batch`` (wrap-around, batches larger
than the buffer, shorter/longer episodes) and seeded ``sample`` run on both models; after
every step the buffers and all episode batches must be identical (values, dtypes, shapes,
field order, buffer_index, episodes_in_buffer) and every call must raise the same
exception class or none. Runs once with default storage and once with ``compact=True``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pymarl_compare import (
    assert_same_batch,
    assert_same_buffer,
    assert_same_outcome,
    assert_same_result,
    rng_state_equal,
)
from pymarl_reference import RefEpisodeBatch, RefOneHot, RefReplayBuffer, parse

from xreplay.compat.pymarl import EpisodeBatch, OneHot, ReplayBuffer

T = 4
N_AGENTS = 2
N_ACTIONS = 3


def make_scheme():
    return {
        "state": {"vshape": 3},  # int vshape, default float32
        "obs": {"vshape": (2,), "group": "agents"},
        "actions": {"vshape": (1,), "group": "agents", "dtype": torch.long},
        "avail_actions": {"vshape": (N_ACTIONS,), "group": "agents", "dtype": torch.int32},
        "reward": {"vshape": (1,)},
        "terminated": {"vshape": (1,), "dtype": torch.uint8},
        "ep_id": {"vshape": (2,), "dtype": torch.long, "episode_const": True},
    }


GROUPS = {"agents": N_AGENTS}
KEYS = ["state", "obs", "actions", "avail_actions", "reward", "terminated", "ep_id", "filled", "actions_onehot"]


def pre(one_hot):
    return {"actions": ("actions_onehot", [one_hot(N_ACTIONS)])}


# -- index strategies -------------------------------------------------------------------


def batch_index(size: int):
    ints = st.integers(-size - 1, size + 1)
    return st.one_of(
        st.integers(0, max(size - 1, 0)),
        ints,
        st.builds(slice, st.none() | ints, st.none() | ints, st.none() | st.sampled_from([1, 2])),
        st.lists(st.integers(-size, size - 1), unique=True, max_size=size) if size else st.just([]),
        st.lists(st.integers(0, max(size - 1, 0)), min_size=1, max_size=3, unique=True).map(np.array)
        if size
        else st.just(np.array([], dtype=np.int64)),
    )


def time_index(t: int):
    ints = st.integers(-2, t)
    return st.one_of(
        st.integers(0, t - 1),
        ints,
        st.builds(slice, st.none() | ints, st.none() | ints, st.none() | st.just(1)),
        st.integers(0, t - 1).map(np.int64),  # drops the time dimension
        st.just([0, 1]),  # list time index: IndexError
        st.just(np.array([0, t - 1])),  # advanced indexing on time
    )


def make_value(rng: np.random.Generator, key: str, shape: tuple, mode: str, container: str, bad: bool = False):
    """Values for ``key`` shaped ``shape``: reshaped/invalid according to ``mode``; ``bad`` puts in a
    value that is out of range (one-hot error, uint8 overflow) or needs widening in compact storage."""
    if key in ("state", "obs", "reward"):
        arr = rng.standard_normal(shape).astype(np.float32).round(3)
    elif key == "actions":
        arr = rng.integers(0, N_ACTIONS, shape)
        if bad and arr.size:
            arr.flat[0] = rng.choice([N_ACTIONS, -1])  # one-hot RuntimeError
        elif mode == "float" and arr.size:
            arr = arr + 0.75  # truncation toward zero keeps the action
    elif key == "avail_actions":
        arr = rng.integers(0, 2, shape)
        if bad and arr.size:
            arr.flat[0] = 7  # needs widening in compact storage
    elif key == "terminated":
        arr = rng.integers(0, 2, shape)
        if bad and arr.size:
            arr.flat[0] = 300  # RuntimeError from a list, wraps from ndarray/tensor
    elif key == "ep_id":
        arr = rng.integers(-5, 3, shape)
        if bad and arr.size:
            arr.flat[0] = 100_000  # widening
    elif key == "filled":
        arr = rng.integers(0, 2, shape)
    else:  # actions_onehot: arbitrary small floats (not necessarily one-hot)
        arr = rng.integers(0, 2, shape).astype(np.float32)
        if bad and arr.size:
            arr.flat[0] = 0.5
    if mode == "squeeze":
        arr = arr.reshape([s for s in arr.shape if s != 1])
    elif mode == "unsqueeze":
        arr = arr.reshape((1, *arr.shape))
    elif mode == "flat":
        arr = arr.reshape(-1)
    elif mode == "wrong":
        arr = rng.integers(0, 2, (2, 3, 1))
    elif mode == "scalar":
        arr = np.array(1)
    if container == "list":
        return arr.tolist()
    if container == "tensor":
        return torch.from_numpy(np.ascontiguousarray(arr))
    return arr


MODES = ["ok"] * 6 + ["float", "squeeze", "unsqueeze", "flat", "wrong", "scalar"]


class PymarlDifferential(RuleBasedStateMachine):
    compact = False

    def __init__(self):
        super().__init__()
        self.ref = None
        self.ours = None
        self.eps: list[tuple[RefEpisodeBatch, EpisodeBatch]] = []

    @initialize(size=st.sampled_from([4, 5, 3, 1, 2]))
    def setup(self, size):
        self.ref = RefReplayBuffer(make_scheme(), GROUPS, size, T, preprocess=pre(RefOneHot))
        self.ours = ReplayBuffer(make_scheme(), GROUPS, size, T, preprocess=pre(OneHot), compact=self.compact)

    # -- targets --------------------------------------------------------------------------

    def _target(self, which: int):
        if which == 0 or not self.eps:
            return self.ref, self.ours
        return self.eps[(which - 1) % len(self.eps)]

    @rule(
        n=st.sampled_from([2, 3, 1, 5, 7, 0]),
        t=st.sampled_from([T, T, T - 1, T + 1]),
        ep_compact=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def new_episode_batch(self, n, t, ep_compact, seed):
        self._new_episode_batch(n, t, ep_compact, seed)

    @rule(n=st.integers(1, 7), ep_compact=st.booleans(), seed=st.integers(0, 2**16))
    def insert_fresh_episodes(self, n, ep_compact, seed):
        """Runner-written episodes straight into the buffer (the training loop's pattern)."""
        self._new_episode_batch(n, T, ep_compact, seed)
        self._insert(len(self.eps) - 1)

    def _new_episode_batch(self, n, t, ep_compact, seed):
        ref = RefEpisodeBatch(make_scheme(), GROUPS, n, t, preprocess=pre(RefOneHot))
        ours = EpisodeBatch(make_scheme(), GROUPS, n, t, preprocess=pre(OneHot), compact=ep_compact)
        # Runner-style fill of a random prefix of every episode.
        rng = np.random.default_rng(seed)
        length = int(rng.integers(0, t)) if n else -1
        for step in range(length + 1):
            data = {
                k: make_value(rng, k, ref[k][:, step].shape, "ok", "list") for k in ("state", "obs", "avail_actions")
            }
            ref.update(data, ts=step)
            ours.update(data, ts=step)
            if step < length:
                data = {
                    k: make_value(rng, k, ref[k][:, step].shape, "ok", "ndarray")
                    for k in ("actions", "reward", "terminated")
                }
                ref.update(data, ts=step)
                ours.update(data, ts=step)
        if n:
            data = {"ep_id": make_value(rng, "ep_id", (n, 2), "ok", "tensor")}
            ref.update(data)
            ours.update(data)
        assert_same_batch(ref, ours, "new episode batch")
        self.eps.append((ref, ours))
        del self.eps[:-3]

    @rule(
        which=st.integers(0, 3),
        data=st.data(),
        keys=st.lists(st.sampled_from(KEYS * 4 + ["nope"]), min_size=1, max_size=3, unique=True),
        mode=st.sampled_from(MODES),
        bad=st.sampled_from([False] * 4 + [True]),
        container=st.sampled_from(["list", "ndarray", "tensor"]),
        mark_filled=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def update(self, which, data, keys, mode, container, bad, mark_filled, seed):
        ref, ours = self._target(which)
        bs = data.draw(batch_index(ref.batch_size), label="bs")
        ts = data.draw(time_index(ref.max_seq_length), label="ts")
        rng = np.random.default_rng(seed)
        values = {}
        for k in keys:
            try:
                p = parse((bs, ts))
                dest = ref[k][p] if k in ref.data.transition_data else ref[k][p[0]]
                shape = tuple(dest.shape)
            except Exception:  # noqa: BLE001 - any shape; the update itself must raise
                shape = (1,)
            values[k] = make_value(rng, k, shape, mode, container, bad)
        assert_same_outcome(
            lambda: ref.update(values, bs=bs, ts=ts, mark_filled=mark_filled),
            lambda: ours.update(values, bs=bs, ts=ts, mark_filled=mark_filled),
            f"update({list(values)}, bs={bs!r}, ts={ts!r}, mode={mode}, bad={bad}, container={container})",
        )

    @precondition(lambda self: not self.compact)
    @rule(which=st.integers(0, 3), data=st.data(), seed=st.integers(0, 2**16))
    def update_through_slice_view(self, which, data, seed):
        """Writes into a basic-slice child land in the parent (default storage only)."""
        ref, ours = self._target(which)
        if getattr(ours, "_compact", False):
            return
        size = ref.batch_size
        item = data.draw(
            st.builds(slice, st.integers(0, size), st.integers(0, size)) | st.integers(0, max(size - 1, 0))
        )
        ref_child, our_child = ref[item], ours[item]
        rng = np.random.default_rng(seed)
        values = {"reward": make_value(rng, "reward", tuple(ref_child["reward"][:, 1:2].shape), "ok", "list")}
        assert_same_outcome(
            lambda: ref_child.update(values, ts=1),
            lambda: our_child.update(values, ts=1),
            f"child[{item!r}].update",
        )

    @rule(which=st.integers(0, 3), data=st.data())
    def getitem(self, which, data):
        ref, ours = self._target(which)
        size, t = ref.batch_size, ref.max_seq_length
        item = data.draw(
            st.one_of(
                st.sampled_from(KEYS + ["nope"]),
                st.lists(st.sampled_from(KEYS + ["nope"]), max_size=3, unique=True).map(tuple),
                batch_index(size),
                st.tuples(batch_index(size), time_index(t)),
            ),
            label="item",
        )
        ref_res, our_res = assert_same_outcome(lambda: ref[item], lambda: ours[item], f"[{item!r}]")
        if ref_res is not None:
            assert_same_result(ref_res, our_res, f"[{item!r}]")
            assert type(our_res) in (torch.Tensor, EpisodeBatch)
            if isinstance(ref_res, RefEpisodeBatch) and ref_res.batch_size and ref_res.max_seq_length:
                ref_m, our_m = assert_same_outcome(ref_res.max_t_filled, our_res.max_t_filled, "max_t_filled")
                if ref_m is not None:
                    assert torch.equal(ref_m, our_m) and ref_m.dtype == our_m.dtype

    @precondition(lambda self: self.eps)
    @rule(which=st.integers(0, 2))
    def insert(self, which):
        self._insert(which)

    @precondition(lambda self: self.eps)
    @rule(which=st.integers(0, 2))
    def insert_again(self, which):
        self._insert(which)

    def _insert(self, which):
        ref_ep, our_ep = self.eps[which % len(self.eps)]
        assert_same_outcome(
            lambda: self.ref.insert_episode_batch(ref_ep),
            lambda: self.ours.insert_episode_batch(our_ep),
            f"insert(batch_size={ref_ep.batch_size}, T={ref_ep.max_seq_length})",
        )

    @rule(data=st.data(), seed=st.integers(0, 2**32 - 1))
    def sample(self, data, seed):
        eib = self.ref.episodes_in_buffer
        n = data.draw(st.sampled_from([max(eib - 1, 0), max(eib - 2, 0), 1, eib, eib + 1, 0]), label="n")
        np.random.seed(seed)
        ref_res, ref_exc = None, None
        try:
            ref_res = self.ref.sample(n)
        except AssertionError as e:
            ref_exc = e
        ref_state = np.random.get_state()
        np.random.seed(seed)
        if ref_exc is not None:
            with pytest.raises(AssertionError):
                self.ours.sample(n)
            return
        our_res = self.ours.sample(n)
        assert rng_state_equal(ref_state, np.random.get_state()), "global numpy RNG state differs after sample"
        assert type(our_res) is EpisodeBatch
        assert our_res.preprocess == {}
        assert_same_batch(ref_res, our_res, f"sample({n})")
        assert self.ours.can_sample(n) == self.ref.can_sample(n)

    @invariant()
    def same_state(self):
        if self.ref is None:
            return
        assert_same_buffer(self.ref, self.ours)
        assert repr(self.ours) == repr(self.ref)
        for i, (ref_ep, our_ep) in enumerate(self.eps):
            assert_same_batch(ref_ep, our_ep, f"episode batch {i}")


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


class PymarlDifferentialDefault(PymarlDifferential):
    compact = False


class PymarlDifferentialCompact(PymarlDifferential):
    compact = True


TestDifferentialDefault = PymarlDifferentialDefault.TestCase
TestDifferentialDefault.settings = SETTINGS
TestDifferentialCompact = PymarlDifferentialCompact.TestCase
TestDifferentialCompact.settings = SETTINGS


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
@pytest.mark.parametrize(
    ("bs", "ts"),
    [
        ([1, 2, -3, -1], slice(None)),  # -3 is row 1 again: the later write wins
        (np.array([0, 0, 2]), slice(1, 3)),
        (torch.tensor([3, 3]), 2),
        (np.array([0, 0]), np.array([1, 1])),  # batch and time arrays: the same place twice
        (slice(None), np.array([2, 2, 0])),
        ([0, 1], slice(None)),  # no repeat
        (np.array([False, False, True, False]), np.array([0, 0, 3])),  # a mask broadcast with a repeating array
        ([1, 1], np.array([False, True, False, False])),
    ],
)
@pytest.mark.parametrize("first", [1, -1], ids=["valid", "invalid-overwritten"])
def test_preprocess_reads_back_what_a_repeated_index_wrote(compact, bs, ts, first):
    """A one-hot field is computed from what the write left, as upstream, also where an index repeats a place."""
    ref = RefEpisodeBatch(make_scheme(), GROUPS, 4, T, preprocess=pre(RefOneHot))
    ours = EpisodeBatch(make_scheme(), GROUPS, 4, T, preprocess=pre(OneHot), compact=compact)
    shape = tuple(ref["actions"][parse((bs, ts))].shape)
    actions = np.random.default_rng(0).integers(0, N_ACTIONS, shape)
    actions.flat[0] = first  # at a repeated place (but for [0, 1]) an invalid class is overwritten by the later write
    assert_same_outcome(
        lambda: ref.update({"actions": actions}, bs=bs, ts=ts),
        lambda: ours.update({"actions": actions}, bs=bs, ts=ts),
        f"update(bs={bs!r}, ts={ts!r})",
    )
    assert_same_batch(ref, ours)
