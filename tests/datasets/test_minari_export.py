"""to_minari: buffers written as Minari datasets that minari.load_dataset reads back identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.datasets.helpers import age_order, transition_stream
from tests.datasets.minari_data import goal_episodes, goal_space, make_dataset
from xreplay import EpisodeBuffer, Field, Scheme, TransitionBuffer
from xreplay.datasets import MinariFields, from_minari, to_minari
from xreplay.errors import DatasetError, DatasetFieldMissingError, DatasetMismatchError, FieldValueError

minari = pytest.importorskip("minari")
gym = pytest.importorskip("gymnasium")


@pytest.fixture(autouse=True)
def local_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _stream_buffer(capacity: int, total: int, **options) -> TransitionBuffer:
    buf = TransitionBuffer(capacity, seed=0, **options)
    data = transition_stream(total)
    for start in range(0, total, 6):
        buf.extend({k: v[start : start + 6] for k, v in data.items()})
    return buf


def _episodes_of(buf: TransitionBuffer) -> list[dict]:
    """Cut a transition buffer's age-ordered rows at flags and at resets (the expected Minari episodes)."""
    rows = buf.gather(age_order(buf))
    obs, nxt = rows["obs"].numpy(), rows["next_obs"].numpy()
    ends = rows["terminated"].numpy() | rows["truncated"].numpy()
    ends[:-1] |= (nxt[:-1] != obs[1:]).any(axis=1)
    ends[-1] = True
    episodes, start = [], 0
    for stop in np.flatnonzero(ends) + 1:
        episodes.append(
            {
                "observations": np.concatenate([obs[start:stop], nxt[stop - 1 : stop]]),
                "actions": rows["action"].numpy()[start:stop],
                "rewards": rows["reward"].numpy()[start:stop],
                "terminations": rows["terminated"].numpy()[start:stop],
                "truncations": rows["truncated"].numpy()[start:stop],
            }
        )
        start = stop
    return episodes


def _same_as_loaded(expected: list[dict], dataset) -> None:
    loaded = list(dataset.iterate_episodes())
    assert len(loaded) == len(expected) == dataset.total_episodes
    assert dataset.total_steps == sum(len(e["rewards"]) for e in expected)
    for want, got in zip(expected, loaded, strict=True):
        for part, value in want.items():
            received = getattr(got, part)
            if isinstance(value, dict):
                assert set(received) == set(value)
                for key in value:
                    np.testing.assert_array_equal(received[key], value[key])
                    assert received[key].dtype == value[key].dtype
            else:
                np.testing.assert_array_equal(received, value)
                assert received.dtype == value.dtype, part


@pytest.mark.parametrize(
    "capacity, total, options",
    [
        pytest.param(40, 30, {}, id="not_full"),
        pytest.param(32, 50, {}, id="wrapped"),
        pytest.param(32, 50, {"next_obs_from": "obs"}, id="next_obs_once"),
    ],
)
def test_transition_buffer_is_read_back_identically(capacity, total, options):
    buf = _stream_buffer(capacity, total, **options)
    to_minari(buf, dataset_id="stream-v0", action_space=gym.spaces.Discrete(4))
    dataset = minari.load_dataset("stream-v0")
    assert dataset.action_space == gym.spaces.Discrete(4)
    _same_as_loaded(_episodes_of(buf), dataset)
    back = from_minari("stream-v0")
    rows, again = buf.gather(age_order(buf)), back.gather(np.arange(len(back)))
    for name in rows:
        assert torch.equal(rows[name], again[name]), name


def test_resets_without_flags_split_episodes():
    buf = _stream_buffer(40, 30)
    flags = np.zeros(30, bool)
    data = transition_stream(30)
    plain = TransitionBuffer(40)
    plain.extend({**data, "terminated": flags, "truncated": flags})  # ends only visible as resets
    to_minari(plain, dataset_id="resets-v0")
    assert minari.load_dataset("resets-v0").total_episodes == 6 == len(_episodes_of(buf))


def test_s2_style_field_names():
    rng = np.random.default_rng(0)
    obs = rng.random((9, 17), dtype=np.float32)
    buf = TransitionBuffer(8)
    done = np.array([0, 0, 0, 1, 0, 0, 0, 0], np.float32)
    buf.extend(
        {
            "obs": obs[:-1],
            "next_obs": obs[1:],
            "act": rng.random((8, 6), dtype=np.float32),
            "rew": rng.random(8, dtype=np.float32),
            "done": done,
        }
    )
    fields = MinariFields(action="act", reward="rew", terminated="done", truncated=None)
    to_minari(buf, dataset_id="s2-v0", fields=fields)
    episodes = list(minari.load_dataset("s2-v0").iterate_episodes())
    assert [len(e) for e in episodes] == [4, 4]
    assert episodes[0].terminations.tolist() == [False, False, False, True]
    assert not episodes[1].terminations.any() and not episodes[1].truncations.any()  # the newest, unfinished


def test_goal_conditioned_episode_buffer_round_trip(local_datasets):
    episodes = goal_episodes(np.random.default_rng(3), lengths=(4, 6, 2))
    make_dataset(minari, gym, "goals-v0", episodes, goal_space(gym), gym.spaces.Discrete(5))
    buf = from_minari("goals-v0", "episodes")
    path = to_minari(
        buf,
        local_datasets / "copy-v0",
        observation_space=goal_space(gym),
        action_space=gym.spaces.Discrete(5),
        metadata={"author": {"xreplay"}, "algorithm_name": "copy"},
    )
    dataset = minari.load_dataset("copy-v0")
    assert dataset.observation_space == goal_space(gym)
    assert json.loads((path / "data" / "metadata.json").read_text())["author"] == ["xreplay"]
    _same_as_loaded(episodes, dataset)
    again = from_minari(path, "episodes")
    a, b = buf.get(np.arange(3)), again.get(np.arange(3))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_episode_buffer_with_trailing_item_dims_and_narrow_storage():
    scheme = Scheme(
        {
            "obs": Field((2,)),
            "action": Field((1,), torch.int64, storage_dtype="auto"),
            "reward": Field((1,)),
            "terminated": Field((1,), torch.bool),
            "truncated": Field((1,), torch.bool),
        }
    )
    buf = EpisodeBuffer(scheme, 4, 6)
    buf.add(
        {
            "obs": torch.arange(24.0).reshape(2, 6, 2),
            "action": torch.arange(12).reshape(2, 6, 1) % 3,
            "reward": torch.ones(2, 6, 1),
            "terminated": torch.zeros(2, 6, 1, dtype=torch.bool),
            "truncated": torch.zeros(2, 6, 1, dtype=torch.bool),
        },
        lengths=[6, 3],
    )
    to_minari(buf, dataset_id="plain-v0")
    loaded = list(minari.load_dataset("plain-v0").iterate_episodes())
    assert [len(e) for e in loaded] == [5, 2]
    assert loaded[1].actions.tolist() == [[0], [1]] and loaded[1].actions.dtype == np.int64
    np.testing.assert_array_equal(loaded[1].observations, torch.arange(12.0, 18.0).reshape(3, 2).numpy())
    assert loaded[0].rewards.shape == (5,)


def test_default_folder_is_minaris_local_one(local_datasets):
    to_minari(_stream_buffer(40, 30), dataset_id="team/replay-v1")
    assert (local_datasets / "team" / "replay-v1" / "data" / "main_data.hdf5").is_file()
    assert "team/replay-v1" in minari.list_local_datasets()


# -- bad input -------------------------------------------------------------------------------------


def test_missing_field_names_it():
    buf = TransitionBuffer(8)
    buf.extend(
        {
            "obs": np.zeros((2, 3), np.float32),
            "next_obs": np.zeros((2, 3), np.float32),
            "action": np.zeros(2),
            "rew": np.zeros(2),
        }
    )
    with pytest.raises(DatasetFieldMissingError, match=r"reward field 'reward' is not in the buffer"):
        to_minari(buf, dataset_id="x-v0", fields=MinariFields(terminated=None, truncated=None))


def test_given_space_must_fit_the_fields():
    buf = _stream_buffer(40, 30)
    with pytest.raises(DatasetMismatchError, match=r"observation field '\(root\)': expected shape \(4,\)"):
        to_minari(buf, dataset_id="x-v0", observation_space=gym.spaces.Box(0, 1, (4,), np.float32))
    with pytest.raises(DatasetMismatchError, match="action fields"):
        to_minari(buf, dataset_id="x-v0", action_space=gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))


def test_values_the_space_dtype_cannot_hold():
    buf = TransitionBuffer(4)
    buf.extend(
        {
            "obs": np.array([[0.0], [1.0]], np.float32),
            "next_obs": np.array([[1.0], [2.0]], np.float32),  # one episode of two steps
            "action": np.array([1, 300]),
            "reward": np.zeros(2),
            "terminated": np.array([False, True]),
            "truncated": np.zeros(2, bool),
        }
    )
    space = gym.spaces.Box(0, 255, (), np.uint8)
    with pytest.raises(FieldValueError, match=r"actions field '\(root\)': values span \[1, 300\]"):
        to_minari(buf, dataset_id="x-v0", action_space=space)


def _small_obs_buffer(obs: np.ndarray) -> TransitionBuffer:
    """Return a buffer of one episode whose observations are ``obs[:-1]`` and next observations ``obs[1:]``."""
    steps = obs.shape[0] - 1
    buf = TransitionBuffer(8)
    buf.extend(
        {
            "obs": obs[:-1],
            "next_obs": obs[1:],
            "action": np.zeros(steps, np.int64),
            "reward": np.zeros(steps, np.float32),
            "terminated": np.arange(steps) == steps - 1,
            "truncated": np.zeros(steps, bool),
        }
    )
    return buf


def test_observations_are_cast_to_the_space_dtype():
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    space = gym.spaces.Box(-10.0, 10.0, (2,), np.float64)
    to_minari(_small_obs_buffer(obs), dataset_id="cast-v0", observation_space=space)
    (episode,) = minari.load_dataset("cast-v0").iterate_episodes()
    assert episode.observations.dtype == np.float64
    np.testing.assert_array_equal(episode.observations, obs)  # T + 1 rows: the last next observation included


def test_observations_the_space_dtype_cannot_hold():
    obs = np.array([[0], [1], [200], [300]], np.int64)  # only the last next observation is out of range
    space = gym.spaces.Box(0, 255, (1,), np.uint8)
    with pytest.raises(FieldValueError, match=r"observations field '\(root\)': values span \[0, 300\]"):
        to_minari(_small_obs_buffer(obs), dataset_id="x-v0", observation_space=space)


@pytest.mark.parametrize("dataset_id", ["no_version", "bad id!-v0"])
def test_invalid_dataset_id(dataset_id):
    with pytest.raises(ValueError, match="is not a Minari id"):
        to_minari(_stream_buffer(40, 30), dataset_id=dataset_id)


def test_existing_folder_is_kept_unless_overwrite(local_datasets):
    to_minari(_stream_buffer(40, 30), dataset_id="keep-v0")
    with pytest.raises(DatasetError, match="overwrite=True"):
        to_minari(_stream_buffer(40, 12), dataset_id="keep-v0")
    assert minari.load_dataset("keep-v0").total_steps == 30
    to_minari(_stream_buffer(40, 12), dataset_id="keep-v0", overwrite=True)
    assert minari.load_dataset("keep-v0").total_steps == 12


def test_failed_write_leaves_nothing(local_datasets, monkeypatch):
    from xreplay.datasets._minari_hdf5 import EpisodeFileWriter

    def fail(self, steps, parts):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EpisodeFileWriter, "write", fail)
    with pytest.raises(DatasetError, match="No space left"):
        to_minari(_stream_buffer(40, 30), local_datasets / "full-v0")
    assert not local_datasets.exists() or list(local_datasets.iterdir()) == []
