import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xreplay import (
    CapacityError,
    EpisodeBuffer,
    Field,
    FieldShapeError,
    FieldValueError,
    IndexOutOfRangeError,
    InsufficientDataError,
    OneHot,
    Scheme,
    UnknownFieldError,
)

T = 6


def marine_scheme(compact: bool) -> Scheme:
    narrow = {"storage_dtype": torch.uint8} if compact else {}
    binary = {"storage_dtype": torch.bool} if compact else {}
    return Scheme(
        {
            "state": Field((5,)),
            "obs": Field((3,), group="agents"),
            "actions": Field((1,), dtype=torch.long, group="agents", **narrow),
            "actions_onehot": Field((4,), group="agents", derived=OneHot("actions", 4)),
            "avail_actions": Field((4,), dtype=torch.int32, group="agents", **binary),
            "reward": Field((1,)),
            "terminated": Field((1,), dtype=torch.uint8, **binary),
            "seed": Field((), dtype=torch.long, per_step=False),
        },
        groups={"agents": 2},
    )


def episodes(n: int, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "state": torch.randn(n, t, 5, generator=g),
        "obs": torch.randn(n, t, 2, 3, generator=g),
        "actions": torch.randint(0, 4, (n, t, 2, 1), generator=g),
        "avail_actions": torch.randint(0, 2, (n, t, 2, 4), generator=g, dtype=torch.int32),
        "reward": torch.randn(n, t, 1, generator=g),
        "terminated": torch.randint(0, 2, (n, t, 1), generator=g, dtype=torch.uint8),
        "seed": torch.arange(n) + 100 * seed,
    }


def snapshot(buffer: EpisodeBuffer) -> tuple:
    return buffer.storage.rows.clone(), len(buffer), buffer.writer.cursor, buffer._lengths.clone()


@pytest.mark.parametrize("compact", [False, True], ids=["declared_dtypes", "compact"])
def test_sample_returns_declared_dtypes_and_written_values(compact, row_order):
    buffer = EpisodeBuffer(marine_scheme(compact), capacity=10, max_seq_length=T, seed=0, row_order=row_order)
    data = episodes(4, T)
    buffer.add(data, lengths=[6, 3, 5, 1])
    batch = buffer.get([2, 0])
    for name, value in data.items():
        assert batch[name].dtype == value.dtype
        assert torch.equal(batch[name], value[[2, 0]])
    expected = torch.nn.functional.one_hot(data["actions"][[2, 0]].squeeze(-1), 4).float()
    expected[0, 5:] = 0  # episode 2 has 5 steps: no one-hot past them
    assert torch.equal(batch["actions_onehot"], expected)
    assert batch["filled"][:, :, 0].tolist() == [[True] * 5 + [False], [True] * 6]


def test_compact_storage_is_smaller_and_bit_identical(row_order):
    plain = EpisodeBuffer(marine_scheme(False), capacity=8, max_seq_length=T, seed=3, row_order=row_order)
    compact = EpisodeBuffer(marine_scheme(True), capacity=8, max_seq_length=T, seed=3, row_order=row_order)
    for k in range(3):
        data = episodes(5, T - k, seed=k)
        plain.add(data)
        compact.add(data)
    assert compact.storage.nbytes < 0.8 * plain.storage.nbytes
    a, b = plain.sample(6), compact.sample(6)
    assert torch.equal(a.indices, b.indices)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_shorter_episodes_leave_no_stale_steps(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=1, max_seq_length=T, row_order=row_order)
    buffer.add(episodes(1, T))
    buffer.add(episodes(1, 2, seed=1))
    batch = buffer.get([0])
    assert torch.count_nonzero(batch["state"][:, 2:]) == 0
    assert batch.lengths.tolist() == [2]


def test_truncate_cuts_to_longest_sampled_episode(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=4, max_seq_length=T, seed=0, row_order=row_order)
    buffer.add(episodes(2, T), lengths=[2, 4])
    batch = buffer.sample(2, truncate=True)
    assert batch["obs"].shape == (2, 4, 2, 3) and batch.max_seq_length == 4
    assert batch["seed"].shape == (2,)


@given(st.lists(st.integers(1, 7), min_size=1, max_size=6))
def test_ring_keeps_the_most_recent_episodes(row_order, batch_sizes):
    buffer = EpisodeBuffer(marine_scheme(True), capacity=5, max_seq_length=2, seed=0, row_order=row_order)
    written = []
    for i, n in enumerate(batch_sizes):
        data = episodes(n, 2, seed=i)
        buffer.add(data)
        written += data["seed"].tolist()
    stored = sorted(buffer.get(np.arange(len(buffer)))["seed"].tolist())
    assert stored == sorted(written[-5:])


def test_same_seed_same_samples(row_order):
    a = EpisodeBuffer(marine_scheme(False), capacity=50, max_seq_length=T, seed=11, row_order=row_order)
    b = EpisodeBuffer(marine_scheme(False), capacity=50, max_seq_length=T, seed=11, row_order=row_order)
    for buf in (a, b):
        buf.add(episodes(40, T))
    assert a.sample(8).indices.tolist() == b.sample(8).indices.tolist()


def test_sample_with_replacement(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=4, max_seq_length=T, seed=0, row_order=row_order)
    buffer.add(episodes(2, T))
    assert buffer.sample(5, replace=True).batch_size == 5


BAD_WRITES = [
    pytest.param(
        lambda d: d.update(extra=torch.zeros(2, T)), UnknownFieldError, "unknown field 'extra'", id="unknown_key"
    ),
    pytest.param(lambda d: d.pop("reward"), UnknownFieldError, r"missing stored fields \['reward'\]", id="missing"),
    pytest.param(
        lambda d: d.update(actions_onehot=torch.zeros(2, T, 2, 4)),
        UnknownFieldError,
        "derived from 'actions'",
        id="derived_written",
    ),
    pytest.param(
        lambda d: d.update(obs=torch.zeros(2, T, 3, 3)),
        FieldShapeError,
        r"field 'obs': expected shape \(2, 6, 2, 3\), received \(2, 6, 3, 3\)",
        id="wrong_shape",
    ),
    pytest.param(
        lambda d: d["terminated"].__setitem__((0, 0, 0), 3),
        FieldValueError,
        r"field 'terminated': values span \[0, 3\].*torch.bool",
        id="overflows_storage",
    ),
    pytest.param(
        lambda d: d["avail_actions"].__setitem__((1, 2, 0, 0), 2),
        FieldValueError,
        "'avail_actions'",
        id="not_binary",
    ),
    pytest.param(
        lambda d: d.update(actions=d["actions"].float() + 0.5),
        FieldValueError,
        "non-integral",
        id="fractional_action",
    ),
]


@pytest.mark.parametrize(("corrupt", "error", "message"), BAD_WRITES)
def test_bad_write_raises_and_leaves_buffer_unchanged(corrupt, error, message, row_order):
    buffer = EpisodeBuffer(marine_scheme(True), capacity=3, max_seq_length=T, seed=0, row_order=row_order)
    buffer.add(episodes(2, T))
    before = snapshot(buffer)
    data = episodes(2, T, seed=5)
    corrupt(data)
    with pytest.raises(error, match=message):
        buffer.add(data)
    after = snapshot(buffer)
    assert torch.equal(before[0], after[0]) and before[1:3] == after[1:3] and torch.equal(before[3], after[3])


@pytest.mark.parametrize(
    ("lengths", "message"),
    [pytest.param([1], "expected 2 values", id="count"), pytest.param([1, 9], r"\[0, 6\]", id="range")],
)
def test_bad_lengths(lengths, message, row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=3, max_seq_length=T, row_order=row_order)
    with pytest.raises((FieldShapeError, FieldValueError), match=message):
        buffer.add(episodes(2, T), lengths=lengths)
    assert len(buffer) == 0


def test_too_many_steps(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=3, max_seq_length=T, row_order=row_order)
    with pytest.raises(FieldShapeError, match="7 steps but max_seq_length is 6"):
        buffer.add(episodes(1, T + 1))


def test_sampling_more_than_stored_names_both_numbers(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=80, max_seq_length=2, row_order=row_order)
    buffer.add(episodes(64, 2))
    with pytest.raises(InsufficientDataError, match="sample size 70 exceeds the 64 stored"):
        buffer.sample(70, replace=False)
    assert not buffer.can_sample(70) and buffer.can_sample(64)


def test_get_out_of_range_names_index_and_size(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=8, max_seq_length=2, row_order=row_order)
    buffer.add(episodes(3, 2))
    with pytest.raises(IndexOutOfRangeError, match="index 5 is outside the 3 stored"):
        buffer.get([0, 5])


def test_buffer_too_large_fails_before_allocating():
    with pytest.raises(CapacityError, match=r"needs [0-9,.]+ GiB on cpu, but this process may allocate at most"):
        EpisodeBuffer(marine_scheme(False), capacity=10**12, max_seq_length=61)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_storage_samples_on_device(row_order):
    buffer = EpisodeBuffer(
        marine_scheme(True), capacity=16, max_seq_length=T, device="cuda", seed=0, row_order=row_order
    )
    data = episodes(10, T)
    buffer.add(data)
    batch = buffer.sample(4)
    assert all(v.device.type == "cuda" for v in batch.values())
    assert torch.equal(batch["obs"].cpu(), data["obs"][batch.indices.cpu()])


def test_onehot_source_out_of_range_is_refused(row_order):
    buffer = EpisodeBuffer(marine_scheme(False), capacity=3, max_seq_length=T, row_order=row_order)
    data = episodes(1, T)
    data["actions"][0, 0, 0, 0] = 4
    with pytest.raises(FieldValueError, match=r"'actions': one-hot classes must lie in \[0, 4\)"):
        buffer.add(data)
    assert len(buffer) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_pin_memory_without_cuda_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="pin_memory=True .* no CUDA"):
        EpisodeBuffer(marine_scheme(False), capacity=2, max_seq_length=2, pin_memory=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_storage_samples_to_cuda(row_order):
    buffer = EpisodeBuffer(
        marine_scheme(True), capacity=4, max_seq_length=T, pin_memory=True, seed=0, row_order=row_order
    )
    buffer.add(episodes(2, T))
    assert buffer.storage.rows.is_pinned()
    assert buffer.sample(2).to("cuda", non_blocking=True)["obs"].device.type == "cuda"


def test_float_onehot_source_with_valid_classes_is_accepted(row_order):
    scheme = Scheme({"a": Field((1,)), "oh": Field((3,), derived=OneHot("a", 3))})
    buffer = EpisodeBuffer(scheme, capacity=2, max_seq_length=2, row_order=row_order)
    buffer.add({"a": torch.tensor([[[1.0], [2.0]]])})
    assert buffer.get([0])["oh"][0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_a_state_of_another_row_layout_is_refused_and_changes_nothing():
    from xreplay.errors import ArgumentError

    scheme = Scheme({"obs": Field((4,)), "won": Field((1,), per_step=False)})
    field_rows = EpisodeBuffer(scheme, capacity=4, max_seq_length=3, seed=0)
    field_rows.add({"obs": torch.arange(24.0).reshape(2, 3, 4), "won": torch.ones(2, 1)})
    step_rows = EpisodeBuffer(scheme, capacity=4, max_seq_length=3, seed=0, row_order="step")
    step_rows.add({"obs": torch.zeros(1, 3, 4), "won": torch.zeros(1, 1)})
    assert field_rows.storage.rows.shape == step_rows.storage.rows.shape  # same bytes, another meaning
    before = step_rows.storage.rows.clone()
    with pytest.raises(ArgumentError, match="layout"):
        step_rows.load_state_dict(field_rows.state_dict())
    assert torch.equal(step_rows.storage.rows, before) and len(step_rows) == 1
    twin = EpisodeBuffer(scheme, capacity=4, max_seq_length=3, seed=1)
    twin.load_state_dict(field_rows.state_dict())  # the same layout loads
    assert torch.equal(twin.get([0, 1])["obs"], field_rows.get([0, 1])["obs"])


def test_bfloat16_fields_are_written_and_read_on_the_cpu(row_order):
    scheme = Scheme({"x": Field((3,), dtype=torch.bfloat16), "r": Field((1,))})
    buffer = EpisodeBuffer(scheme, capacity=4, max_seq_length=5, seed=0, row_order=row_order)
    values = torch.arange(30, dtype=torch.bfloat16).reshape(2, 5, 3)
    buffer.add({"x": values, "r": torch.ones(2, 5, 1)}, lengths=[5, 2])
    got = buffer.get([0, 1])
    assert got["x"].dtype == torch.bfloat16 and torch.equal(got["x"][0], values[0])
    assert got["filled"][1].flatten().tolist() == [1, 1, 0, 0, 0]


@pytest.mark.parametrize("order", ["", 0, False, "diagonal"])
def test_an_unknown_row_order_is_refused_by_name_and_leaves_no_folder(tmp_path, order):
    from xreplay.errors import ArgumentError
    from xreplay.storage import MemmapStorage

    scheme = Scheme({"r": Field((1,))})
    with pytest.raises(ArgumentError, match="row order must be one of"):
        EpisodeBuffer(scheme, capacity=2, max_seq_length=3, row_order=order)
    with pytest.raises(ArgumentError, match="row order must be one of"):
        MemmapStorage(scheme, 2, 3, tmp_path / "rows", row_order=order)
    assert not (tmp_path / "rows").exists()
