import pytest
import torch

from xreplay import EpisodeBuffer, Field, FieldShapeError, FieldValueError, Scheme, UnknownFieldError


def make_buffer() -> EpisodeBuffer:
    scheme = Scheme(
        {
            "obs": Field((2,)),
            "actions": Field((1,), dtype=torch.long, storage_dtype=torch.uint8),
            "reward": Field((1,)),
            "episode_id": Field((), dtype=torch.long, per_step=False),
        }
    )
    return EpisodeBuffer(scheme, capacity=4, max_seq_length=4, seed=0)


def test_runner_pattern_counts_bootstrap_step():
    buffer = make_buffer()
    writer = buffer.episode_writer()
    for t in range(2):
        writer.append({"obs": [t, t], "actions": [t], "reward": [1.0], "episode_id": 7})
    writer.end({"obs": [9.0, 9.0]})
    batch = buffer.get([0])
    assert batch.lengths.tolist() == [3]
    assert batch["obs"][0, :, 0].tolist() == [0.0, 1.0, 9.0, 0.0]
    assert batch["reward"][0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert batch["episode_id"].tolist() == [7]
    assert writer.step == 0


def test_writer_resets_between_episodes():
    buffer = make_buffer()
    writer = buffer.episode_writer()
    writer.append({"obs": [1, 1], "actions": [1], "reward": [1.0]})
    writer.end()
    writer.append({"obs": [2, 2]})
    writer.end()
    assert buffer.get([1])["actions"].tolist() == [[[0], [0], [0], [0]]]


@pytest.mark.parametrize(
    ("step", "error"),
    [
        pytest.param({"nope": [1]}, UnknownFieldError, id="unknown"),
        pytest.param({"obs": [1, 2, 3]}, FieldShapeError, id="shape"),
        pytest.param({"actions": [256]}, FieldValueError, id="overflow"),
    ],
)
def test_bad_step_is_refused_before_staging(step, error):
    writer = make_buffer().episode_writer()
    with pytest.raises(error):
        writer.append(step)
    assert writer.step == 0


def test_episode_longer_than_limit_raises():
    writer = make_buffer().episode_writer()
    for _ in range(4):
        writer.append({"obs": [0, 0]})
    with pytest.raises(FieldShapeError, match="max_seq_length=4"):
        writer.append({"obs": [0, 0]})
