"""Re-batching invariants of EventReader.chunks and EventReader.time_windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_events
from evstream.kernels.events import concat_events
from evstream.replay.base import EventReader


class ListReader(EventReader):
    """A reader over in-memory parts (chunk boundaries chosen by the test)."""

    format = "test"

    def __init__(self, parts):
        self.path = "<memory>"
        self.width, self.height = 64, 48
        self.counters = {}
        self.bytes_done = 0
        self._parts = parts

    def _raw_chunks(self):
        yield from self._parts


def _split(ev, rng, k):
    cuts = np.sort(rng.integers(0, len(ev) + 1, k))
    return np.split(ev, cuts)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 2000), size=st.integers(1, 700), k=st.integers(0, 10), seed=st.integers(0, 10**6))
def test_chunks_conserve_events_and_sizes(n, size, k, seed):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n, 64, 48)
    out = list(ListReader(_split(ev, rng, k)).chunks(size))
    assert np.array_equal(concat_events(out), ev)
    assert all(len(c) == size for c in out[:-1])
    assert not out or 0 < len(out[-1]) <= size


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 2000),
    d=st.integers(1, 5000),
    k=st.integers(0, 10),
    seed=st.integers(0, 10**6),
    max_dt=st.sampled_from([0, 3, 100, 10_000]),
)
def test_time_windows_partition_time(n, d, k, seed, max_dt):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n, 64, 48, t0=1000, max_dt=max_dt)
    windows = list(ListReader(_split(ev, rng, k)).time_windows(d))
    assert np.array_equal(concat_events(windows), ev)
    if n:
        t0 = int(ev["t"][0])
        for i, w in enumerate(windows):
            if len(w):
                assert t0 + i * d <= int(w["t"][0]) and int(w["t"][-1]) < t0 + (i + 1) * d
        # the last window holds the last event, so windows cover exactly the recording's span
        assert len(windows) == (int(ev["t"][-1]) - t0) // d + 1


def test_time_windows_explicit_start_and_unsorted_events():
    ev = random_events(np.random.default_rng(0), 6, 64, 48)
    ev["t"] = [10, 12, 9, 25, 31, 30]
    windows = list(ListReader([ev]).time_windows(10, t_start=5))
    assert [w["t"].tolist() for w in windows] == [[10, 12, 9], [], [25, 31, 30]]


def test_invalid_sizes():
    with pytest.raises(ValueError):
        list(ListReader([]).chunks(0))
    with pytest.raises(ValueError):
        list(ListReader([]).time_windows(-1))
