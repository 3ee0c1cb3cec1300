import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xreplay.buffers import NStepReturns, TransitionBuffer
from xreplay.errors import (
    ArgumentError,
    FieldShapeError,
    FieldTypeError,
    FieldValueError,
    InsufficientDataError,
    UnknownFieldError,
)
from xreplay.samplers import PrioritizedSampler, UniformSampler


def transition(i: float) -> dict:
    return {"obs": np.full(3, i, np.float32), "act": np.int64(i), "extra": {"done": np.float32(0)}}


def batch(start: int, n: int) -> dict:
    ids = np.arange(start, start + n)
    return {
        "obs": np.repeat(ids[:, None], 3, 1).astype(np.float32),
        "act": ids,
        "extra": {"done": np.zeros(n, np.float32)},
    }


@pytest.mark.parametrize("sampler", ["uniform", "prioritized"])
def test_add_and_extend_store_rows_in_ring_order(sampler):
    buf = TransitionBuffer(5, sampler=sampler, seed=0)
    assert buf.add(transition(0)) == 0
    assert buf.extend(batch(1, 6)).tolist() == [2, 3, 4, 0, 1]  # item 1 is overwritten by item 6
    assert len(buf) == 5
    got = buf.storage.gather(np.arange(5))
    assert got["act"].tolist() == [5, 6, 2, 3, 4]
    assert got["obs"].dtype == torch.float32 and got["act"].dtype == torch.int64
    assert got["obs"][:, 0].tolist() == [5, 6, 2, 3, 4]


def test_batch_larger_than_capacity_keeps_the_last_items():
    buf = TransitionBuffer(4)
    buf.extend(batch(0, 10))
    assert sorted(buf.storage.gather(np.arange(4))["act"].tolist()) == [6, 7, 8, 9]


def test_sample_returns_flat_keys_and_nested_view():
    buf = TransitionBuffer(8, seed=1)
    buf.extend(batch(0, 8))
    sample = buf.sample(16)
    assert sorted(sample) == ["act", "extra/done", "obs"]
    assert sample["obs"].shape == (16, 3) and sample.weights is None
    assert sample.nested()["extra"]["done"].shape == (16,)
    np.testing.assert_array_equal(sample["act"].numpy(), sample.indices)


def test_samples_are_reproducible_from_the_seed():
    a, b = TransitionBuffer(50, "prioritized", seed=3), TransitionBuffer(50, "prioritized", seed=3)
    for buf in (a, b):
        buf.extend(batch(0, 50))
    assert a.sample(20).indices.tolist() == b.sample(20).indices.tolist()


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        pytest.param(
            {"obs": np.zeros(3, np.float32), "act": 1},
            UnknownFieldError,
            r"missing \['extra/done'\]",
            id="missing",
        ),
        pytest.param({**transition(1), "x": 1.0}, UnknownFieldError, r"extra \['x'\]", id="extra"),
        pytest.param(
            {**transition(1), "obs": np.zeros(4, np.float32)},
            FieldShapeError,
            r"'obs'.*\(3,\).*\(4,\)",
            id="shape",
        ),
        pytest.param(
            {**transition(1), "act": 1.5}, FieldValueError, r"'act'.*torch.int64.*float", id="dtype"
        ),
        pytest.param(
            {**transition(1), "obs": ["a", "b", "c"]}, FieldTypeError, r"'obs'.*numbers", id="strings"
        ),
    ],
)
def test_mismatching_write_raises_naming_the_field_and_changes_nothing(bad, error, message):
    buf = TransitionBuffer(4, "prioritized")
    buf.add(transition(7))
    before = {k: v.clone() for k, v in buf.storage.columns.items()}
    with pytest.raises(error, match=message):
        buf.add(bad)
    assert len(buf) == 1 and buf.writer.cursor == 1 and buf.sampler.size == 1
    for name, column in buf.storage.columns.items():
        assert torch.equal(column, before[name])


def test_batch_with_unequal_lengths_raises():
    buf = TransitionBuffer(4)
    bad = batch(0, 3)
    bad["act"] = np.arange(2)
    with pytest.raises(FieldShapeError, match="'act': batch of 2 items, other fields have 3"):
        buf.extend(bad)
    assert len(buf) == 0


def test_python_floats_become_float32_and_tensors_keep_their_dtype():
    buf = TransitionBuffer(2)
    buf.add({"r": 1.5, "x": torch.tensor([1, 2], dtype=torch.int16)})
    assert buf.storage.columns["r"].dtype == torch.float32
    assert buf.storage.columns["x"].dtype == torch.int16


def test_prioritized_sampling_weights_and_stale_updates():
    buf = TransitionBuffer(4, PrioritizedSampler(4, alpha=1.0, beta=1.0, epsilon=0.0), seed=0)
    buf.extend(batch(0, 4))
    buf.update_priorities([0, 1, 2, 3], torch.tensor([0.0, 0.0, 1.0, 3.0]), generations="current")
    sample = buf.sample(200)
    assert set(sample.indices.tolist()) == {2, 3}
    assert sample.weights.dtype == torch.float32
    assert torch.allclose(sample.weights[torch.from_numpy(sample.indices == 3)], torch.tensor(1 / 3))
    buf.add(transition(9))  # overwrites slot 0 only
    buf.add(transition(9))
    buf.add(transition(9))  # overwrites slot 2
    assert buf.update_priorities(sample.indices, np.ones(200), sample.generations) == int(
        (sample.indices == 2).sum()
    )


def test_uniform_buffer_rejects_priority_updates_and_empty_sampling():
    buf = TransitionBuffer(4, UniformSampler())
    with pytest.raises(InsufficientDataError, match="empty buffer"):
        buf.sample(1)
    buf.add(transition(0))
    with pytest.raises(TypeError, match="prioritized"):
        buf.update_priorities([0], [1.0])


def test_unknown_sampler_name_raises():
    with pytest.raises(ValueError, match="'uniform', 'prioritized'"):
        TransitionBuffer(4, sampler="lifo")


def reference_n_step(rewards, terminated, truncated, start, newest, n, gamma):
    """Walk forward one transition at a time."""
    total, k = 0.0, 0
    while True:
        total += gamma**k * rewards[start + k]
        if terminated[start + k]:
            return total, 0.0, start + k
        if truncated[start + k] or k == n - 1 or start + k == newest:
            return total, gamma ** (k + 1), start + k
        k += 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["run", "term", "trunc"]), min_size=1, max_size=20), st.integers(1, 5))
def test_n_step_returns_match_a_step_by_step_reference(kinds, n):
    count, gamma = len(kinds), 0.9
    rewards = np.arange(1, count + 1, dtype=np.float32)
    terminated = np.array([k == "term" for k in kinds], np.float32)
    truncated = np.array([k == "trunc" for k in kinds], np.float32)
    nstep = NStepReturns(n, gamma)
    buf = TransitionBuffer(32, n_step=nstep)
    buf.extend(
        {
            "reward": rewards,
            "terminated": terminated,
            "truncated": truncated,
            "next_obs": np.arange(count, dtype=np.float32),
        }
    )
    out = nstep.compute(buf, np.arange(count))
    for t in range(count):
        ret, discount, last = reference_n_step(rewards, terminated, truncated, t, count - 1, n, gamma)
        assert out["n_step/return"][t].item() == pytest.approx(ret, rel=1e-6)
        assert out["n_step/discount"][t].item() == pytest.approx(discount, rel=1e-6)
        assert out["n_step/next_obs"][t].item() == last


def test_n_step_wraps_around_the_ring_and_sample_includes_it():
    nstep = NStepReturns(3, 1.0, truncated=None)
    buf = TransitionBuffer(4, n_step=nstep, seed=0)
    buf.extend(
        {
            "reward": np.arange(6, dtype=np.float32),
            "terminated": np.zeros(6, np.float32),
            "next_obs": np.arange(6, dtype=np.float32),
        }
    )
    out = nstep.compute(buf, np.array([3, 0, 1]))  # slots hold rewards [4, 5, 2, 3]
    assert out["n_step/return"].tolist() == [3 + 4 + 5, 4 + 5, 5]
    assert "n_step/return" in buf.sample(2)


def test_n_step_missing_field_raises():
    buf = TransitionBuffer(4, n_step=NStepReturns(2, 0.9))
    buf.add({"reward": 1.0})
    with pytest.raises(UnknownFieldError, match="need fields"):
        buf.sample(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_samples_on_the_gpu():
    buf = TransitionBuffer(8, "prioritized", device="cuda", seed=0)
    buf.extend(batch(0, 8))
    sample = buf.sample(4)
    assert sample["obs"].device.type == "cuda" and sample.weights.device.type == "cuda"


def _snapshot(buf: TransitionBuffer) -> tuple:
    columns = {k: v.clone() for k, v in buf.storage.columns.items()}
    return columns, dict(buf.storage.specs), buf.writer.state_dict(), len(buf)


def _assert_unchanged(buf: TransitionBuffer, snapshot: tuple) -> None:
    columns, specs, writer, size = snapshot
    assert buf.storage.specs == specs and buf.writer.state_dict() == writer and len(buf) == size
    assert buf.storage.columns.keys() == columns.keys()
    for name, column in buf.storage.columns.items():
        assert torch.equal(column, columns[name])


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        pytest.param(
            np.array([1, 2], np.uint8), np.array([300, -1]), r"'act'.*\[-1, 300\].*torch.uint8.*\[0, 255\]", id="u8"
        ),
        pytest.param(
            np.array([1, 2], np.int32), np.array([2**40, 0]), r"'act'.*1099511627776.*\[-2147483648, 2147483647\]",
            id="i32",
        ),
        pytest.param(
            np.array([1, 2], np.int8), torch.tensor([-129, 3], dtype=torch.int16), r"'act'.*-129.*\[-128, 127\]",
            id="tensor",
        ),
    ],
)
def test_integer_values_outside_the_column_dtype_are_refused_not_wrapped(first, second, message):
    buf = TransitionBuffer(4, "prioritized")
    buf.extend({"act": first})
    snapshot = _snapshot(buf)
    with pytest.raises(FieldValueError, match=message):
        buf.extend({"act": second})
    _assert_unchanged(buf, snapshot)
    assert buf.sampler.size == 2


def test_integer_values_of_a_wider_dtype_that_fit_are_stored_exactly():
    buf = TransitionBuffer(4)
    buf.extend({"act": np.array([1, 2], np.uint8)})
    buf.extend({"act": np.array([255, 0], np.int64)})
    assert buf.storage.columns["act"].tolist() == [1, 2, 255, 0]
    buf.add({"act": 7})  # a Python int (int64) that fits
    assert buf.storage.columns["act"].tolist() == [7, 2, 255, 0]
    with pytest.raises(FieldValueError, match=r"'act'.*256"):
        buf.add({"act": 256})


def test_next_observations_outside_the_observation_dtype_are_refused():
    buf = TransitionBuffer(4, next_obs_from="obs")
    buf.extend({"obs": np.array([1, 2], np.uint8), "next_obs": np.array([2, 3], np.uint8)})
    snapshot = _snapshot(buf)
    with pytest.raises(FieldValueError, match=r"'next_obs'.*\[4, 256\].*\[0, 255\]"):
        buf.extend({"obs": np.array([3, 4]), "next_obs": np.array([4, 256])})
    _assert_unchanged(buf, snapshot)
    assert buf.gather(np.arange(2))["next_obs"].tolist() == [2, 3]


@pytest.mark.parametrize("next_obs_from", [None, "obs"])
def test_rejected_first_write_leaves_the_buffer_empty_and_reusable(next_obs_from):
    buf = TransitionBuffer(4, "prioritized", next_obs_from=next_obs_from)
    bad = {"obs": np.zeros((3, 2)), "next_obs": np.zeros((3, 2)), "b": np.zeros(4)}
    with pytest.raises(FieldShapeError, match="batch of 4 items, other fields have 3"):
        buf.extend(bad)
    assert buf.storage.specs == {} and buf.storage.columns == {} and len(buf) == 0
    assert buf.next_obs_fields == () and buf.sampler.size == 0
    # A differently shaped first write is then accepted as the one that fixes the fields.
    good = {"obs": np.ones((2, 5), np.float32), "next_obs": np.ones((2, 5), np.float32), "c": np.arange(2)}
    buf.extend(good)
    assert sorted(buf.storage.specs) == (["c", "obs"] if next_obs_from else ["c", "next_obs", "obs"])
    assert buf.storage.columns["obs"].shape == (4, 5)


def test_rejected_first_write_with_a_bad_next_observation_leaves_nothing_behind():
    buf = TransitionBuffer(4, next_obs_from="obs")
    with pytest.raises(FieldShapeError, match="'next_obs'"):
        buf.extend({"obs": np.zeros((2, 3)), "next_obs": np.zeros((2, 4))})
    assert buf.storage.specs == {} and buf.next_obs_fields == ()
    buf.extend({"obs": np.zeros((2, 4)), "next_obs": np.ones((2, 4))})
    assert buf.gather(np.arange(2))["next_obs"].tolist() == [[1.0] * 4] * 2


def _per_buffer() -> TransitionBuffer:
    buf = TransitionBuffer(4, PrioritizedSampler(4, alpha=1.0, beta=1.0, epsilon=0.0), seed=0)
    buf.extend(batch(0, 4))
    return buf


@pytest.mark.parametrize("how", ["sample", "indices", "explicit"])
def test_priority_updates_for_overwritten_slots_are_skipped_by_default(how):
    buf = _per_buffer()
    sample = buf.sample(16)
    buf.add(transition(9))  # overwrites slot 0: the sampled item there is gone
    new = np.full(16, 5.0)
    if how == "sample":
        stale = buf.update_priorities(sample, new)
    elif how == "indices":  # plain indices of the most recent sample: its generations are used
        stale = buf.update_priorities(sample.indices.tolist(), new)
    else:
        stale = buf.update_priorities(sample.indices, new, sample.generations)
    assert stale == int((sample.indices == 0).sum()) > 0
    assert buf.sampler.priorities([0]).tolist() == [1.0]  # the new item keeps the initial priority
    assert buf.sampler.priorities(np.unique(sample.indices[sample.indices != 0])).tolist() == [5.0] * len(
        np.unique(sample.indices[sample.indices != 0])
    )


def test_plain_indices_without_generations_that_are_not_the_last_sample_are_refused():
    buf = _per_buffer()
    before = buf.sampler.priorities(np.arange(4)).tolist()
    with pytest.raises(ArgumentError, match="not those of the most recent sample.*generations='current'"):
        buf.update_priorities([0, 1], [3.0, 3.0])
    sample = buf.sample(4)
    with pytest.raises(ArgumentError, match="most recent sample"):
        buf.update_priorities(sample.indices[:2], [3.0, 3.0])
    assert buf.sampler.priorities(np.arange(4)).tolist() == before
    buf.add(transition(9))  # overwrites slot 0
    assert buf.update_priorities([0, 1], [3.0, 3.0], generations="current") == 0  # explicit opt-out
    assert buf.sampler.priorities([0, 1]).tolist() == [3.0, 3.0]
    with pytest.raises(ArgumentError, match="'current'"):
        buf.update_priorities([0], [1.0], generations="latest")
