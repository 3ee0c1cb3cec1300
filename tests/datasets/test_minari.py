"""from_minari: datasets made by Minari itself become transition or episode buffers; bad datasets are refused."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tests.datasets.helpers import assert_unchanged, buffer_state
from tests.datasets.minari_data import box_episodes, goal_episodes, goal_space, make_dataset
from xreplay import EpisodeBuffer, TransitionBuffer
from xreplay.datasets import MinariFields, from_minari
from xreplay.errors import DatasetCorruptError, DatasetError, DatasetFieldMissingError, DatasetMismatchError

minari = pytest.importorskip("minari")
gym = pytest.importorskip("gymnasium")
h5py = pytest.importorskip("h5py")


@pytest.fixture(autouse=True)
def local_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


@pytest.fixture
def box_dataset():
    space = gym.spaces.Box(0, 1, (3,), np.float32)
    episodes = box_episodes(np.random.default_rng(0))
    return make_dataset(minari, gym, "box-v0", episodes, space, gym.spaces.Discrete(4)), episodes


@pytest.fixture
def goal_dataset():
    episodes = goal_episodes(np.random.default_rng(1))
    return make_dataset(minari, gym, "goals-v0", episodes, goal_space(gym), gym.spaces.Discrete(5)), episodes


def _column(episodes, part, rows=slice(None)):
    return np.concatenate([episode[part][rows] for episode in episodes])


def test_transitions_keep_terminations_and_truncations_apart(box_dataset):
    _dataset, episodes = box_dataset
    buf = from_minari("box-v0")
    assert isinstance(buf, TransitionBuffer) and len(buf) == buf.capacity == 14
    got = buf.gather(np.arange(14))
    np.testing.assert_array_equal(got["obs"].numpy(), _column(episodes, "observations", slice(None, -1)))
    np.testing.assert_array_equal(got["next_obs"].numpy(), _column(episodes, "observations", slice(1, None)))
    np.testing.assert_array_equal(got["action"].numpy(), _column(episodes, "actions"))
    np.testing.assert_array_equal(got["reward"].numpy(), _column(episodes, "rewards"))
    assert got["terminated"].tolist() == _column(episodes, "terminations").tolist()
    assert got["truncated"].tolist() == _column(episodes, "truncations").tolist()
    assert got["terminated"].sum() == 2 and got["truncated"].sum() == 1


def test_episodes_hold_the_observation_after_the_last_step(box_dataset):
    _dataset, episodes = box_dataset
    buf = from_minari("box-v0", "episodes")
    assert isinstance(buf, EpisodeBuffer) and buf.max_seq_length == 7
    assert buf.episode_lengths().tolist() == [6, 4, 7]
    batch = buf.get(np.arange(3))
    for k, episode in enumerate(episodes):
        steps = len(episode["rewards"])
        np.testing.assert_array_equal(batch["obs"][k, : steps + 1].numpy(), episode["observations"])
        np.testing.assert_array_equal(batch["action"][k, :steps].numpy(), episode["actions"])
        assert batch["action"][k, steps] == 0 and not batch["terminated"][k, steps]  # only the observation there
        assert batch["truncated"][k, :steps].tolist() == episode["truncations"].tolist()


@pytest.mark.parametrize("kind", ["transitions", "episodes"])
def test_goal_conditioned_dict_observations_become_one_field_per_key(goal_dataset, kind):
    _dataset, episodes = goal_dataset
    buf = from_minari("goals-v0", kind)
    names = {"obs/observation", "obs/achieved_goal", "obs/desired_goal"}
    if kind == "transitions":
        got = buf.gather(np.arange(len(buf)))
        assert names | {f"next_{n}" for n in names} <= set(got)
        for key in ("observation", "achieved_goal", "desired_goal"):
            obs = np.concatenate([e["observations"][key][:-1] for e in episodes])
            assert got[f"obs/{key}"].dtype == torch.int8
            np.testing.assert_array_equal(got[f"obs/{key}"].numpy(), obs)
    else:
        assert names <= set(buf.scheme)
        batch = buf.get([1])
        np.testing.assert_array_equal(
            batch["obs/achieved_goal"][0, :7].numpy(), episodes[1]["observations"]["achieved_goal"]
        )


def test_a_gymnasium_rollout_round_trips(tmp_path):
    env = gym.make("CartPole-v1", max_episode_steps=20)
    rng = np.random.default_rng(2)
    episodes = []
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        rows = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = int(rng.integers(2))
            obs, reward, terminated, truncated, _ = env.step(action)
            for part, value in zip(rows, (obs, action, reward, terminated, truncated), strict=True):
                rows[part].append(value)
            done = terminated or truncated
        episodes.append({k: np.asarray(v) for k, v in rows.items()})
    make_dataset(minari, gym, "cartpole/random-v0", episodes, env.observation_space, env.action_space)
    buf = from_minari("cartpole/random-v0")
    steps = sum(len(e["rewards"]) for e in episodes)
    got = buf.gather(np.arange(steps))
    np.testing.assert_array_equal(got["next_obs"].numpy(), _column(episodes, "observations", slice(1, None)))
    assert got["truncated"].sum() == sum(bool(e["truncations"][-1]) for e in episodes)
    assert got["terminated"].sum() + got["truncated"].sum() == len(episodes)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda root, ds: "box-v0", id="dataset_id"),
        pytest.param(lambda root, ds: root / "box-v0", id="dataset_folder"),
        pytest.param(lambda root, ds: str(root / "box-v0" / "data"), id="data_folder"),
        pytest.param(lambda root, ds: ds, id="minari_dataset"),
    ],
)
def test_sources(box_dataset, local_datasets, source):
    dataset, _episodes = box_dataset
    assert len(from_minari(source(local_datasets, dataset))) == 14


def test_a_filtered_dataset_keeps_its_episodes(box_dataset):
    dataset, episodes = box_dataset
    longer = dataset.filter_episodes(lambda episode: len(episode) >= 5)
    buf = from_minari(longer, "episodes")
    assert buf.episode_lengths().tolist() == [6, 7]


@pytest.mark.parametrize("kind", ["transitions", "episodes"])
def test_reading_with_h5py_equals_minaris_own_iteration(goal_dataset, monkeypatch, kind):
    import xreplay.datasets.minari as module
    from xreplay.datasets._minari_sources import IteratedEpisodes

    fast = from_minari("goals-v0", kind)
    monkeypatch.setattr(module, "_episode_source", lambda dataset, obs, act: IteratedEpisodes(dataset))
    slow = from_minari("goals-v0", kind)
    if kind == "transitions":
        a, b = fast.gather(np.arange(len(fast))), slow.gather(np.arange(len(slow)))
    else:
        a, b = fast.get(np.arange(len(fast))), slow.get(np.arange(len(slow)))
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_field_names_and_capacity(box_dataset):
    fields = MinariFields(
        observation="o", action="a", reward="r", terminated="done", truncated=None, next_observation="o2"
    )
    buf = from_minari("box-v0", fields=fields, capacity=10, seed=3)
    assert sorted(buf.storage.specs) == ["a", "done", "o", "o2", "r"]
    assert len(buf) == 10  # the last 10 steps of 14


def test_into_an_existing_buffer(box_dataset):
    target = TransitionBuffer(100, next_obs_from="obs")
    from_minari("box-v0", buffer=target)
    from_minari("box-v0", buffer=target)
    assert len(target) == 28 and target.next_obs_fields == ("next_obs",)


# -- bad input -------------------------------------------------------------------------------------


def test_given_space_mismatch_names_the_field(box_dataset):
    with pytest.raises(DatasetMismatchError, match=r"observation field '\(root\)': expected shape \(4,\)") as info:
        from_minari("box-v0", observation_space=gym.spaces.Box(0, 1, (4,), np.float32))
    assert "received shape (3,)" in str(info.value)
    with pytest.raises(DatasetMismatchError, match=r"action fields: expected \['goal'\]"):
        from_minari("box-v0", action_space=gym.spaces.Dict({"goal": gym.spaces.Discrete(4)}))


def test_buffer_with_other_spaces_is_refused_and_unchanged(box_dataset, goal_dataset):
    target = from_minari("goals-v0")
    before = buffer_state(target)
    with pytest.raises(DatasetMismatchError, match="the buffer's"):
        from_minari("box-v0", buffer=target)
    assert_unchanged(target, before)


def test_episodes_too_long_for_the_buffer_are_refused(box_dataset, goal_dataset):
    target = from_minari("goals-v0", "episodes")  # episodes of up to 7 steps
    target_box = EpisodeBuffer(from_minari("box-v0", "episodes").scheme, 10, 5)
    before = buffer_state(target_box)
    with pytest.raises(DatasetMismatchError, match="up to 7 steps .* expected at most max_seq_length=5"):
        from_minari("box-v0", "episodes", buffer=target_box)
    assert_unchanged(target_box, before)
    with pytest.raises(DatasetMismatchError, match="fills an EpisodeBuffer"):
        from_minari("box-v0", "episodes", buffer=TransitionBuffer(4))
    assert len(target) == 2


def _edit_episode(local_datasets, dataset_id, edit):
    with h5py.File(local_datasets / dataset_id / "data" / "main_data.hdf5", "r+") as f:
        edit(f)


def test_episode_missing_a_field(box_dataset, local_datasets):
    _edit_episode(local_datasets, "box-v0", lambda f: f.__delitem__("episode_1/actions"))
    with pytest.raises(DatasetFieldMissingError, match=r"episode 1 has no dataset 'actions' \(expected shape \(3,\)\)"):
        from_minari("box-v0")


def test_episode_missing_its_rewards(box_dataset, local_datasets):
    _edit_episode(local_datasets, "box-v0", lambda f: f.__delitem__("episode_2/rewards"))
    target = TransitionBuffer(100)
    with pytest.raises(DatasetFieldMissingError, match="episode 2 has no dataset 'rewards'"):
        from_minari("box-v0", buffer=target)
    assert len(target) == 0


def test_observations_of_the_wrong_length(box_dataset, local_datasets):
    def cut(f):
        del f["episode_0/observations"]
        f["episode_0/observations"] = np.zeros((5, 3), np.float32)  # 5 steps need 6 observations

    _edit_episode(local_datasets, "box-v0", cut)
    target = TransitionBuffer(100, seed=0)
    with pytest.raises(DatasetCorruptError, match=r"'observations': expected shape \(6, 3\), received \(5, 3\)"):
        from_minari("box-v0", buffer=target)
    assert len(target) == 0


def test_truncated_data_file(box_dataset, local_datasets):
    path = local_datasets / "box-v0" / "data" / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetCorruptError, match="cannot be opened as HDF5"):
        from_minari("box-v0")


@pytest.mark.parametrize(
    "source, message",
    [
        pytest.param("nothing-v0", "no local Minari dataset 'nothing-v0'", id="unknown_id"),
        pytest.param("folder", "holds no Minari dataset", id="empty_folder"),
    ],
)
def test_no_dataset(tmp_path, source, message):
    if source == "folder":
        (tmp_path / "folder").mkdir()
        source = tmp_path / "folder"
    with pytest.raises(DatasetError, match=message):
        from_minari(source)


def test_unsupported_space(box_dataset, monkeypatch):
    dataset, _episodes = box_dataset
    monkeypatch.setattr(type(dataset), "observation_space", property(lambda self: gym.spaces.Text(5)))
    with pytest.raises(DatasetMismatchError, match="observation space Text .* is not supported"):
        from_minari(dataset)


def test_unknown_kind(box_dataset):
    with pytest.raises(ValueError, match="kind must be 'transitions' or 'episodes'"):
        from_minari("box-v0", "steps")


def test_missing_minari_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ImportError, match=r"pip install 'xreplay\[datasets\]'"):
        from_minari("box-v0")
