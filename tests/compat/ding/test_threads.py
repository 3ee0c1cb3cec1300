import threading

from xreplay.compat.ding import DequeBuffer, PriorityExperienceReplay, use_time_check


def test_collectors_and_learner_see_every_item_exactly_once():
    n_collectors, per_collector = 4, 500
    buf = DequeBuffer(size=n_collectors * per_collector)
    buf.use(use_time_check(buf, max_use=1))
    seen, done = [], threading.Event()

    def collect(c):
        for i in range(per_collector):
            buf.push((c, i))

    def learn():
        while True:
            finished = done.is_set()
            got = buf.sample(16, ignore_insufficient=True)
            if not got:
                got = buf.sample(buf.count(), ignore_insufficient=True) if buf.count() else []
            seen.extend(r.data for r in got)
            if finished and buf.count() == 0:
                return

    collectors = [threading.Thread(target=collect, args=(c,)) for c in range(n_collectors)]
    learner = threading.Thread(target=learn)
    learner.start()
    for t in collectors:
        t.start()
    for t in collectors:
        t.join()
    done.set()
    learner.join(timeout=60)
    assert sorted(seen) == sorted((c, i) for c in range(n_collectors) for i in range(per_collector))


def test_prioritized_buffer_stays_consistent_under_threads():
    buf = DequeBuffer(size=256)
    per = PriorityExperienceReplay(buf)
    buf.use(per)
    errors = []

    def collect():
        for i in range(1000):
            buf.push({"x": i})

    def learn():
        try:
            for _ in range(200):
                if buf.count() >= 32:
                    got = buf.sample(32)
                    per.update_priorities([r.index for r in got], [1.0 + (i % 3) for i in range(32)])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=collect) for _ in range(2)] + [threading.Thread(target=learn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(per.buffer_idx) == buf.count() == 256
    assert set(per.buffer_idx.values()) == {r.index for r in buf.storage}
