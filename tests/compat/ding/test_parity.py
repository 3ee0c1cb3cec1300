"""Same seeded operation sequence on DI-engine 0.5.3 and on xreplay: same sampled data (skipped without ding)."""

import importlib
import importlib.util
import random
import warnings

import numpy as np
import pytest

from xreplay.compat import ding as xding

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ding") is None, reason="DI-engine not installed")


@pytest.fixture(scope="module")
def dbuf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DI-engine's dependencies warn about deprecated torch APIs on import
        # import_module: ``import ding.data.buffer as m`` can bind the submodule ding.data.buffer.buffer
        package = importlib.import_module("ding.data.buffer")
        middleware = importlib.import_module("ding.data.buffer.middleware")
    return package, middleware


def run(lib, mw, seed):
    """Run one scripted sequence; return the sampled data as nested lists."""
    random.seed(seed)
    np.random.seed(seed)
    out = []
    buf = lib.DequeBuffer(size=40)
    for i in range(55):
        buf.push({"v": i}, meta={"env": i % 4})
    out.append([r.data["v"] for r in buf.sample(7)])
    out.append([r.data["v"] for r in buf.sample(9, replace=True)])
    out.append([r.data["v"] for r in buf.sample(3, sample_range=slice(5, 20, 2))])
    out.append([[r.data["v"] for r in g] for g in buf.sample(3, groupby="env", unroll_len=4, replace=True)])
    out.append([[r.data["v"] for r in g] for g in buf.sample(2, groupby="env")])
    sliced = lib.DequeBuffer(size=30, sliced=True)
    for i in range(30):
        sliced.push(i, meta={"env": i % 3})
    out.append([[r.data for r in g] for g in sliced.sample(5, groupby="env", unroll_len=3, replace=True)])
    per_buf = lib.DequeBuffer(size=20)
    per_buf.use(mw.PriorityExperienceReplay(per_buf, IS_weight=True))
    for i in range(20):
        per_buf.push({"v": i}, meta={"priority": 1.0 + (i % 5)})
    for _ in range(3):
        sample = per_buf.sample(6)
        out.append([r.data["v"] for r in sample])
        out.append([round(float(r.meta["priority_IS"]), 10) for r in sample])
        for r in sample:
            meta = dict(r.meta)
            meta["priority"] = float(r.data["v"] % 7) + 0.5
            per_buf.update(index=r.index, data=None, meta=meta)
    padded = lib.DequeBuffer(size=20).use(mw.padding()).use(mw.group_sample(3))
    for i in range(12):
        padded.push(i, meta={"g": i % 3 if i < 10 else 0})
    out.append([[r.data for r in g] for g in padded.sample(3, groupby="g")])
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_same_samples_as_ding(dbuf, seed):
    package, middleware = dbuf
    assert run(xding, xding, seed) == run(package, middleware, seed)


def run_large(lib, mw, seed):
    """Populations above ``random.sample``'s pool threshold (the fast draw path), wrapped, ranged and PER."""
    random.seed(seed)
    np.random.seed(seed)
    out = []
    buf = lib.DequeBuffer(size=3000)
    for i in range(3000 + 777):  # wrapped: the oldest record is not at ring index 0
        buf.push({"v": i})
    for size in (1, 6, 32, 256, 2999):
        out.append([r.data["v"] for r in buf.sample(size)])
    out.append([r.data["v"] for r in buf.sample(64, replace=True)])
    out.append([r.data["v"] for r in buf.sample(40, sample_range=slice(100, 2900, 3))])
    out.append(buf.sample(3001, ignore_insufficient=True))
    per_buf = lib.DequeBuffer(size=5000)
    per = mw.PriorityExperienceReplay(per_buf, IS_weight=True)
    per_buf.use(per)
    for i in range(5000):
        per_buf.push({"v": i}, meta={"priority": 1.0 + (i % 5)})
    for _ in range(3):
        sample = per_buf.sample(256)
        out.append([r.data["v"] for r in sample])
        out.append([round(float(r.meta["priority_IS"]), 10) for r in sample])
        out.append([round(float(r.data["priority_IS"][0]), 6) for r in sample])
        for r in sample:
            meta = r.meta
            meta["priority"] = float(r.data["v"] % 11) + 0.25
            per_buf.update(index=r.index, data=None, meta=meta)
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_same_large_samples_as_ding(dbuf, seed):
    package, middleware = dbuf
    assert run_large(xding, xding, seed) == run_large(package, middleware, seed)


def run_per_exact(lib, mw, seed, size=3000):
    """PER with pushes, evictions and updates; the sampled records and weights exactly (no rounding).

    (No deletes: after one, DI-engine's index map and PER slots go wrong, defects D1 and D4.)
    """
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    buf = lib.DequeBuffer(size=size)
    buf.use(mw.PriorityExperienceReplay(buf, IS_weight=True, priority_power_factor=0.6))
    for i in range(size):
        buf.push({"v": i}, meta={"priority": float(rng.uniform(0.01, 7.0))})
    for step in range(6):
        sample = buf.sample(128)
        out.append([r.data["v"] for r in sample])
        out.append([float(r.meta["priority_IS"]) for r in sample])
        out.append([r.data["priority_IS"].numpy().tobytes() for r in sample])
        for r, p in zip(sample, rng.uniform(0.0, 9.0, len(sample)).tolist(), strict=True):
            meta = dict(r.meta)
            meta["priority"] = p
            buf.update(index=r.index, data=None, meta=meta)
        for j in range(step * 97):  # evict the oldest records; their slots take new ones
            buf.push({"v": size + step * 1000 + j}, meta={"priority": float(rng.uniform(0.0, 3.0))} if j % 3 else None)
    return out


@pytest.mark.parametrize("seed", [0, 11])
def test_prioritized_draws_and_weights_equal_dings_bit_for_bit(dbuf, seed):
    package, middleware = dbuf
    assert run_per_exact(xding, xding, seed) == run_per_exact(package, middleware, seed)


def test_a_draw_on_a_leaf_boundary_equals_dings(dbuf, monkeypatch):
    """Masses placed on leaf boundaries where the 16-ary tree's own lookup differs from DI-engine's descent."""
    package, middleware = dbuf
    leaves = np.random.default_rng(3).uniform(0.01, 3.0, 200) ** 0.6
    bufs = []
    for lib, mw in ((xding, xding), (package, middleware)):
        buf = lib.DequeBuffer(size=len(leaves))
        buf.use(mw.PriorityExperienceReplay(buf, IS_weight=True, priority_power_factor=1.0))
        for i, leaf in enumerate(leaves.tolist()):
            buf.push({"v": i}, meta={"priority": leaf})
        bufs.append(buf)
    per = bufs[0]._middleware[0]
    total = per.sum_tree.root()
    assert total == bufs[1]._middleware[0].sum_tree.reduce()
    per._priorities.flush()
    ends = np.cumsum(leaves)
    own = per._priorities.tree.find(ends[ends < total])
    ding_tree = bufs[1]._middleware[0].sum_tree
    masses = [m for m, o in zip(ends[ends < total].tolist(), own.tolist(), strict=True)
              if ding_tree.find_prefixsum_idx(m) != o]
    assert masses  # boundaries where the two summation orders disagree
    for mass in masses[:8]:
        u = mass / total
        while u * total != mass:  # the uniform draw whose stratum-0 mass is exactly this boundary
            u = np.nextafter(u, np.inf if u * total < mass else 0.0)
        monkeypatch.setattr(np.random, "uniform", lambda size=None, u=u: np.full(size, u))
        got = [(r.data["v"], float(r.meta["priority_IS"])) for buf in bufs for r in buf.sample(1)]
        assert got[0] == got[1]


def test_sum_tree_reduce_of_any_range_equals_dings(dbuf):
    package, middleware = dbuf
    rng = np.random.default_rng(2)
    pers = []
    for lib, mw in ((xding, xding), (package, middleware)):
        buf = lib.DequeBuffer(size=100)
        per = mw.PriorityExperienceReplay(buf, IS_weight=True)
        buf.use(per)
        for i in range(100):
            buf.push({"v": i}, meta={"priority": float(np.random.default_rng(i).uniform(0.1, 9.0))})
        pers.append(per)
    for start, end in [(0, None), (0, 128), (3, 4), (5, 97), *rng.integers(0, 64, (20, 2)).tolist()]:
        if end is not None and start >= end:
            continue
        assert pers[0].sum_tree.reduce(start, end) == pers[1].sum_tree.reduce(start, end)
