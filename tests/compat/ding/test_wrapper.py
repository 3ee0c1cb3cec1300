import numpy as np

from xreplay.compat.ding import DequeBufferWrapper


def test_priority_wrapper_round_trip():
    w = DequeBufferWrapper(
        {"replay_buffer_size": 8, "priority": True, "priority_IS_weight": True, "priority_max_limit": 5.0}
    )
    w.push([{"x": i, "priority": 1.0} for i in range(4)])
    np.random.seed(0)
    data = w.sample(4, train_iter=0)
    assert [d["x"] for d in data] == [0, 1, 2, 3] and all(0 < d["IS"] <= 1 for d in data)
    w.update({"priority": [10.0, 1.0, 1.0, 1.0]})
    assert w.buffer.storage[0].meta["priority"] == 5.0


def test_max_use_and_insufficient():
    w = DequeBufferWrapper({"replay_buffer_size": 8, "max_use": 1})
    w.push([{"x": 1}, {"x": 2}])
    assert w.sample(3, 0) is None and len(w.sample(2, 0)) == 2 and w.count() == 0
