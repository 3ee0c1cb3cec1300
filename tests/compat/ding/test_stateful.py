"""Random operation sequences against a tiny pure-Python model of DI-engine's DequeBuffer (defects fixed)."""

import random

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xreplay.compat.ding import DequeBuffer

SIZE = 5


class Model:
    """Storage as a Python list of [index, data, meta]; sampling with the same random calls."""

    def __init__(self):
        self.items = []

    def push(self, index, data, meta):
        self.items.append([index, data, meta])
        if len(self.items) > SIZE:
            self.items.pop(0)

    def delete(self, indices):
        self.items = [it for it in self.items if it[0] not in indices]

    def sample(self, size, replace):
        pop = self.items
        if replace:
            return [it[1] for it in random.choices(pop, k=size)]
        if size > len(pop):
            return None
        return [it[1] for it in random.sample(pop, k=size)]

    def groups(self, key, size):
        values = list(set(it[2].get(key) for it in self.items))
        chosen = random.choices(values, k=size)
        return [[it[1] for it in self.items if it[2].get(key) == g] for g in chosen]


class DequeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.buf = DequeBuffer(size=SIZE)
        self.model = Model()
        self.counter = 0

    @rule(env=st.integers(0, 2))
    def push(self, env):
        self.counter += 1
        rec = self.buf.push(self.counter, {"env": env})
        self.model.push(rec.index, self.counter, {"env": env})

    @precondition(lambda self: self.model.items)
    @rule(picks=st.lists(st.integers(0, SIZE - 1), min_size=1, max_size=3))
    def delete(self, picks):
        indices = [self.model.items[p % len(self.model.items)][0] for p in picks]
        self.buf.delete(indices)
        self.model.delete(set(indices))

    @rule(size=st.integers(1, 6), replace=st.booleans(), seed=st.integers(0, 10))
    def sample(self, size, replace, seed):
        random.seed(seed)
        expected = self.model.sample(size, replace) if self.model.items or not replace else "empty"
        random.seed(seed)
        if expected == "empty":
            return
        got = self.buf.sample(size, replace=replace, ignore_insufficient=True)
        assert [r.data for r in got] == (expected if expected is not None else [])

    @precondition(lambda self: self.model.items)
    @rule(size=st.integers(1, 4), seed=st.integers(0, 10))
    def sample_groups(self, size, seed):
        random.seed(seed)
        expected = self.model.groups("env", size)
        random.seed(seed)
        got = self.buf.sample(size, groupby="env", replace=True)
        assert [[r.data for r in g] for g in got] == expected

    @precondition(lambda self: self.model.items)
    @rule(pick=st.integers(0, SIZE - 1), env=st.integers(0, 3))
    def update_meta(self, pick, env):
        item = self.model.items[pick % len(self.model.items)]
        item[2] = {"env": env}
        assert self.buf.update(item[0], meta={"env": env})

    @rule()
    def clear(self):
        self.buf.clear()
        self.model.items = []

    @invariant()
    def same_contents(self):
        assert [r.index for r in self.buf.storage] == [it[0] for it in self.model.items]
        assert len(self.buf.indices) == len(self.model.items)
        for i, it in enumerate(self.model.items):
            assert self.buf.indices.get(it[0]) == i


DequeMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestDequeBuffer = DequeMachine.TestCase
