"""Round trips, incremental saves and the on-disk format of checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xreplay
from tests.persistence.persistence_helpers import episodes, filled_buffer, same_buffer
from xreplay import EpisodeBuffer, Field, Scheme
from xreplay.persistence import FORMAT_VERSION, MAX_DELTAS, load, save, verify


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
def test_round_trip_restores_rows_lengths_cursor_and_rng(tmp_path, mmap, row_order):
    buffer = filled_buffer(row_order=row_order)
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", mmap=mmap, kind=EpisodeBuffer)
    assert same_buffer(buffer, loaded)
    assert dict(loaded.scheme) == dict(buffer.scheme)


def test_metadata_names_version_kind_and_one_file_per_array(tmp_path):
    save(filled_buffer(), tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "episode_buffer"
    assert set(meta["arrays"]) == {"rows", "lengths"}
    rows = meta["arrays"]["rows"]
    assert rows["file"] == "rows.g000001.npy" and rows["nbytes"] == np.prod(rows["shape"])
    assert (tmp_path / "ckpt" / rows["file"]).stat().st_size == 4096 + rows["nbytes"]  # page-sized .npy header
    assert meta["state"]["writer"] == {"capacity": 16, "cursor": 10, "size": 10, "writes": 10}
    assert meta["state"]["rng"]["bit_generator"] == "PCG64"


def test_second_save_writes_only_new_slots(tmp_path, row_order):
    buffer = filled_buffer(capacity=40, n=10, row_order=row_order)
    full = xreplay.save(buffer, tmp_path / "ckpt")
    buffer.add(episodes(3, 1))
    delta = xreplay.save(buffer, tmp_path / "ckpt")
    row_bytes = buffer.storage.layout.row_bytes
    assert not full.incremental and delta.incremental
    assert delta.bytes_written == 3 * row_bytes + 3 * 4  # three rows and three int32 lengths
    assert same_buffer(buffer, xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_delta_across_the_ring_end_wraps(tmp_path, row_order):
    buffer = filled_buffer(capacity=40, n=38, row_order=row_order)
    xreplay.save(buffer, tmp_path / "ckpt")
    buffer.add(episodes(4, 2))  # slots 38, 39, 0, 1
    assert xreplay.save(buffer, tmp_path / "ckpt").incremental
    meta = json.loads((tmp_path / "ckpt" / "metadata.json").read_text())
    assert meta["arrays"]["rows"]["deltas"][0]["ranges"] == [[38, 40], [0, 2]]
    assert same_buffer(buffer, xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_deltas_are_compacted_into_a_full_save(tmp_path):
    buffer = filled_buffer(capacity=4 * MAX_DELTAS, n=1)
    xreplay.save(buffer, tmp_path / "ckpt")
    reports = []
    for i in range(MAX_DELTAS + 1):
        buffer.add(episodes(1, i))
        reports.append(xreplay.save(buffer, tmp_path / "ckpt"))
    assert all(r.incremental for r in reports[:MAX_DELTAS]) and not reports[-1].incremental
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == sorted(["metadata.json", f"rows.g{MAX_DELTAS + 2:06d}.npy", f"lengths.g{MAX_DELTAS + 2:06d}.npy"])
    assert same_buffer(buffer, xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_save_after_load_from_the_same_path_is_incremental(tmp_path):
    xreplay.save(filled_buffer(capacity=40), tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer)
    loaded.add(episodes(2, 5))
    assert xreplay.save(loaded, tmp_path / "ckpt").incremental
    assert same_buffer(loaded, xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_another_buffer_saving_to_the_path_forces_a_full_save(tmp_path):
    a, b = filled_buffer(capacity=40, seed=0), filled_buffer(capacity=40, seed=1)
    xreplay.save(a, tmp_path / "ckpt")
    xreplay.save(b, tmp_path / "ckpt")
    a.add(episodes(1, 9))
    assert not xreplay.save(a, tmp_path / "ckpt").incremental
    assert same_buffer(a, xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_widened_column_forces_a_full_save(tmp_path, row_order):
    buffer = filled_buffer(capacity=40, row_order=row_order)
    xreplay.save(buffer, tmp_path / "ckpt")
    buffer.add(episodes(1, 3))
    buffer.storage.relayout({"actions": torch.int16})  # what an "auto" column does when a wider value arrives
    assert not xreplay.save(buffer, tmp_path / "ckpt").incremental
    loaded = xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer)
    assert loaded.storage.layout.overrides == {"actions": torch.int16}
    assert same_buffer(buffer, loaded)


def test_mmap_load_is_copy_on_write(tmp_path, row_order):
    xreplay.save(filled_buffer(row_order=row_order), tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", mmap=True, kind=EpisodeBuffer)
    loaded.add(episodes(6, 7))  # writes into the mapped rows and lengths
    verify(tmp_path / "ckpt")  # the files are unchanged
    assert same_buffer(filled_buffer(row_order=row_order), xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer))


def test_loaded_buffer_samples_like_the_original(tmp_path, row_order):
    buffer = filled_buffer(row_order=row_order)
    xreplay.save(buffer, tmp_path / "ckpt")
    expected = buffer.sample(4, truncate=True)
    got = xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer).sample(4, truncate=True)
    assert torch.equal(expected.indices, got.indices)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_empty_buffer_round_trips(tmp_path):
    buffer = filled_buffer(n=0)
    xreplay.save(buffer, tmp_path / "ckpt")
    for mmap in (False, True):
        assert len(xreplay.load(tmp_path / "ckpt", mmap=mmap, kind=EpisodeBuffer)) == 0


def test_save_into_an_empty_directory(tmp_path):
    (tmp_path / "ckpt").mkdir()
    xreplay.save(filled_buffer(), tmp_path / "ckpt")
    assert len(load(tmp_path / "ckpt")) == 10


def test_load_on_another_device_option_keeps_cpu(tmp_path):
    xreplay.save(filled_buffer(), tmp_path / "ckpt")
    assert xreplay.load(tmp_path / "ckpt", device="cpu", kind=EpisodeBuffer).device == torch.device("cpu")


@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), min_size=1, max_size=8))
def test_any_sequence_of_adds_and_saves_reloads_exactly(tmp_path_factory, row_order, steps):
    path = tmp_path_factory.mktemp("ckpt") / "c"
    buffer = filled_buffer(capacity=12, n=0, row_order=row_order)
    for i, (n, reload) in enumerate(steps):
        if n:
            buffer.add(episodes(n, i))
        xreplay.save(buffer, path)
        if reload:
            buffer = xreplay.load(path, mmap=bool(i % 2), kind=EpisodeBuffer)
    assert same_buffer(buffer, xreplay.load(path, kind=EpisodeBuffer))
    verify(path)


def test_update_on_a_saved_pymarl_buffer_makes_the_next_save_full(tmp_path):
    from xreplay.compat.pymarl import EpisodeBatch, ReplayBuffer

    scheme = {"reward": {"vshape": (1,)}}
    buf = ReplayBuffer(scheme, {}, 4, 3)
    ep = EpisodeBatch(scheme, {}, 2, 3)
    ep.update({"reward": [[[1.0]] * 3] * 2})
    buf.insert_episode_batch(ep)
    path = tmp_path / "ckpt"
    buf.save(path)
    buf.update({"reward": [[7.0]]}, bs=0, ts=0)
    buf.insert_episode_batch(ep)
    report = buf.save(path)
    assert not report.incremental
    assert ReplayBuffer.load(path)["reward"][0, 0, 0].item() == 7.0


def test_subclass_without_its_own_adapter_is_refused():
    import pytest

    from xreplay.compat.pymarl import ReplayBuffer
    from xreplay.errors import CheckpointError
    from xreplay.persistence import save

    class Custom(ReplayBuffer):
        pass

    with pytest.raises(CheckpointError, match="exactly this class"):
        save(Custom({"reward": {"vshape": (1,)}}, {}, 2, 2), "/nonexistent/never-written")


def test_prioritized_episode_buffer_resumes_exactly(tmp_path):
    buffer = EpisodeBuffer(Scheme({"reward": Field((1,))}), capacity=8, max_seq_length=3, seed=0, sampler="prioritized")
    buffer.add({"reward": torch.arange(15.0).reshape(5, 3, 1)})
    sample = buffer.sample(4)
    buffer.update_priorities(sample, [0.5, 4.0, 1.0, 2.0])
    xreplay.save(buffer, tmp_path / "ckpt")
    loaded = xreplay.load(tmp_path / "ckpt", kind=EpisodeBuffer)
    assert type(loaded.sampler) is type(buffer.sampler)
    a, b = buffer.sample(16), loaded.sample(16)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
    assert np.array_equal(loaded.sampler.priorities(np.arange(5)), buffer.sampler.priorities(np.arange(5)))
