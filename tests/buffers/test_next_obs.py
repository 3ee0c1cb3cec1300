"""TransitionBuffer(next_obs_from="obs"): next observations stored once, samples identical to storing them."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xreplay
from xreplay.buffers import NStepReturns, TransitionBuffer
from xreplay.errors import ArgumentError, FieldShapeError, FieldValueError, UnknownFieldError
from xreplay.samplers import SequenceSampler


def stream(seed: int, steps: int, end_rate: float = 0.2, obs_shape=(3,)) -> dict[str, np.ndarray]:
    """Transitions of consecutive episodes: next_obs of a step is the next step's obs except at episode ends."""
    rng = np.random.default_rng(seed)
    obs, nxt, term, trunc = [], [], [], []
    o = rng.random(obs_shape).astype(np.float32)
    for _ in range(steps):
        n = rng.random(obs_shape).astype(np.float32)
        end = rng.random() < end_rate
        kind = rng.integers(2) if end else -1
        obs.append(o)
        nxt.append(n)
        term.append(float(kind == 0))
        trunc.append(float(kind == 1))
        o = rng.random(obs_shape).astype(np.float32) if end else n  # reset after an episode end
    return {
        "obs": np.array(obs),
        "next_obs": np.array(nxt),
        "reward": rng.random(steps).astype(np.float32),
        "terminated": np.array(term, np.float32),
        "truncated": np.array(trunc, np.float32),
    }


def write(buffers, data, sizes):
    """Write ``data`` to every buffer in chunks of ``sizes`` (1: ``add`` of one unbatched transition)."""
    start = 0
    for size in sizes:
        part = {k: v[start : start + size] for k, v in data.items()}
        if not len(part["obs"]):
            break
        for buf in buffers:
            if size == 1:
                buf.add({k: v[0] for k, v in part.items()})
            else:
                buf.extend(part)
        start += size


def assert_same_samples(reference, compact, n=64):
    a, b = reference.sample(n), compact.sample(n)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    if a.weights is not None:
        torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**16),
    st.integers(1, 12),
    st.lists(st.integers(1, 15), min_size=1, max_size=12),
    st.sampled_from(["uniform", "prioritized"]),
    st.sampled_from([0.0, 0.3, 1.0]),
    st.sampled_from([(3,), (), (2, 2)]),
)
def test_samples_match_a_buffer_that_stores_next_obs(seed, capacity, sizes, sampler, end_rate, obs_shape):
    data = stream(seed, sum(sizes), end_rate, obs_shape)
    nstep = NStepReturns(3, gamma=0.9)
    reference = TransitionBuffer(capacity, sampler, seed=seed, n_step=nstep)
    compact = TransitionBuffer(capacity, sampler, seed=seed, n_step=nstep, next_obs_from="obs")
    write([reference, compact], data, sizes)  # chunks larger than the capacity and ring wrap-around included
    assert "next_obs" not in compact.storage.columns
    everything = np.arange(len(reference))
    for name, value in reference.gather(everything).items():
        torch.testing.assert_close(compact.gather(everything)[name], value, rtol=0, atol=0)
    assert_same_samples(reference, compact)
    assert len(compact._next) <= int(data["terminated"].sum() + data["truncated"].sum()) + 1


def test_only_episode_ends_and_the_newest_step_keep_their_own_next_obs():
    data = stream(3, 40, end_rate=0.0)
    data["terminated"][[9, 19]] = 1.0
    data["obs"][10] = 7.0  # a reset after step 9; step 19 ends with a next_obs equal to the next obs
    compact = TransitionBuffer(64, next_obs_from="obs")
    compact.extend(data)
    kept = np.flatnonzero(compact._next.slot_row >= 0).tolist()
    assert kept == [9] and compact._next.newest == 39 and len(compact._next) == 2
    np.testing.assert_array_equal(compact.gather(np.arange(40))["next_obs"].numpy(), data["next_obs"])


def test_overwritten_neighbours_read_the_item_written_after_them():
    data = stream(5, 13, end_rate=0.3)
    reference, compact = TransitionBuffer(5), TransitionBuffer(5, next_obs_from="obs")
    write([reference, compact], data, [1] * 13)  # slot 4's successor is slot 0 after the wrap
    slots = np.arange(5)
    np.testing.assert_array_equal(compact.gather(slots)["next_obs"], reference.gather(slots)["next_obs"])
    assert len(compact._next) <= 5


def test_interleaved_streams_stay_correct_at_the_cost_of_side_entries():
    a, b = stream(1, 10, end_rate=0.0), stream(2, 10, end_rate=0.0)
    mixed = {k: np.stack([a[k], b[k]], axis=1).reshape(20, *a[k].shape[1:]) for k in a}  # env a, env b, a, ...
    reference, compact = TransitionBuffer(32), TransitionBuffer(32, next_obs_from="obs")
    write([reference, compact], mixed, [20])
    slots = np.arange(20)
    np.testing.assert_array_equal(compact.gather(slots)["next_obs"], reference.gather(slots)["next_obs"])
    assert len(compact._next) == 20


def test_nested_observations_are_paired_field_by_field():
    rng = np.random.default_rng(0)
    image, vec = rng.random((6, 2, 2)).astype(np.float32), rng.random((6, 4)).astype(np.float32)
    batch = {
        "obs": {"image": image[:-1], "vec": vec[:-1]},
        "next_obs": {"image": image[1:], "vec": vec[1:]},
        "act": np.arange(5),
    }
    buf = TransitionBuffer(8, next_obs_from="obs", seed=0)
    buf.extend(batch)
    assert sorted(buf.next_obs_fields) == ["next_obs/image", "next_obs/vec"]
    assert len(buf._next) == 1  # only the newest step
    got = buf.gather(np.arange(5))
    np.testing.assert_array_equal(got["next_obs/image"], image[1:])
    np.testing.assert_array_equal(got["next_obs/vec"], vec[1:])


def test_missing_or_misshapen_next_obs_raises_and_changes_nothing():
    buf = TransitionBuffer(4, next_obs_from="obs")
    with pytest.raises(UnknownFieldError, match="needs a field 'next_obs'"):
        buf.add({"obs": np.zeros(3, np.float32)})
    buf.add({"obs": np.zeros(3, np.float32), "next_obs": np.ones(3, np.float32)})
    with pytest.raises(FieldShapeError, match=r"'next_obs'.*\(3,\).*'obs'.*\(4,\)"):
        buf.add({"obs": np.zeros(3, np.float32), "next_obs": np.ones(4, np.float32)})
    with pytest.raises(UnknownFieldError, match="differ from those of the first write"):
        buf.add({"obs": np.zeros(3, np.float32)})
    assert len(buf) == 1
    np.testing.assert_array_equal(buf.gather(np.array([0]))["next_obs"], [[1.0, 1.0, 1.0]])


def test_sequences_include_the_next_observations():
    data = stream(4, 30, end_rate=0.1)
    reference = TransitionBuffer(32, seed=2, sampler=SequenceSampler(3, pad=True))
    compact = TransitionBuffer(32, seed=2, next_obs_from="obs", sampler=SequenceSampler(3, pad=True))
    write([reference, compact], data, [30])
    a = reference.sample(16)
    b = compact.sample(16)
    np.testing.assert_array_equal(a.indices, b.indices)
    valid = a.mask  # padded steps past the newest one are masked out (unwritten slots)
    torch.testing.assert_close(a.fields["next_obs"][valid], b.fields["next_obs"][valid], rtol=0, atol=0)


# -- interleaved environments: stream ids keep per-stream order -------------------------------------


def interleaved(seed: int, envs: int, steps: int, end_rate: float = 0.1) -> dict[str, np.ndarray]:
    """``steps`` rounds of a vector environment: each round one transition per env, env ids 0..envs-1."""
    parts = [stream(seed * 100 + e, steps, end_rate) for e in range(envs)]
    mixed = {k: np.stack([p[k] for p in parts], axis=1).reshape(steps * envs, *parts[0][k].shape[1:]) for k in parts[0]}
    mixed["env_id"] = np.tile(np.arange(envs), steps)
    return mixed


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    envs=st.integers(1, 5),
    capacity=st.integers(3, 40),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    shuffle=st.booleans(),
)
def test_stream_ids_give_the_stored_next_observations_whatever_the_interleaving(seed, envs, capacity, sizes, shuffle):
    data = interleaved(seed, envs, 12)
    if shuffle:  # envs step at different rates: a random merge that keeps each env's own order
        picks = np.random.default_rng(seed).permutation(data["env_id"])  # which env writes next
        per_env = [list(np.flatnonzero(data["env_id"] == e)) for e in range(envs)]
        merged = [per_env[env].pop(0) for env in picks]
        data = {k: v[merged] for k, v in data.items()}
    reference = TransitionBuffer(capacity)
    linked = TransitionBuffer(capacity, next_obs_from="obs", stream="env_id")
    write([reference, linked], data, sizes * 10)
    stored = np.arange(len(reference))
    np.testing.assert_array_equal(linked.gather(stored)["next_obs"], reference.gather(stored)["next_obs"])


def test_stream_ids_keep_the_saving_for_a_vector_environment():
    data = interleaved(0, 8, 40, end_rate=0.05)
    reference = TransitionBuffer(256)
    linked = TransitionBuffer(256, next_obs_from="obs", stream="env_id")
    write([reference, linked], data, [8] * 40)  # one batch per round of the 8 envs
    stored = np.arange(256)
    np.testing.assert_array_equal(linked.gather(stored)["next_obs"], reference.gather(stored)["next_obs"])
    ends = int(data["terminated"][-256:].sum() + data["truncated"][-256:].sum())
    assert len(linked._next) <= ends + 8  # episode ends and each env's newest step, not 7 of every 8
    assert "next_obs" not in linked.storage.columns and "env_id" in linked.storage.columns


def test_interleaved_writes_without_stream_ids_warn_once_that_the_saving_is_lost():
    data = interleaved(1, 4, 40, end_rate=0.0)
    plain = TransitionBuffer(256, next_obs_from="obs")
    with pytest.warns(RuntimeWarning, match="saves nothing.*stream="):
        write([plain], data, [4] * 40)
    reference = TransitionBuffer(256)
    write([reference], data, [4] * 40)
    stored = np.arange(160)
    np.testing.assert_array_equal(plain.gather(stored)["next_obs"], reference.gather(stored)["next_obs"])


def test_stream_buffers_checkpoint_their_links(tmp_path):
    data = interleaved(2, 3, 30)
    reference = TransitionBuffer(50)
    linked = TransitionBuffer(50, next_obs_from="obs", stream="env_id")
    write([reference, linked], {k: v[:60] for k, v in data.items()}, [3] * 20)
    xreplay.save(linked, tmp_path / "ckpt")
    restored = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)
    assert restored.stream == "env_id"
    rest = {k: v[60:] for k, v in data.items()}
    write([reference, restored], rest, [3] * 10)  # links continue across the load
    stored = np.arange(50)
    np.testing.assert_array_equal(restored.gather(stored)["next_obs"], reference.gather(stored)["next_obs"])


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        pytest.param(np.array([0.5, 1.0]), "'env_id'.*int64.*float64", id="float_ids"),
        pytest.param(np.array([-1, 0]), r"stream id -1 is outside", id="negative"),
        pytest.param(np.array([0, 2**21]), r"stream id 2097152 is outside", id="too_large"),
    ],
)
def test_bad_stream_ids_are_refused_and_change_nothing(ids, message):
    buf = TransitionBuffer(8, next_obs_from="obs", stream="env_id")
    buf.extend({"obs": np.zeros((2, 1), np.float32), "next_obs": np.ones((2, 1), np.float32), "env_id": np.arange(2)})
    before = (buf.writer.cursor, len(buf._next), buf._next.stream_newest.copy(), buf._next.successor.copy())
    bad = {"obs": np.ones((2, 1), np.float32), "next_obs": np.ones((2, 1), np.float32), "env_id": ids}
    with pytest.raises(FieldValueError, match=message):
        buf.extend(bad)
    after = (buf.writer.cursor, len(buf._next), buf._next.stream_newest, buf._next.successor)
    assert before[:2] == after[:2] and np.array_equal(before[2], after[2]) and np.array_equal(before[3], after[3])


def test_stream_needs_next_obs_from():
    with pytest.raises(ArgumentError, match="needs next_obs_from"):
        TransitionBuffer(8, stream="env_id")
