"""Sliding windows: contents match a direct slice of the stream, and +enter/-leave at every step
reproduces the window (the incremental-update invariant), over grids of sizes, strides and
batch splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evstream.kernels.events import concat_events, make_events
from evstream.runtime.windows import CountWindows, CountWindowSpec, TimeWindows, TimeWindowSpec


def _stream(rng, n, max_dt):
    t = 1000 + np.cumsum(rng.integers(1, max_dt + 1, n))  # strictly increasing: t identifies an event
    return make_events(rng.integers(0, 64, n), rng.integers(0, 48, n), t, rng.integers(0, 2, n))


def _batches(ev, rng, k):
    return np.split(ev, np.sort(rng.integers(0, len(ev) + 1, k)))


def _run(windows, batches):
    steps = []
    for b in batches:
        steps.extend(windows.push(b))
    steps.extend(windows.flush())
    return steps


def _check_incremental(steps):
    current: set[int] = set()
    for s in steps:
        leave, enter = set(s.leave["t"].tolist()), set(s.enter["t"].tolist())
        assert leave <= current and not (enter & current)
        current = (current - leave) | enter
        assert current == set(s.window["t"].tolist()), s.index


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 600),
    size=st.integers(1, 80),
    stride=st.integers(1, 120),
    k=st.integers(0, 12),
    seed=st.integers(0, 10**6),
)
def test_count_windows(n, size, stride, k, seed):
    rng = np.random.default_rng(seed)
    ev = _stream(rng, n, 20)
    steps = _run(CountWindows(CountWindowSpec(size, stride)), _batches(ev, rng, k))
    expected = (n - size) // stride + 1 if n >= size else 0
    assert [s.index for s in steps] == list(range(expected))
    for s in steps:
        assert np.array_equal(s.window, ev[s.index * stride : s.index * stride + size])
        assert s.last_index == s.index * stride + size - 1
    _check_incremental(steps)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 600),
    duration=st.integers(1, 500),
    stride=st.integers(1, 700),
    k=st.integers(0, 12),
    seed=st.integers(0, 10**6),
    max_dt=st.sampled_from([1, 10, 200]),
)
def test_time_windows(n, duration, stride, k, seed, max_dt):
    rng = np.random.default_rng(seed)
    ev = _stream(rng, n, max_dt)
    steps = _run(TimeWindows(TimeWindowSpec(duration, stride)), _batches(ev, rng, k))
    if not n:
        assert not steps
        return
    t0 = int(ev["t"][0])
    assert [s.index for s in steps] == list(range(len(steps)))
    for s in steps:
        start = t0 + s.index * stride
        assert (s.t_start_us, s.t_end_us) == (start, start + duration)
        inside = ev[(ev["t"] >= start) & (ev["t"] < start + duration)]
        assert np.array_equal(s.window, inside)
    # the last window is the last one that starts at or before the last event
    assert t0 + steps[-1].index * stride <= int(ev["t"][-1]) < t0 + (steps[-1].index + 1) * stride
    _check_incremental(steps)


@pytest.mark.parametrize("duration,stride", [(300, 10), (50, 50), (40, 70)])
def test_trailing_time_windows_start_at_once(duration, stride):
    """Trailing windows: the first ends one stride after the first event, and every window holds
    exactly the events of its span."""
    rng = np.random.default_rng(duration + stride)
    ev = _stream(rng, 400, 5)
    steps = _run(TimeWindows(TimeWindowSpec(duration, stride, trailing=True)), _batches(ev, rng, 5))
    t_first = int(ev["t"][0])
    assert steps[0].t_end_us == t_first + stride
    for s in steps:
        inside = ev[(ev["t"] >= s.t_start_us) & (ev["t"] < s.t_end_us)]
        assert np.array_equal(s.window, inside)
        assert s.t_end_us - s.t_start_us == duration
    _check_incremental(steps)


def test_time_windows_report_empty_windows():
    ev = make_events([1, 2], [1, 2], [100, 450], [0, 1])
    steps = _run(TimeWindows(TimeWindowSpec(100)), [ev])
    assert [len(s.window) for s in steps] == [1, 0, 0, 1]
    assert [s.last_index for s in steps] == [0, -1, -1, 1]


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 300), min_size=1, max_size=3),
    duration=st.integers(1, 30),
    stride=st.integers(1, 40),
    seed=st.integers(0, 10**6),
)
def test_long_gaps_skip_only_repeated_empty_windows(gaps, duration, stride, seed):
    """With a cap of 5 empty windows in a row, a stream with long pauses gives the same non-empty
    steps as without the cap; the missing steps are empty ones after an empty one, counted."""
    rng = np.random.default_rng(seed)
    parts = [_stream(rng, 50, 3)]
    for gap in gaps:
        nxt = _stream(rng, 50, 3)
        nxt["t"] += int(parts[-1]["t"][-1]) + gap * stride - 999
        parts.append(nxt)
    ev = concat_events(parts)
    batches = _batches(ev, rng, 6)
    everything = _run(TimeWindows(TimeWindowSpec(duration, stride), max_empty=10**9), batches)
    capped_windows = TimeWindows(TimeWindowSpec(duration, stride), max_empty=5)
    capped = _run(capped_windows, batches)
    by_index = {s.index: s for s in everything}
    assert len(everything) == len(capped) + capped_windows.skipped
    for s in capped:
        ref = by_index[s.index]
        assert np.array_equal(s.window, ref.window) and np.array_equal(s.enter, ref.enter)
        assert np.array_equal(s.leave, ref.leave)
    kept = {s.index for s in capped}
    for k in set(by_index) - kept:
        assert len(by_index[k].window) == 0 and len(by_index[k - 1].window) == 0
    assert {s.index for s in everything if len(s.window)} <= kept
    _check_incremental(capped)


def test_a_timestamp_days_ahead_does_not_stall_the_windows():
    ev = make_events([1, 2, 3], [1, 2, 3], [0, 5, 10**12], [0, 1, 0])  # 11.6 days later
    windows = TimeWindows(TimeWindowSpec(10_000))
    steps = _run(windows, [ev])
    assert [(s.index, len(s.window)) for s in steps] == [(0, 2), (1, 0), (10**8, 1)]
    assert windows.skipped == 10**8 - 2


def test_bad_specs():
    with pytest.raises(ValueError):
        CountWindowSpec(0)
    with pytest.raises(ValueError):
        TimeWindowSpec(10, -1)


def test_histogram_kernel_matches_numpy_reference():
    from evstream.runtime.pipeline import Histogram

    rng = np.random.default_rng(4)
    ev = _stream(rng, 5000, 3)
    ev["x"][:10] = 70  # outside the 64-wide sensor: skipped
    h = Histogram(64, 48)
    h.update(ev, ev[:2000])
    inside = ev[2000:][ev[2000:]["x"] < 64]
    ref = np.zeros((2, 48, 64), np.int64)
    np.add.at(ref, (inside["p"], inside["y"], inside["x"]), 1)
    assert np.array_equal(h.image(), ref)
    assert h.image().sum() == len(inside)
