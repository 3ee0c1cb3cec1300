"""PyMARL's replay buffers under threads: runner threads insert while a learner samples; nothing lost or torn."""

from __future__ import annotations

import random
import threading

import numpy as np
import torch

from xreplay.compat.pymarl import EpisodeBatch, PrioritizedReplayBuffer, ReplayBuffer

SCHEME = {"state": {"vshape": (16,)}, "reward": {"vshape": (1,)}, "actions": {"vshape": (1,), "dtype": torch.long}}
T, RUNNERS, BATCHES, SIZE = 10, 3, 40, 4


def episodes(runner: int, index: int) -> EpisodeBatch:
    """A batch whose every field of an episode spells the same tag (runner, index, episode)."""
    batch = EpisodeBatch(SCHEME, {}, SIZE, T + 1)
    tag = torch.arange(SIZE, dtype=torch.float32) + runner * 10_000 + index * SIZE
    batch.update(
        {
            "state": tag[:, None, None].expand(SIZE, T, 16),
            "reward": tag[:, None, None].expand(SIZE, T, 1),
            "actions": tag.long()[:, None, None].expand(SIZE, T, 1),
        },
        ts=slice(0, T),
    )
    return batch


def whole(batch: EpisodeBatch) -> bool:
    """Whether every sampled episode's fields come from one write."""
    tag = batch["reward"][:, :1, :1]
    return bool((batch["state"][:, :T] == tag).all() and (batch["actions"][:, :T] == tag.long()).all())


def run(buffer: ReplayBuffer, prioritized: bool) -> list[BaseException]:
    errors: list[BaseException] = []
    done = threading.Event()

    def insert(runner: int) -> None:
        try:
            for index in range(BATCHES):
                buffer.insert_episode_batch(episodes(runner, index))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def learn() -> None:
        try:
            while not done.is_set():
                if buffer.can_sample(8):
                    if prioritized:
                        batch, idxes, _weights = buffer.sample(8, t=0)  # type: ignore[call-arg]
                        buffer.update_priorities(idxes, np.random.rand(8) + 0.1)  # type: ignore[attr-defined]
                    else:
                        batch = buffer.sample(8)
                    if not whole(batch):
                        raise AssertionError("a sampled episode mixes two inserts")
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    runners = [threading.Thread(target=insert, args=(r,)) for r in range(RUNNERS)]
    learner = threading.Thread(target=learn)
    for thread in [*runners, learner]:
        thread.start()
    for thread in runners:
        thread.join(60)
    done.set()
    learner.join(60)
    return errors


def test_replay_buffer_keeps_every_episode_inserted_by_threads_and_samples_whole_episodes() -> None:
    np.random.seed(0)
    buffer = ReplayBuffer(SCHEME, {}, RUNNERS * BATCHES * SIZE, T + 1)
    assert run(buffer, prioritized=False) == []
    assert buffer.episodes_in_buffer == RUNNERS * BATCHES * SIZE
    tags = buffer["reward"][:, 0, 0].long().sort().values
    expected = sorted(r * 10_000 + i for r in range(RUNNERS) for i in range(BATCHES * SIZE))
    assert tags.tolist() == expected  # none lost, none twice


def test_prioritized_replay_buffer_under_threads() -> None:
    random.seed(0)
    buffer = PrioritizedReplayBuffer(SCHEME, {}, 64, T + 1, alpha=0.6, beta=0.4, t_max=100)
    assert run(buffer, prioritized=True) == []
    assert buffer.episodes_in_buffer == 64
    assert whole(buffer[:64])
