"""Native buffers under threads: writes, samples and priority updates at once lose, duplicate and tear nothing."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
import torch

from xreplay import PrioritizedSampler, SequenceSampler, TransitionBuffer, UniformSampler

WRITERS, CHUNKS, CHUNK = 4, 60, 96


@pytest.fixture(autouse=True)
def switch_often():
    """Make threads switch every few microseconds, so that a write torn between two fields would be caught."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)
WIDTH = 64  # floats per observation: a chunk (24 KB) is copied outside the lock, field after field


def chunk(writer: int, index: int, size: int = CHUNK) -> dict[str, np.ndarray]:
    """Items whose every field spells the same tag, so a torn item shows as fields that disagree."""
    tag = writer * 1_000_000 + index * size + np.arange(size, dtype=np.int64)
    return {
        "tag": tag,
        "obs": np.repeat(tag[:, None].astype(np.float32), WIDTH, axis=1),
        "act": (tag % 7).astype(np.int32),
        "rew": tag.astype(np.float64),
        "terminated": np.zeros(size, np.uint8),
        "truncated": np.zeros(size, np.uint8),
    }


def check_whole(batch: dict) -> None:
    """Fail if any sampled item mixes two writes."""
    tag = batch["tag"].numpy()
    assert (batch["obs"].numpy() == tag[..., None].astype(np.float32)).all()
    assert (batch["act"].numpy() == tag % 7).all()
    assert (batch["rew"].numpy() == tag).all()


def hammer(buffer: TransitionBuffer, prioritized: bool, seconds_cap: float = 60.0) -> list[BaseException]:
    """Run WRITERS writer threads (chunks and single adds), one sampler and one priority updater until writes end."""
    errors: list[BaseException] = []
    done = threading.Event()

    def write(writer: int) -> None:
        try:
            for index in range(CHUNKS):
                if index % 5 == 4:  # some single-item writes among the chunks
                    for item in range(CHUNK):
                        one = chunk(writer, index)
                        buffer.add({k: v[item] for k, v in one.items()})
                else:
                    buffer.extend(chunk(writer, index))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def sample() -> None:
        try:
            while not done.is_set():
                if len(buffer) >= 256:
                    batch = buffer.sample(256)
                    check_whole(batch)
                    if prioritized:
                        buffer.update_priorities(batch, np.abs(np.sin(batch["rew"].numpy())) + 0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    readers = [threading.Thread(target=sample) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(seconds_cap)
    done.set()
    for thread in readers:
        thread.join(seconds_cap)
    return errors


@pytest.mark.parametrize("sampler", ["uniform", "prioritized"])
def test_concurrent_writes_lose_and_duplicate_nothing_and_samples_are_never_torn(sampler: str) -> None:
    buffer = TransitionBuffer(WRITERS * CHUNKS * CHUNK, sampler=sampler, seed=0)
    errors = hammer(buffer, prioritized=sampler == "prioritized")
    assert errors == []
    stored = buffer.gather(np.arange(buffer.capacity))
    check_whole(stored)
    expected = np.concatenate([chunk(w, i)["tag"] for w in range(WRITERS) for i in range(CHUNKS)])
    assert len(buffer) == buffer.capacity
    assert np.array_equal(np.sort(stored["tag"].numpy()), np.sort(expected))  # none lost, none twice
    assert buffer.stats()["inserts"] == expected.size


@pytest.mark.parametrize(
    "sampler",
    [UniformSampler(1024), PrioritizedSampler(1024, alpha=0.6, beta=0.4)],
    ids=["uniform", "prioritized"],
)
def test_a_small_ring_overwritten_by_many_threads_never_shows_a_torn_item(sampler: object) -> None:
    buffer = TransitionBuffer(1024, sampler=sampler, seed=1)  # laps every few chunks: readers race overwrites
    errors = hammer(buffer, prioritized=isinstance(sampler, PrioritizedSampler))
    assert errors == []
    check_whole(buffer.gather(np.arange(buffer.capacity)))
    assert buffer.stats()["inserts"] == WRITERS * CHUNKS * CHUNK


def test_sequence_windows_sampled_during_writes_are_whole() -> None:
    buffer = TransitionBuffer(2048, sampler=SequenceSampler(8), seed=2)
    errors = hammer(buffer, prioritized=False)
    assert errors == []


def test_a_save_waits_for_copies_and_sees_a_consistent_buffer(tmp_path) -> None:
    import xreplay

    buffer = TransitionBuffer(WRITERS * CHUNKS * CHUNK, seed=3)
    buffer.extend(chunk(9, 0))
    saved: list[int] = []

    def save_often() -> None:
        for round_ in range(5):
            xreplay.save(buffer, tmp_path / f"ckpt{round_}")
            saved.append(round_)

    saver = threading.Thread(target=save_often)
    saver.start()
    errors = hammer(buffer, prioritized=False)
    saver.join(60)
    assert errors == [] and saved == list(range(5))
    for round_ in saved:
        restored = xreplay.load(tmp_path / f"ckpt{round_}")
        check_whole(restored.gather(np.arange(len(restored))))


def test_other_threads_write_sample_and_update_while_a_large_copy_is_under_way() -> None:
    buffer = TransitionBuffer(20_000, sampler="prioritized", seed=4)
    for index in range(150):
        buffer.extend(chunk(0, index))
    entered, release = threading.Event(), threading.Event()
    write = buffer.storage.write

    def slow_write(rows, values, items=None):  # the first copy stalls until the test lets it go
        if not entered.is_set():
            entered.set()
            release.wait(20)
        write(rows, values, items)

    buffer.storage.write = slow_write  # type: ignore[method-assign]
    copier = threading.Thread(target=buffer.extend, args=(chunk(1, 0),))  # 24 KB: copied outside the lock
    copier.start()
    assert entered.wait(20)
    done: list[object] = []

    def meanwhile() -> None:
        buffer.add({k: v[0] for k, v in chunk(2, 0).items()})
        batch = buffer.sample(8)
        check_whole(batch)
        buffer.update_priorities(batch, np.ones(8))
        done.append(batch)

    other = threading.Thread(target=meanwhile)
    other.start()
    other.join(10)
    finished_during_copy = bool(done)
    release.set()
    copier.join(20)
    other.join(20)
    assert finished_during_copy  # the copy held no lock the others needed
    assert len(buffer) == 150 * CHUNK + CHUNK + 1
    check_whole(buffer.gather(np.arange(len(buffer))))


def test_a_sample_draws_again_instead_of_waiting_for_slots_a_stalled_write_is_overwriting() -> None:
    buffer = TransitionBuffer(20_000, seed=5)
    for index in range(200):  # 19,200 stored: the stalled write below overwrites 1,000 of them
        buffer.extend(chunk(0, index))
    entered, release = threading.Event(), threading.Event()
    write = buffer.storage.write

    def stalled_write(rows, values, items=None):
        if not entered.is_set():
            entered.set()
            release.wait(20)
        write(rows, values, items)

    buffer.storage.write = stalled_write  # type: ignore[method-assign]
    copier = threading.Thread(target=buffer.extend, args=(chunk(1, 0, size=1_800),))  # laps onto slots 0..999
    copier.start()
    assert entered.wait(20)
    samples: list[dict] = []
    sampler = threading.Thread(target=lambda: samples.extend(buffer.sample(512) for _ in range(20)))
    sampler.start()
    sampler.join(10)
    finished_during_write = len(samples) == 20
    release.set()
    copier.join(20)
    sampler.join(20)
    assert finished_during_write
    for batch in samples:
        check_whole(batch)
        tags = batch["tag"].numpy()
        assert (tags < 1_000_000).all()  # nothing of the unfinished write
        busy = np.r_[19_200:20_000, 0:1_000]
        assert not np.isin(np.asarray(batch.indices), busy).any()  # drawn again, not waited for


EPISODE_T = 40


def episode_batch(writer: int, index: int, n: int = 4) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Episodes (uint8 actions narrowed by the scheme) whose every field spells the episode's tag; varied lengths."""
    tag = torch.arange(n, dtype=torch.float32) + writer * 100_000 + index * n
    fields = {
        "obs": tag[:, None, None].expand(n, EPISODE_T, 48).contiguous(),
        "reward": tag[:, None, None].expand(n, EPISODE_T, 1).contiguous(),
        "tag": tag[:, None].clone(),
    }
    return fields, torch.tensor([EPISODE_T - (index + k) % 9 for k in range(n)], dtype=torch.int32)


def whole_episodes(sample) -> None:
    """Fail if a sampled episode mixes two writes."""
    tag = sample["tag"][:, 0]
    assert (sample["obs"] == tag[:, None, None]).all()
    assert (sample["reward"] == tag[:, None, None]).all()


@pytest.mark.parametrize("sampler", ["uniform", "prioritized"])
@pytest.mark.parametrize("row_order", ["field", "step"])
def test_episode_buffer_under_threads_loses_nothing_and_never_returns_a_half_written_episode(
    sampler: str, row_order: str
) -> None:
    from xreplay import EpisodeBuffer
    from xreplay.scheme import Field, Scheme

    scheme = Scheme({"obs": Field((48,)), "reward": Field((1,)), "tag": Field((1,), per_step=False)})
    writers, batches = 3, 40
    big = EpisodeBuffer(scheme, writers * batches * 4, EPISODE_T, seed=0, sampler=sampler, row_order=row_order)
    # The small one is overwritten under the readers.
    small = EpisodeBuffer(scheme, 64, EPISODE_T, seed=1, sampler=sampler, row_order=row_order)
    for buffer in (big, small):
        errors: list[BaseException] = []
        done = threading.Event()

        def write(writer: int, buffer=buffer, errors=errors) -> None:
            try:
                for index in range(batches):
                    buffer.add(*episode_batch(writer, index))  # 4 x 40 x 50 floats = 32 KB: copied outside the lock
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)

        def sample(buffer=buffer, errors=errors, done=done) -> None:
            try:
                while not done.is_set():
                    if len(buffer) >= 8:
                        batch = buffer.sample(8)
                        whole_episodes(batch)
                        if sampler == "prioritized":
                            buffer.update_priorities(batch, np.ones(8))
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors.append(error)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        readers = [threading.Thread(target=sample) for _ in range(2)]
        for thread in threads + readers:
            thread.start()
        for thread in threads:
            thread.join(60)
        done.set()
        for thread in readers:
            thread.join(60)
        assert errors == []
        stored = buffer.get(range(len(buffer)))
        whole_episodes(stored)
        assert buffer.stats()["inserts"] == writers * batches * 4
    tags = big.get(range(len(big)))["tag"][:, 0].long().sort().values.tolist()
    assert tags == sorted(w * 100_000 + i for w in range(writers) for i in range(batches * 4))  # none lost or twice


def stall_first_read(buffer, entered: threading.Event, release: threading.Event, read: threading.Event | None = None):
    """Stop the first sample of ``buffer`` after its draw until ``release`` is set (``read``: set after its gather)."""
    gather, first = buffer._read, [True]

    def stalled(draw):
        if not first[0]:
            return gather(draw)
        first[0] = False
        entered.set()
        release.wait(20)
        fields = gather(draw)
        if read is not None:
            read.set()
        return fields

    buffer._read = stalled


def test_a_sample_whose_read_spans_a_load_state_dict_draws_again_and_is_whole() -> None:
    source = TransitionBuffer(64, seed=1)
    source.extend(chunk(1, 0, size=64))
    state = source.state_dict()
    buffer = TransitionBuffer(64, seed=0)
    buffer.extend(chunk(0, 0, size=64))
    storage, entered, release, read = buffer.storage, threading.Event(), threading.Event(), threading.Event()
    load_columns = storage.load_state_dict

    def load_one_column_then_let_the_reader_in(state):  # the sample gathers a half-loaded state
        name, value = next(iter(state["columns"].items()))
        storage.columns[name].copy_(torch.as_tensor(value))
        release.set()
        read.wait(20)
        load_columns(state)

    storage.load_state_dict = load_one_column_then_let_the_reader_in
    stall_first_read(buffer, entered, release, read)
    out: dict = {}
    reader = threading.Thread(target=lambda: out.setdefault("batch", buffer.sample(16)))
    reader.start()
    assert entered.wait(20)
    buffer.load_state_dict(state)
    reader.join(20)
    check_whole(out["batch"])
    assert (out["batch"]["tag"].numpy() >= 1_000_000).all()  # read after the load, not across it
    assert buffer.stats()["samples"] == 1 and buffer.stats()["sampled"] == 16


@pytest.mark.parametrize("refill", [True, False])
def test_a_clear_during_a_read_leaves_the_sample_counters_right(refill: bool) -> None:
    buffer = TransitionBuffer(64, seed=0)
    buffer.extend(chunk(0, 0, size=32))
    entered, release = threading.Event(), threading.Event()
    stall_first_read(buffer, entered, release)
    out: dict = {}

    def sample() -> None:
        try:
            out["batch"] = buffer.sample(4)
        except Exception as error:  # an empty buffer after the clear: the retry refuses to sample
            out["error"] = error

    reader = threading.Thread(target=sample)
    reader.start()
    assert entered.wait(20)
    buffer.clear()
    if refill:
        buffer.extend(chunk(1, 0, size=32))
    release.set()
    reader.join(20)
    stats = buffer.stats()
    if refill:
        check_whole(out["batch"])
        assert (out["batch"]["tag"].numpy() >= 1_000_000).all()
        assert (stats["samples"], stats["sampled"]) == (1, 4)
    else:
        assert type(out["error"]).__name__ == "InsufficientDataError"
        assert (stats["samples"], stats["sampled"]) == (0, 0)


def test_episode_samples_never_mix_two_loaded_states() -> None:
    from xreplay import EpisodeBuffer
    from xreplay.scheme import Field, Scheme

    scheme, capacity, steps = Scheme({"x": Field((16,))}), 128, 8
    states = []
    for value, length in ((1, 3), (2, 8)):
        source = EpisodeBuffer(scheme, capacity, steps, seed=value)
        source.add({"x": np.full((capacity, steps, 16), value, np.float32)}, lengths=np.full(capacity, length))
        states.append(source.state_dict())
    buffer = EpisodeBuffer(scheme, capacity, steps, seed=0)
    buffer.load_state_dict(states[0])
    done, mixed, samples = threading.Event(), [], [0]

    def load() -> None:
        index, deadline = 0, time.monotonic() + 30
        while samples[0] < 2_000 and time.monotonic() < deadline:
            buffer.load_state_dict(states[index % 2])
            index += 1
            time.sleep(0)  # let the sampler in: the lock is not fair
        done.set()

    def sample() -> None:
        while not done.is_set():
            batch = buffer.sample(16)
            samples[0] += 1
            values, lengths = batch["x"][:, 0, 0].to(torch.int64), batch.lengths
            mixed.extend((v, n) for v, n in zip(values.tolist(), lengths.tolist(), strict=True) if {1: 3, 2: 8}[v] != n)

    threads = [threading.Thread(target=load), threading.Thread(target=sample)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert samples[0] >= 2_000 and not mixed
