"""Checkpoints of TransitionBuffer and pymarl2's PrioritizedReplayBuffer: exact resume, registry, inspect."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import xreplay
from xreplay import persistence
from xreplay.buffers import NStepReturns, TransitionBuffer
from xreplay.cli import main
from xreplay.compat.pymarl import EpisodeBatch, PrioritizedReplayBuffer, ReplayBuffer
from xreplay.errors import CheckpointMismatchError
from xreplay.samplers import LinearSchedule, PrioritizedSampler


def _steps(i: int, n: int) -> dict:
    """``n`` transitions of step ``i``...: int8 actions, episode ends every 5 steps, next_obs = obs + 1."""
    ids = np.arange(i, i + n)
    obs = np.repeat(ids[:, None], 2, 1).astype(np.float32)
    done = (ids % 5 == 4).astype(np.float32)
    nxt = np.where(done[:, None] > 0, -obs, obs + 1)  # episode ends: next_obs differs from the next obs
    return {"obs": obs, "next_obs": nxt, "act": (ids % 7).astype(np.int8), "info": {"done": done}}


def _make(kind: str) -> TransitionBuffer:
    if kind == "uniform":
        return TransitionBuffer(16, seed=4)
    sampler = PrioritizedSampler(16, alpha=0.7, beta=LinearSchedule(0.4, 1.0, 30), epsilon=1e-3)
    return TransitionBuffer(16, sampler, seed=4, next_obs_from="obs" if kind == "next_obs" else None)


def _run(buffer: TransitionBuffer, start: int, steps: int) -> list[dict]:
    """Writes, samples and priority updates (data from a fixed sequence); return every sample and priority."""
    out = []
    for i in range(start, start + steps):
        buffer.extend(_steps(3 * i, 1 + i % 3))
        sample = buffer.sample(6)
        record = {"indices": sample.indices.copy(), **{k: v.clone() for k, v in sample.items()}}
        if sample.weights is not None:
            record["weights"] = sample.weights.clone()
            priorities = np.abs(np.sin(np.arange(6) + i)) * 3
            if i % 2:
                buffer.update_priorities(sample, priorities)
            else:
                buffer.extend(_steps(1000 + i, 1))  # overwrites a slot: some updates go stale
                buffer.update_priorities(sample.indices, priorities)  # generations of the last sample
            record["tree"] = buffer.sampler.priorities(np.arange(16)).copy()
            record["stale"] = buffer.sampler.stale_updates
        out.append(record)
    return out


def _assert_same(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kind", ["uniform", "prioritized", "next_obs"])
@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_transition_buffer_resumes_exactly(tmp_path, kind, mmap):
    buffer = _make(kind)
    _run(buffer, 0, 9)  # wraps the ring, leaves stale updates and a pending insert
    buffer.extend(_steps(500, 2))  # pending inserts at save time
    xreplay.save(buffer, tmp_path / "ckpt")
    expected = _run(buffer, 9, 12)
    loaded = xreplay.load(tmp_path / "ckpt", mmap=mmap, kind=TransitionBuffer)
    assert type(loaded.sampler) is type(buffer.sampler) and loaded.next_obs_fields == buffer.next_obs_fields
    _assert_same(expected, _run(loaded, 9, 12))


def test_loaded_buffer_matches_state_and_generic_load(tmp_path):
    buffer = _make("next_obs")
    _run(buffer, 0, 5)
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = persistence.load(tmp_path / "ckpt")
    assert isinstance(loaded, TransitionBuffer)
    assert loaded.writer.state_dict() == buffer.writer.state_dict()
    assert loaded.storage.specs == buffer.storage.specs
    assert loaded.sampler.state_dict().keys() == buffer.sampler.state_dict().keys()
    np.testing.assert_array_equal(loaded.sampler.state_dict()["leaves"], buffer.sampler.state_dict()["leaves"])
    slots = np.arange(len(buffer))
    for name, value in buffer.gather(slots).items():
        assert torch.equal(loaded.gather(slots)[name], value), name


def test_second_save_is_incremental_and_loads_the_same(tmp_path):
    buffer = TransitionBuffer(64, "prioritized", seed=0)
    buffer.extend(_steps(0, 40))
    assert not xreplay.save(buffer, tmp_path / "ckpt").incremental
    buffer.extend(_steps(40, 3))
    report = xreplay.save(buffer, tmp_path / "ckpt")
    assert report.incremental
    loaded = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)
    assert torch.equal(loaded.gather(np.arange(43))["act"], buffer.gather(np.arange(43))["act"])


def test_n_step_configuration_is_saved(tmp_path):
    n_step = NStepReturns(2, 0.9, reward="info/done", terminated="info/done", truncated=None)
    buffer = TransitionBuffer(8, seed=1, n_step=n_step)
    buffer.extend(_steps(0, 6))
    xreplay.save(buffer, tmp_path / "ckpt")
    assert xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer).n_step == n_step
    with pytest.raises(CheckpointMismatchError, match="n_step"):
        persistence.load(tmp_path / "ckpt", n_step=NStepReturns(3, 0.9))


def test_load_of_another_kind_is_refused(tmp_path):
    buffer = TransitionBuffer(8)
    buffer.extend(_steps(0, 2))
    xreplay.save(buffer, tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match="'transition_buffer' checkpoint, not 'episode_buffer'"):
        persistence.load(tmp_path / "ckpt", kind="episode_buffer")


def test_inspect_reports_transition_buffer_priorities(tmp_path, capsys):
    buffer = TransitionBuffer(16, PrioritizedSampler(16, alpha=1.0, epsilon=0.0), seed=0)
    buffer.extend(_steps(0, 10))
    buffer.update_priorities(np.arange(10), np.arange(1.0, 11.0), generations="current")
    xreplay.save(buffer, tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "transition_buffer" in out and "fill        10 / 16" in out
    assert "priorities  min 1  mean 5.5  max 10  (over 10 items)" in out


# -- pymarl2's PrioritizedReplayBuffer ---------------------------------------------

_SCHEME = {"reward": {"vshape": (1,)}, "actions": {"vshape": (1,), "dtype": torch.long}}


def _episodes(n: int, first: int) -> EpisodeBatch:
    batch = EpisodeBatch(_SCHEME, {}, n, 3)
    ids = torch.arange(first, first + n, dtype=torch.float32)
    batch.update({"reward": ids[:, None, None].expand(n, 3, 1)})
    return batch


def _pymarl_run(buffer: PrioritizedReplayBuffer, start: int, steps: int) -> list:
    out = []
    for i in range(start, start + steps):
        buffer.insert_episode_batch(_episodes(1 + i % 2, 10 * i))
        batch, idxes, weights = buffer.sample(3, t=i)
        buffer.update_priorities(idxes, np.abs(np.cos(np.arange(3) + i)) + 0.1 * (i % 3))
        out.append((batch["reward"].clone(), idxes, weights, buffer.beta, buffer.max_priority, buffer.stale_updates))
    return out


def test_pymarl2_prioritized_buffer_round_trip_and_exact_resume(tmp_path):
    buffer = PrioritizedReplayBuffer(_SCHEME, {}, 6, 3, alpha=0.6, beta=0.4, t_max=20)
    random.seed(7)
    np.random.seed(7)
    buffer.insert_episode_batch(_episodes(4, 0))
    _pymarl_run(buffer, 0, 5)
    xreplay.save(buffer, tmp_path / "ckpt")
    at_save = (buffer._sampler.priorities(np.arange(6)).copy(), buffer.max_priority, buffer.beta, buffer.stale_updates)
    py_state, np_state = random.getstate(), np.random.get_state()
    expected = _pymarl_run(buffer, 5, 8)
    random.seed(123)  # the program moved on
    np.random.seed(123)
    loaded = persistence.load(tmp_path / "ckpt")
    assert type(loaded) is PrioritizedReplayBuffer
    assert (loaded.alpha, loaded.beta_original, loaded.t_max) == (0.6, 0.4, 20)
    np.testing.assert_array_equal(loaded._sampler.priorities(np.arange(6)), at_save[0])
    assert (loaded.max_priority, loaded.beta, loaded.stale_updates) == at_save[1:]
    random.setstate(py_state)
    np.random.set_state(np_state)
    got = _pymarl_run(loaded, 5, 8)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
        np.testing.assert_array_equal(a[2], b[2])
        assert a[3:] == b[3:]


def test_pymarl2_prioritized_checkpoint_keeps_priorities_and_kinds_stay_apart(tmp_path, capsys):
    buffer = PrioritizedReplayBuffer(_SCHEME, {}, 4, 3, alpha=1.0, beta=0.5, t_max=10)
    buffer.insert_episode_batch(_episodes(4, 0))
    buffer.update_priorities([0, 1, 2, 3], [1.0, 2.0, 3.0, 6.0])
    buffer.save(tmp_path / "ckpt")
    loaded = PrioritizedReplayBuffer.load(tmp_path / "ckpt")
    assert loaded._sampler.priorities(np.arange(4)).tolist() == [1.0, 2.0, 3.0, 6.0]
    assert loaded.max_priority == 6.0 and loaded.beta == buffer.beta
    with pytest.raises(CheckpointMismatchError, match="not 'pymarl.replay_buffer'"):
        ReplayBuffer.load(tmp_path / "ckpt")
    assert main(["inspect", str(tmp_path / "ckpt")]) == 0
    assert "priorities  min 1  mean 3  max 6  (over 4 items)" in capsys.readouterr().out


def test_plain_index_update_after_load_uses_the_saved_last_sample(tmp_path):
    buffer = TransitionBuffer(8, "prioritized", seed=0)
    buffer.extend(_steps(0, 8))
    sample = buffer.sample(4)
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)
    loaded.add({k: v[0] for k, v in _steps(9, 1).items() if k != "info"} | {"info": {"done": np.float32(0)}})
    stale = loaded.update_priorities(sample.indices, np.full(4, 2.0))  # no generations: the saved sample's
    assert stale == int((sample.indices == 0).sum())


def test_next_obs_buffer_without_side_entries_round_trips(tmp_path):
    buffer = TransitionBuffer(8, next_obs_from="obs", seed=0)
    buffer.extend({"obs": np.arange(3.0), "next_obs": np.arange(1.0, 4.0)})  # no episode end: nothing kept apart
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)
    assert loaded.gather(np.arange(3))["next_obs"].tolist() == [1.0, 2.0, 3.0]
    loaded.extend({"obs": np.array([4.0]), "next_obs": np.array([5.0])})  # newest's next obs (3) differed from 4
    assert loaded.gather(np.arange(4))["next_obs"].tolist() == [1.0, 2.0, 3.0, 5.0]


def test_uniform_without_replacement_survives_a_checkpoint(tmp_path):
    from xreplay import UniformSampler

    buffer = TransitionBuffer(8, sampler=UniformSampler(replace=False), seed=0)
    buffer.extend({"obs": np.arange(8.0, dtype=np.float32)})
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", kind=TransitionBuffer)
    assert loaded.sampler.replace is False
    assert sorted(loaded.sample(8).indices.tolist()) == list(range(8))


def test_a_sequence_sampled_buffer_is_refused_with_a_clear_error(tmp_path):
    from xreplay import CheckpointError, SequenceSampler

    buffer = TransitionBuffer(8, sampler=SequenceSampler(2, end_fields=("done",)), seed=0)
    buffer.extend({"obs": np.arange(8.0, dtype=np.float32), "done": np.zeros(8, np.float32)})
    with pytest.raises(CheckpointError, match="SequenceSampler"):
        xreplay.save(buffer, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("values", [[True], [], ["obs"], ["next_obs", "next_obs"], "next_obs"])
def test_a_crafted_list_of_stored_next_observations_is_refused(tmp_path, values):
    from tests.persistence.persistence_helpers import read_meta, reseal
    from xreplay.errors import CheckpointSchemaError

    buffer = TransitionBuffer(8, next_obs_from="obs", seed=0)
    buffer.extend({"obs": np.arange(4.0), "next_obs": np.array([1.0, 2.0, 9.0, 4.0])})  # an episode end: kept apart
    path = tmp_path / "ckpt"
    xreplay.save(buffer, path)
    meta = read_meta(path)
    assert meta["state"]["next"]["values"] == ["next_obs"] and meta["state"]["next"]["rows"] > 0
    meta["state"]["next"]["values"] = values
    reseal(path, meta)
    with pytest.raises(CheckpointSchemaError, match="state.next.values"):
        xreplay.load(path, kind=TransitionBuffer)
