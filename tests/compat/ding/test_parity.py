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
