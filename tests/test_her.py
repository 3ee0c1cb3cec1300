"""HindsightSampler: goals relabelled at sample time, per strategy and ratio, from the buffer's generator."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from xreplay import AUTO, EpisodeBuffer, Field, OneHot, Scheme
from xreplay.errors import FieldShapeError, FieldValueError, InsufficientDataError, UnknownFieldError
from xreplay.her import GoalFields, HindsightSampler, goal_scheme

GOAL = 3


def reward_fn(achieved, desired, info):
    return (achieved == desired).all(axis=-1).astype(np.float32) - 1.0


def goal_buffer(lengths=(9, 4, 6, 2, 9), seed=0, capacity=8, scheme=None, row_order="field") -> EpisodeBuffer:
    """Episodes whose achieved goal at step s of episode e is (e, s, e + s); the desired goal is (-1, -1, -1)."""
    scheme = scheme or Scheme(
        {
            "obs/observation": Field((2,)),
            "obs/achieved_goal": Field((GOAL,)),
            "obs/desired_goal": Field((GOAL,)),
            "action": Field((), torch.int64),
            "reward": Field(()),
            "terminated": Field((), torch.bool),
            "truncated": Field((), torch.bool),
        }
    )
    buf = EpisodeBuffer(scheme, capacity, 10, seed=seed, row_order=row_order)
    n = len(lengths)
    episode = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 10)
    step = torch.arange(10, dtype=torch.float32)[None, :].expand(n, 10)
    achieved = torch.stack([episode, step, episode + step], -1)
    buf.add(
        {
            "obs/observation": torch.stack([step, -step], -1),
            "obs/achieved_goal": achieved,
            "obs/desired_goal": torch.full((n, 10, GOAL), -1.0),
            "action": (episode * 10 + step).long(),
            "reward": torch.full((n, 10), -1.0),
            "terminated": torch.zeros(n, 10, dtype=torch.bool),
            "truncated": step == torch.tensor(lengths)[:, None] - 2,
        },
        lengths=list(lengths),
    )
    return buf


@pytest.mark.parametrize(
    "strategy, low, high",
    [
        pytest.param("future", lambda t, last: t + 1, lambda t, last: last, id="future"),
        pytest.param("final", lambda t, last: last, lambda t, last: last, id="final"),
        pytest.param("episode", lambda t, last: np.ones_like(t), lambda t, last: last, id="episode"),
    ],
)
def test_relabelled_goals_come_from_the_strategy(strategy, low, high, row_order):
    buf = goal_buffer(row_order=row_order)
    batch = HindsightSampler(buf, reward_fn, strategy, relabel_ratio=1.0).sample(4000)
    last = buf.episode_lengths()[batch.indices] - 1  # step of the final observation
    goals, t = batch.goal_steps, batch.steps
    assert batch.relabelled.all()
    assert (goals >= low(t, last)).all() and (goals <= high(t, last)).all()
    assert set(goals.tolist()) >= {1, 8} if strategy != "final" else set(goals.tolist()) == {1, 3, 5, 8}
    want = torch.from_numpy(np.stack([batch.indices, goals, batch.indices + goals], -1)).float()
    assert torch.equal(batch["obs/desired_goal"], want) and torch.equal(batch["next_obs/desired_goal"], want)


def test_rewards_are_recomputed_for_relabelled_transitions_only(row_order):
    buf = goal_buffer(row_order=row_order)
    batch = HindsightSampler(buf, reward_fn, "future", relabel_ratio=0.5).sample(4000)
    relabelled = torch.from_numpy(batch.relabelled)
    hit = (batch["next_obs/achieved_goal"] == batch["obs/desired_goal"]).all(-1)
    assert torch.equal(batch["reward"][relabelled], hit[relabelled].float() - 1)
    assert (batch["reward"][~relabelled] == -1).all() and (batch["obs/desired_goal"][~relabelled] == -1).all()
    assert hit[relabelled].any() and (batch.goal_steps[~batch.relabelled] == -1).all()


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.8, 1.0])
def test_relabel_ratio(ratio, row_order):
    buf = goal_buffer(row_order=row_order)
    batch = HindsightSampler(buf, reward_fn, relabel_ratio=ratio).sample(20_000)
    assert abs(batch.relabelled.mean() - ratio) < 0.015


def test_transitions_are_uniform_over_all_stored_steps(row_order):
    lengths = (9, 4, 6, 2, 9)
    buf = goal_buffer(lengths, row_order=row_order)
    batch = HindsightSampler(buf, reward_fn, relabel_ratio=0.0).sample(60_000)
    counts = np.bincount(batch.indices, minlength=5) / 60_000
    expected = (np.array(lengths) - 1) / sum(length - 1 for length in lengths)
    np.testing.assert_allclose(counts, expected, atol=0.01)
    assert (batch.steps < buf.episode_lengths()[batch.indices] - 1).all()
    assert torch.equal(batch["action"], torch.from_numpy(batch.indices * 10 + batch.steps))  # step t's own action
    assert torch.equal(batch["next_obs/observation"][:, 0], batch["obs/observation"][:, 0] + 1)


def test_nothing_in_storage_changes(row_order):
    buf = goal_buffer(row_order=row_order)
    rows = buf.storage.rows.clone()
    HindsightSampler(buf, reward_fn, relabel_ratio=1.0).sample(512)
    assert torch.equal(buf.storage.rows, rows)


def test_draws_come_from_the_buffers_generator(row_order):
    a = HindsightSampler(goal_buffer(seed=7, row_order=row_order), reward_fn).sample(64)
    b = HindsightSampler(goal_buffer(seed=7, row_order=row_order), reward_fn).sample(64)
    c = HindsightSampler(goal_buffer(seed=8, row_order=row_order), reward_fn).sample(64)
    for name in a:
        assert torch.equal(a[name], b[name])
    assert not np.array_equal(a.steps, c.steps)
    buf = goal_buffer(seed=7, row_order=row_order)
    state = buf.rng.bit_generator.state
    HindsightSampler(buf, reward_fn).sample(64)
    assert buf.rng.bit_generator.state != state


def test_new_episodes_are_sampled_after_a_write(row_order):
    buf = goal_buffer(lengths=(2, 2), row_order=row_order)
    her = HindsightSampler(buf, reward_fn, relabel_ratio=0.0)
    assert set(her.sample(200).indices.tolist()) == {0, 1}
    buf.add(
        {name: torch.zeros((1, 10, *buf.scheme.item_shape(name)), dtype=buf.scheme[name].dtype) for name in buf.scheme},
        lengths=[10],
    )
    assert np.bincount(her.sample(2000).indices).argmax() == 2  # 9 of its 11 transitions


@pytest.mark.parametrize(
    "result, error, message",
    [
        pytest.param(
            lambda a, d: np.zeros((len(a), 2)),
            FieldShapeError,
            r"compute_reward returned shape \(\d+, 2\) for \d+ relabelled transitions; expected \(\d+,\)",
            id="wrong_shape",
        ),
        pytest.param(lambda a, d: np.zeros(1), FieldShapeError, r"returned shape \(1,\)", id="one_value"),
        pytest.param(lambda a, d: np.array(["x"] * len(a)), FieldValueError, "expected numbers", id="strings"),
    ],
)
def test_bad_rewards_are_refused_and_change_nothing(result, error, message, row_order):
    buf = goal_buffer(seed=3, row_order=row_order)
    state = buf.rng.bit_generator.state
    with pytest.raises(error, match=message):
        HindsightSampler(buf, lambda a, d, info: result(a, d), relabel_ratio=1.0).sample(32)
    assert buf.rng.bit_generator.state == state  # the failed draw is undone
    good = HindsightSampler(buf, reward_fn).sample(32)
    fresh = HindsightSampler(goal_buffer(seed=3, row_order=row_order), reward_fn).sample(32)
    assert np.array_equal(good.steps, fresh.steps)


def test_rewards_with_an_item_dimension(row_order):
    scheme = Scheme({"obs/achieved_goal": Field((2,)), "obs/desired_goal": Field((2,)), "reward": Field((1,))})
    buf = EpisodeBuffer(scheme, 2, 4, seed=0, row_order=row_order)
    buf.add(
        {
            "obs/achieved_goal": torch.ones(1, 4, 2),
            "obs/desired_goal": torch.zeros(1, 4, 2),
            "reward": -torch.ones(1, 4, 1),
        }
    )
    batch = HindsightSampler(buf, reward_fn, relabel_ratio=1.0).sample(5)
    assert batch["reward"].shape == (5, 1) and (batch["reward"] == 0).all()


def test_info_fields_are_passed_to_compute_reward(row_order):
    scheme = Scheme(
        {"obs/achieved_goal": Field((1,)), "obs/desired_goal": Field((1,)), "reward": Field(()), "weight": Field(())}
    )
    buf = EpisodeBuffer(scheme, 2, 4, seed=0, row_order=row_order)
    buf.add(
        {
            "obs/achieved_goal": torch.zeros(1, 4, 1),
            "obs/desired_goal": torch.ones(1, 4, 1),
            "reward": torch.zeros(1, 4),
            "weight": torch.tensor([[1.0, 2.0, 3.0, 0.0]]),
        }
    )
    seen = {}

    def weighted(achieved, desired, info):
        seen.update(info)
        return info["weight"] * 10

    batch = HindsightSampler(buf, weighted, relabel_ratio=1.0, goal_fields=GoalFields(info=["weight"])).sample(6)
    assert set(seen) == {"weight"} and torch.equal(batch["reward"], batch["weight"] * 10)


def test_compact_storage_and_derived_fields_come_back_in_declared_dtypes(row_order):
    scheme = Scheme(
        {
            "obs/achieved_goal": Field((2,), torch.int64, storage_dtype=AUTO),
            "obs/desired_goal": Field((2,), torch.int64, storage_dtype=AUTO),
            "action": Field((1,), torch.int64, storage_dtype=AUTO),
            "action_onehot": Field((3,), derived=OneHot("action", 3)),
            "reward": Field(()),
            "start": Field((), torch.int64, per_step=False),
        }
    )
    buf = EpisodeBuffer(scheme, 2, 5, seed=0, row_order=row_order)
    achieved = torch.tensor([[[0, 0], [1, 300], [2, 600], [3, 900], [4, 1200]]])  # needs int16
    buf.add(
        {
            "obs/achieved_goal": achieved,
            "obs/desired_goal": torch.zeros(1, 5, 2, dtype=torch.int64),
            "action": torch.tensor([[[0], [1], [2], [0], [1]]]),
            "reward": torch.zeros(1, 5),
            "start": torch.tensor([7]),
        }
    )
    assert buf.storage.layout.columns["obs/desired_goal"].dtype == torch.bool  # stored far narrower
    batch = HindsightSampler(buf, reward_fn, "final", relabel_ratio=1.0).sample(8)
    assert batch["obs/desired_goal"].dtype == torch.int64
    assert (batch["obs/desired_goal"] == torch.tensor([4, 1200])).all()
    assert torch.equal(batch["action_onehot"].argmax(1), batch["action"][:, 0])
    assert batch["start"].tolist() == [7] * 8


def test_gymnasium_dict_observations_through_the_episode_writer(row_order):
    gym = pytest.importorskip("gymnasium")
    binary = gym.spaces.MultiBinary(4)
    space = gym.spaces.Dict({"observation": binary, "achieved_goal": binary, "desired_goal": binary})
    buf = EpisodeBuffer(goal_scheme(space, gym.spaces.Discrete(4)), 4, 5, seed=0, row_order=row_order)
    writer = buf.episode_writer()
    state, goal = np.zeros(4, np.int8), np.ones(4, np.int8)
    for t in range(3):
        obs = {"observation": state.copy(), "achieved_goal": state.copy(), "desired_goal": goal}
        state[t] = 1
        writer.append(
            {
                **{f"obs/{k}": v for k, v in obs.items()},
                "action": t,
                "reward": -1.0,
                "terminated": False,
                "truncated": t == 2,
            }
        )
    writer.end({"obs/observation": state, "obs/achieved_goal": state, "obs/desired_goal": goal})
    batch = HindsightSampler(buf, reward_fn, "final", relabel_ratio=1.0).sample(20)
    assert sorted(set(batch.steps.tolist())) == [0, 1, 2]
    assert (batch["obs/desired_goal"] == torch.tensor([1, 1, 1, 0], dtype=torch.int8)).all()
    assert torch.equal(batch["reward"] == 0, torch.from_numpy(batch.steps == 2))


def test_episodes_from_minari_are_ready_for_relabelling(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    gym = pytest.importorskip("gymnasium")
    from tests.datasets.minari_data import goal_episodes, goal_space, make_dataset
    from xreplay.datasets import from_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episodes = goal_episodes(np.random.default_rng(0), lengths=(4, 6))
    make_dataset(minari, gym, "goals-v0", episodes, goal_space(gym), gym.spaces.Discrete(5))
    buf = from_minari("goals-v0", "episodes", seed=0)
    batch = HindsightSampler(buf, reward_fn, "final").sample(64)
    final = torch.stack([torch.from_numpy(e["observations"]["achieved_goal"][-1]) for e in episodes])
    assert torch.equal(batch["obs/desired_goal"][batch.relabelled], final[batch.indices[batch.relabelled]])


@pytest.mark.parametrize(
    "options, error, message",
    [
        pytest.param({"strategy": "past"}, ValueError, "strategy must be one of", id="strategy"),
        pytest.param({"relabel_ratio": 1.5}, ValueError, r"relabel_ratio must lie in \[0, 1\]", id="ratio"),
        pytest.param(
            {"goal_fields": GoalFields(achieved_goal="reached")},
            UnknownFieldError,
            "'obs/reached': expected a stored per-step",
            id="unknown_goal",
        ),
        pytest.param({"goal_fields": GoalFields(info=["missing"])}, UnknownFieldError, "'missing'", id="unknown_info"),
        pytest.param(
            {"goal_fields": GoalFields(desired_goal="observation")},
            FieldShapeError,
            r"'obs/observation': expected the shape of 'obs/achieved_goal' \(3,\), received \(2,\)",
            id="goal_shapes",
        ),
    ],
)
def test_bad_settings(options, error, message):
    with pytest.raises(error, match=message):
        HindsightSampler(goal_buffer(), reward_fn, **options)


def test_empty_buffer(row_order):
    buf = goal_buffer(lengths=(1, 1), row_order=row_order)  # observations only, no transition
    her = HindsightSampler(buf, reward_fn)
    assert not her.can_sample(1) and her.can_sample(0)
    with pytest.raises(InsufficientDataError, match="holds no transition"):
        her.sample(4)


def test_bitflip_example_runs_at_smoke_size(capsys):
    pytest.importorskip("gymnasium")
    path = pathlib.Path(__file__).parents[1] / "examples" / "her_bitflip.py"
    spec = importlib.util.spec_from_file_location("her_bitflip", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    curves = module.main(["--smoke"])
    assert set(curves) == {"with HER", "without HER"} and all(len(c) == 2 for c in curves.values())
    assert "with HER" in capsys.readouterr().out


def test_the_torch_gather_path_gives_the_numpy_paths_batches(row_order):
    """Storages without numpy views (CUDA, bfloat16 fields) gather with torch; the batches are the same."""
    numpy_path = HindsightSampler(goal_buffer(seed=5, row_order=row_order), reward_fn, relabel_ratio=0.6)
    torch_path = HindsightSampler(goal_buffer(seed=5, row_order=row_order), reward_fn, relabel_ratio=0.6)
    torch_path._numpy = False  # what a CUDA storage gets
    a, b = numpy_path.sample(300), torch_path.sample(300)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_samples_follow_storage_widened_after_a_sample(row_order):
    goals = {f"obs/{k}": Field((1,), torch.int64, storage_dtype=AUTO) for k in ("achieved_goal", "desired_goal")}
    buf = EpisodeBuffer(Scheme({**goals, "reward": Field(())}), 2, 3, seed=0, row_order=row_order)
    steps = torch.tensor([[[0], [1], [2]]])
    buf.add({"obs/achieved_goal": steps, "obs/desired_goal": steps, "reward": torch.zeros(1, 3)})
    her = HindsightSampler(buf, reward_fn, "final", relabel_ratio=0.0)
    assert set(her.sample(16)["obs/achieved_goal"].flatten().tolist()) <= {0, 1}
    narrow = buf.storage.layout.columns["obs/achieved_goal"].dtype
    wide = steps * 1000  # no longer fits the narrow storage: the rows are reallocated wider
    buf.add({"obs/achieved_goal": wide, "obs/desired_goal": wide, "reward": torch.zeros(1, 3)})
    assert buf.storage.layout.columns["obs/achieved_goal"].dtype != narrow
    seen = her.sample(64)
    assert set(seen["obs/achieved_goal"].flatten().tolist()) == {0, 1, 1000}
    second = torch.from_numpy(seen.indices == 1)
    assert torch.equal(seen["next_obs/achieved_goal"][second], seen["obs/achieved_goal"][second] + 1000)


@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_both_row_orders_give_the_same_batches(strategy):
    """A step-major buffer gathers each transition as one record; the batches are those of the default rows."""
    field = HindsightSampler(goal_buffer(seed=4), reward_fn, strategy, relabel_ratio=0.7)
    step = HindsightSampler(goal_buffer(seed=4, row_order="step"), reward_fn, strategy, relabel_ratio=0.7)
    assert step._plan is None and step.buffer.storage.layout.order == "step"
    for _ in range(3):
        a, b = field.sample(257), step.sample(257)
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert step._plan is not None and step._plan[1].block is not None  # the step-major gather was used


def test_a_step_major_memmap_storage_gives_the_batches_of_memory(tmp_path):
    from xreplay.storage import MemmapStorage

    memory = goal_buffer(seed=6, row_order="step")
    storage = MemmapStorage(memory.scheme, memory.capacity, 10, tmp_path / "m", row_order="step")
    mapped = EpisodeBuffer(memory.scheme, memory.capacity, 10, seed=6, storage=storage)
    mapped.load_state_dict({**memory.state_dict(), "storage": memory.storage.state_dict()})
    her = HindsightSampler(mapped, reward_fn, relabel_ratio=0.8)
    a, b = HindsightSampler(memory, reward_fn, relabel_ratio=0.8).sample(300), her.sample(300)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert her._plan is not None and her._plan[1].block is not None  # one record per transition of the mapped rows
