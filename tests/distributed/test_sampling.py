"""Exact sampling across shards: the distribution and the weights equal those of one buffer holding everything."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.distributed.helpers import chi_square_p, transitions
from xreplay import EpisodeBuffer, Field, Scheme, TransitionBuffer
from xreplay.distributed import ClientOptions, InProcessBackend, ReplayClient
from xreplay.distributed.sampling import draw_counts, gather_index
from xreplay.errors import InsufficientDataError
from xreplay.samplers import PrioritizedSampler

ITEMS = 200
SPLIT = (80, 60, 40, 20)  # uneven shards: sizes alone would give the wrong masses
PRIORITIES = np.random.default_rng(7).uniform(0.05, 10.0, ITEMS)


def _prioritized(capacity: int) -> TransitionBuffer:
    return TransitionBuffer(capacity, sampler=PrioritizedSampler(capacity, alpha=0.6, beta=0.4), seed=3)


def _single() -> TransitionBuffer:
    buffer = _prioritized(ITEMS)
    buffer.extend(transitions(ITEMS))
    buffer.update_priorities(np.arange(ITEMS), PRIORITIES, "current")
    return buffer


def _sharded(options: ClientOptions | None = None, seed: int = 11) -> ReplayClient:
    """Four shards holding the same items and priorities as ``_single`` (item i where the split puts it)."""
    backend = InProcessBackend(lambda: _prioritized(max(SPLIT)), num_shards=len(SPLIT))
    client = ReplayClient(backend, options, routing="by_writer", seed=seed)
    start = 0
    for shard, size in enumerate(SPLIT):
        client.extend(transitions(size, start), writer_id=shard)
        start += size
    client.flush()
    for shard, core in enumerate(backend.shards):
        first = sum(SPLIT[:shard])
        core.buffer.update_priorities(np.arange(SPLIT[shard]), PRIORITIES[first : first + SPLIT[shard]], "current")
    client.refresh()
    return client


def _draw_items(client: ReplayClient, draws: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the item numbers and weights of ``draws`` sampled items."""
    items, weights = [], []
    for _ in range(draws // batch):
        sample = client.sample(batch)
        items.append(sample["item"].numpy())
        weights.append(sample.weights.numpy())
    return np.concatenate(items), np.concatenate(weights)


def _expected() -> np.ndarray:
    leaves = (PRIORITIES + 1e-6) ** 0.6
    return leaves / leaves.sum()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(ClientOptions(), id="one_batch_per_call"),
        pytest.param(ClientOptions(prefetch=2, batches_per_call=5), id="prefetched_multi_batch"),
    ],
)
def test_four_shards_draw_like_one_buffer_over_a_million_draws(options):
    client = _sharded(options)
    items, _weights = _draw_items(client, 1_000_000, 2_000)
    observed = np.bincount(items, minlength=ITEMS)
    assert chi_square_p(observed, _expected()) > 0.01


def test_chi_square_rejects_counts_drawn_by_shard_size(monkeypatch):
    """The exactness test has power: drawing per-shard counts from sizes instead of masses fails it."""
    client = _sharded()
    monkeypatch.setattr(client.requests, "_masses", lambda replace: np.array([s.size for s in client.states], float))
    items, _weights = _draw_items(client, 200_000, 2_000)
    assert chi_square_p(np.bincount(items, minlength=ITEMS), _expected()) < 1e-6


def test_single_buffer_passes_the_same_test():
    buffer = _single()
    items = np.concatenate([buffer.sample(2_000)["item"].numpy() for _ in range(100)])
    assert chi_square_p(np.bincount(items, minlength=ITEMS), _expected()) > 0.01


def test_weights_are_bit_identical_to_one_buffer_for_identical_priorities():
    single, client = _single(), _sharded()
    sample = client.sample(4_000)
    items = sample["item"].numpy()
    local = _single()
    # The local buffer's weight of item i: sample until each drawn item's weight is known.
    drawn = local.sample(20_000)
    by_item = dict(zip(drawn["item"].numpy().tolist(), drawn.weights.numpy().tolist(), strict=True))
    known = np.array([i in by_item for i in items])
    assert known.mean() > 0.9
    expected = np.array([by_item[i] for i in items[known]], dtype=np.float32)
    np.testing.assert_array_equal(sample.weights.numpy()[known], expected)
    assert single.sampler.tree.min() == min(s.min_leaf for s in client.states)


def test_uniform_shards_draw_uniformly_over_every_item():
    backend = InProcessBackend(lambda: TransitionBuffer(100, seed=0), num_shards=3)
    client = ReplayClient(backend, routing="by_writer", seed=2)
    for shard, size in enumerate((10, 30, 60)):
        client.extend(transitions(size, sum((10, 30, 60)[:shard])), writer_id=shard)
    items = np.concatenate([client.sample(1_000)["item"].numpy() for _ in range(200)])
    assert chi_square_p(np.bincount(items, minlength=100), np.full(100, 0.01)) > 0.01
    assert client.sample(5).weights is None


def test_episode_shards_sample_without_replacement_uniformly():
    scheme = Scheme({"item": Field((1,))})
    backend = InProcessBackend(lambda: EpisodeBuffer(scheme, 40, 3, seed=0), num_shards=2)
    client = ReplayClient(backend, routing="by_writer", seed=5)
    for shard, size in enumerate((10, 30)):
        items = np.arange(size, dtype=np.float32) + 10 * shard
        client.add({"item": np.repeat(items[:, None, None], 3, axis=1)}, writer_id=shard)
    seen = []
    for _ in range(4_000):
        batch = client.sample(8)["item"][:, 0, 0].numpy().astype(int)
        assert len(set(batch.tolist())) == 8  # without replacement, across shards too
        seen.append(batch)
    counts = np.bincount(np.concatenate(seen), minlength=40)
    assert chi_square_p(counts, np.full(40, 1 / 40)) > 0.01
    with pytest.raises(InsufficientDataError, match="41 exceeds the 40"):
        client.sample(41)


@given(
    counts=st.lists(st.lists(st.integers(0, 6), min_size=3, max_size=3), min_size=1, max_size=4).filter(
        lambda rows: len({sum(r) for r in rows}) == 1
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_gather_index_fills_every_position_of_every_batch_once(counts, seed):
    counts = np.array(counts)
    n = int(counts[0].sum())
    index = gather_index(np.random.default_rng(seed), counts, n)
    if np.count_nonzero(counts.sum(axis=0)) <= 1:
        assert index is None  # one shard sends every row: its order is kept
        return
    np.testing.assert_array_equal(np.sort(index), np.arange(n * counts.shape[0]))  # every row used once
    totals = counts.sum(axis=0)
    owner = np.repeat(np.arange(counts.shape[1]), totals)[index].reshape(counts.shape[0], n)  # who fills each place
    rank = (np.arange(n * counts.shape[0]) - np.repeat(np.cumsum(totals) - totals, totals))[index]
    for batch in range(counts.shape[0]):  # batch j takes shard s's rows meant for batch j (the shard's order)
        np.testing.assert_array_equal(np.bincount(owner[batch], minlength=counts.shape[1]), counts[batch])
        for shard in range(counts.shape[1]):
            first = counts[:batch, shard].sum()
            mine = np.sort(rank.reshape(counts.shape[0], n)[batch][owner[batch] == shard])
            np.testing.assert_array_equal(mine, np.arange(first, first + counts[batch, shard]))


def test_gather_index_spreads_each_shard_uniformly_over_the_batch():
    rng = np.random.default_rng(0)
    counts = np.array([[1, 3], [3, 1]])  # shard 0 gives 1 then 3 of each batch of 4
    hits = np.zeros((2, 4))
    for _ in range(4_000):
        index = gather_index(rng, counts, 4).reshape(2, 4)
        hits += index < 4  # rows 0-3 are shard 0's
    for batch in range(2):  # every position of a batch as likely to hold shard 0's rows
        assert chi_square_p(hits[batch], np.full(4, 0.25)) > 0.01


def test_draw_counts_gives_nothing_to_a_shard_without_mass():
    counts = draw_counts(np.random.default_rng(0), np.array([2.0, 0.0, 1.0]), n=50, batches=20, replace=True)
    assert counts.shape == (20, 3) and (counts.sum(axis=1) == 50).all() and not counts[:, 1].any()
    with pytest.raises(InsufficientDataError, match="no sampling mass"):
        draw_counts(np.random.default_rng(0), np.zeros(2), n=1, batches=1, replace=True)


@pytest.mark.parametrize("beta", [0.4, 1.0])
def test_weights_too_small_for_float32_are_floored_as_a_local_buffer_floors_them(beta):
    from xreplay.distributed.sampling import importance_weights
    from xreplay.samplers import PrioritizedSampler

    sampler = PrioritizedSampler(2, alpha=1.0, beta=beta, epsilon=0.0)
    sampler.insert_range(0, 2)
    sampler.update_priorities(np.array([0, 1]), np.array([1e-300, 1.0]))
    local = sampler.sample_masses(np.array([0.5]))  # the mass lands on the large priority: weight (1e-300)**beta
    leaves = sampler.priorities(local.indices)
    spread = importance_weights(leaves, float(sampler.tree.min()), beta)
    assert local.weights.tolist() == spread.tolist() and spread[0] > 0
