"""The C++ SPSC ring: a model-based property test per policy, wrap-around, exact accounting (also
for blocking pushes that time out and are retried, through the pipeline too), a concurrent producer
and consumer, and a producer in another process through shared memory."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evstream.kernels.events import make_events
from evstream.replay import write_events
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.ring import EventRing
from evstream.runtime.sources import FileSource
from evstream.runtime.windows import TimeWindowSpec


def _events(start: int, n: int) -> np.ndarray:
    i = np.arange(start, start + n)
    return make_events(i % 640, i % 480, i, i % 2)


class Model:
    """The obvious reference: a deque with the same policies. ``offered`` counts what a push
    answers for: with ``block`` the events it stored (the caller keeps the rest), with the drop
    policies all of them (stored, or counted dropped)."""

    def __init__(self, capacity, policy):
        self.q, self.cap, self.policy = deque(), capacity, policy
        self.offered = self.popped = self.dropped = 0

    def push(self, ts):
        stored = 0
        for t in ts:
            if len(self.q) < self.cap:
                self.q.append(t)
                stored += 1
            elif self.policy == "drop-oldest":
                self.q.popleft()
                self.q.append(t)
                self.dropped += 1
                stored += 1
            elif self.policy == "drop-newest":
                self.dropped += 1
        if self.policy == "drop-oldest":  # a call's own events pushed out by later ones in it
            stored = min(len(ts), self.cap)
        self.offered += stored if self.policy == "block" else len(ts)
        return stored

    def pop(self, k):
        out = [self.q.popleft() for _ in range(min(k, len(self.q)))]
        self.popped += len(out)
        return out


@pytest.mark.parametrize("policy", ["block", "drop-oldest", "drop-newest"])
@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 64), ops=st.lists(st.tuples(st.booleans(), st.integers(0, 150)), max_size=40))
def test_ring_matches_model(policy, capacity, ops):
    ring, model = EventRing(capacity, policy), Model(capacity, policy)
    t = 0
    for is_push, k in ops:
        if is_push:
            ev = _events(t, k)
            t += k
            stored = ring.push(ev, timeout=0)
            assert stored == model.push(list(ev["t"]))
        else:
            assert ring.pop(k)["t"].tolist() == model.pop(k)
        s = ring.stats()
        assert (s.offered, s.popped, s.dropped, s.size) == (
            model.offered,
            model.popped,
            model.dropped,
            len(model.q),
        )
        assert _accounted(ring)


def test_wrap_around_preserves_events():
    ring = EventRing(7)
    got, t = [], 0
    for k in (5, 4, 6, 7, 3, 1, 7):
        ring.push(_events(t, k))
        t += k
        got.append(ring.pop(100))
    assert np.array_equal(np.concatenate(got), _events(0, t))


def test_block_push_times_out_and_close_drains():
    ring = EventRing(10)
    assert ring.push(_events(0, 25), timeout=0.01) == 10
    ring.close()
    assert ring.closed and len(ring.pop(100)) == 10
    assert len(ring.pop(100, timeout=1.0)) == 0  # closed and empty: returns at once


def _accounted(ring: EventRing) -> bool:
    s = ring.stats()
    return s.offered == s.popped + s.dropped + s.size


def test_block_push_that_times_out_counts_only_what_it_stored():
    """A blocking push that times out answers only for the events it stored: the caller keeps the
    rest and offers it again, which must not count those events twice."""
    ring, ev = EventRing(8), _events(0, 20)
    assert ring.push(ev, timeout=0.01) == 8  # full: the caller keeps 12
    assert ring.stats().offered == 8 and _accounted(ring)
    for _ in range(3):  # retries without room: nothing stored, nothing counted
        assert ring.push(ev[8:], timeout=0.001) == 0
        assert ring.stats().offered == 8 and _accounted(ring)
    got = [ring.pop(5)]
    assert ring.push(ev[8:], timeout=0.001) == 5
    assert ring.stats().offered == 13 and _accounted(ring)
    got.append(ring.pop(100))
    assert ring.push(ev[13:], timeout=0) == 7
    got.append(ring.pop(100))
    s = ring.stats()
    assert np.array_equal(np.concatenate(got), ev)
    assert (s.offered, s.popped, s.dropped, s.size) == (20, 20, 0, 0)


def _consumer(ring, max_events: int):
    """A started thread popping ``ring`` until it is closed and empty, and the timestamps it got."""
    got: list = []

    def consume():
        while True:
            batch = ring.pop(max_events, timeout=0.2)
            if not len(batch):
                if ring.closed and not len(ring):
                    return
                continue
            got.append(batch["t"].copy())

    th = threading.Thread(target=consume)
    th.start()
    return th, got


def test_block_push_retried_from_another_thread_counts_each_event_once():
    n, ring, src = 300_000, EventRing(1000), _events(0, 300_000)
    timeouts = 0
    th, got = _consumer(ring, 700)
    for i in range(0, n, 5000):
        rest = src[i : i + 5000]
        while len(rest):  # as runtime/pipeline.py's producer: retry what did not fit in time
            stored = ring.push(rest, timeout=1e-5)
            timeouts += stored < len(rest)
            rest = rest[stored:]
    ring.close()
    th.join(timeout=60)
    assert not th.is_alive() and timeouts > 0
    s = ring.stats()
    assert np.array_equal(np.concatenate(got), src["t"])
    assert (s.offered, s.popped, s.dropped, s.size) == (n, n, 0, 0)


def test_pipeline_block_events_in_counts_each_event_once(tmp_path):
    """End to end: a slow consumer makes the producer's 0.1 s blocking pushes time out and retry;
    the summary still reports every event of the recording once, none left unprocessed."""
    n = 200_000
    i = np.arange(n)
    path = tmp_path / "rec.dat"
    write_events(path, make_events(i % 64, (i // 64) % 48, i, i % 2), 64, 48)  # 1 event per us
    windows = []

    def on_window(result):
        windows.append(result["events"])
        time.sleep(0.001)  # ~1000 events per 1 ms window: the consumer takes over 0.2 s in all

    config = RunConfig(window=TimeWindowSpec(1000), ring_capacity=1 << 12, policy="block", pop_events=1024)
    summary = Pipeline(FileSource(path, speed=None), config, on_window=on_window).run()
    assert summary.error is None and not summary.cancelled
    assert summary.events_processed == n and sum(windows) == n
    assert summary.events_in == n and summary.events_dropped == 0 and summary.events_unprocessed == 0


@pytest.mark.parametrize("policy", ["block", "drop-oldest", "drop-newest"])
def test_concurrent_producer_and_consumer(policy):
    n, ring = 2_000_000, EventRing(4096, policy)
    src = _events(0, n)
    th, got = _consumer(ring, 3000)
    for i in range(0, n, 5000):
        ring.push(src[i : i + 5000])
    ring.close()
    th.join(timeout=60)
    assert not th.is_alive()
    t = np.concatenate(got) if got else np.zeros(0, np.int64)
    assert np.all(np.diff(t) > 0)  # order preserved, nothing duplicated
    s = ring.stats()
    assert s.offered == n and s.popped == len(t) and s.offered == s.popped + s.dropped + s.size
    if policy == "block":
        assert np.array_equal(t, src["t"]) and s.dropped == 0


def _producer(name, n):
    ring = EventRing.attach(name)
    for i in range(0, n, 1000):
        ring.push(_events(i, min(1000, n - i)))
    ring.close()
    ring.release()


def test_shared_memory_producer_in_another_process():
    name = f"evs_test_{os.getpid()}"
    ring = EventRing(5000, "block", shared_name=name)
    try:
        proc = multiprocessing.get_context("spawn").Process(target=_producer, args=(name, 100_000))
        proc.start()
        got = []
        while True:
            batch = ring.pop(4096, timeout=0.5)
            if not len(batch) and ring.closed and not len(ring):
                break
            got.append(batch)
        proc.join(timeout=30)
        assert proc.exitcode == 0
        assert np.array_equal(np.concatenate(got), _events(0, 100_000))
    finally:
        ring.release()


def test_bad_arguments():
    with pytest.raises(ValueError, match="policy"):
        EventRing(10, "sometimes")
    with pytest.raises(ValueError, match="capacity"):
        EventRing(0)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        EventRing(10).push(np.zeros(3))
