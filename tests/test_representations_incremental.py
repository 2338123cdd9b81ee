"""Incremental representations == recomputation on the current window, after any sequence of
window steps: count and time windows (overlapping, gapped), random enter/leave sequences, sorted
and out-of-order timestamps, a real recording; wrong leave orders are refused with the state intact."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import random_events, shared_file
from evstream.kernels.events import concat_events, empty_events, make_events
from evstream.kernels.representations import REPRESENTATIONS, compute
from evstream.kernels.representations.incremental import INCREMENTAL, WindowState, incremental
from evstream.replay import read_events
from evstream.runtime.windows import CountWindows, CountWindowSpec, TimeWindows, TimeWindowSpec

W, H = 13, 9
NAMES = sorted(INCREMENTAL)


def _check(rep, window, name, width=W, height=H, **params):
    want = compute(name, window, width, height, **params)
    got = rep.output()
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_every_representation_has_an_incremental_version():
    assert set(INCREMENTAL) == set(REPRESENTATIONS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size, stride", [(200, 200), (200, 37), (64, 150), (1, 1)])
def test_count_windows(name, size, stride):
    ev = random_events(np.random.default_rng(size + stride), 1500, W, H, t0=5_000, max_dt=20)
    rep = incremental(name, W, H)
    windows = CountWindows(CountWindowSpec(size, stride))
    steps = 0
    for chunk in np.array_split(ev, 7):
        for step in windows.push(chunk):
            rep.update(step.enter, step.leave)
            _check(rep, step.window, name)
            steps += 1
    assert steps > 3


@pytest.mark.parametrize("name", NAMES)
def test_time_windows_with_gaps_and_empty_windows(name):
    rng = np.random.default_rng(4)
    a = random_events(rng, 600, W, H, t0=0, max_dt=10)
    b = random_events(rng, 600, W, H, t0=int(a["t"][-1]) + 20_000, max_dt=10)  # a silent stretch
    rep = incremental(name, W, H)
    for spec in (TimeWindowSpec(2_000, 700), TimeWindowSpec(1_000, 3_000)):
        rep.reset()
        windows = TimeWindows(spec)
        for step in [*windows.push(concat_events([a, b])), *windows.flush()]:
            rep.update(step.enter, step.leave)
            _check(rep, step.window, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sorted_times", [True, False])
def test_random_enter_leave_sequences(name, sorted_times):
    # Arbitrary steps: bursts in, bursts out, the window emptied and refilled, the ring grown.
    rng = np.random.default_rng(17 if sorted_times else 18)
    ev = random_events(rng, 3000, W, H, t0=1_000, max_dt=5)
    if not sorted_times:
        ev["t"] += rng.integers(-30, 31, len(ev))  # out-of-order timestamps, as some sensors emit
    rep = incremental(name, W, H)
    lo = hi = 0
    while hi < len(ev):
        # A step removes some of the window's events (sometimes all) and adds new ones.
        n_out = int(rng.integers(0, hi - lo + 1)) if rng.random() < 0.8 else hi - lo
        leave = ev[lo : lo + n_out]
        lo += n_out
        enter = ev[hi : hi + int(rng.choice([0, 1, 5, 80, 400]))]
        hi += len(enter)
        rep.update(enter, leave)
        _check(rep, ev[lo:hi], name)


@pytest.mark.parametrize("name", NAMES)
def test_leaving_out_of_order_is_refused_and_the_state_kept(name):
    ev = random_events(np.random.default_rng(2), 50, W, H)
    rep = incremental(name, W, H)
    rep.update(ev, empty_events(0))
    before = rep.output().copy()
    stranger = make_events([1], [1], [10**9], [1])
    with pytest.raises(ValueError, match="window"):
        rep.update(empty_events(0), stranger)
    np.testing.assert_array_equal(rep.output(), before)
    with pytest.raises(ValueError, match="outside"):
        rep.update(make_events([W], [0], [10**9], [1]), empty_events(0))
    np.testing.assert_array_equal(rep.output(), before)


def test_window_state_follows_the_window():
    rng = np.random.default_rng(9)
    ev = random_events(rng, 5000, W, H, max_dt=3)
    ev["t"][::7] -= 4  # a few inversions
    state = WindowState(W, H, capacity=16)
    state.enter(ev[:3000])
    state.leave(ev[:1234])
    np.testing.assert_array_equal(state.events(), ev[1234:3000])
    assert state.time_range() == (int(ev["t"][1234:3000].min()), int(ev["t"][1234:3000].max()))
    count = np.zeros(2 * W * H, np.int64)
    np.add.at(
        count,
        (1 - ev["p"][1234:3000].astype(np.int64)) * W * H + ev["y"][1234:3000] * W + ev["x"][1234:3000],
        1,
    )
    np.testing.assert_array_equal(state.count, count)
    with pytest.raises(ValueError, match="cannot leave"):
        state.leave(ev[1234:3001])


def test_histogram_output_is_live_and_reused():
    rep = incremental("event_histogram", W, H)
    out = rep.output()
    rep.update(make_events([2], [3], [5], [0]), empty_events(0))
    assert out[1, 3, 2] == 1 and rep.output() is not None and np.shares_memory(out, rep.output())


@pytest.mark.parametrize("params", [{"tau_us": 300.0}, {"t_ref": 2_000}, {"tau_us": 50.0, "t_ref": 10**7}])
def test_time_surface_parameters(params):
    ev = random_events(np.random.default_rng(6), 800, W, H, t0=1_000, max_dt=5)
    rep = incremental("time_surface", W, H, **params)
    for step in CountWindows(CountWindowSpec(300, 100)).push(ev):
        rep.update(step.enter, step.leave)
        _check(rep, step.window, "time_surface", **params)


@pytest.mark.parametrize(
    "name, params",
    [
        ("sorted_time_surface", {"use_image": False}),
        ("dist", {"patch_size": 3, "alpha": 1.0}),
        ("voxel_grid", {"num_bins": 4, "measurement": "polarity"}),
    ],
)
def test_other_parameters(name, params):
    ev = random_events(np.random.default_rng(7), 800, W, H, t0=1_000, max_dt=5)
    rep = incremental(name, W, H, **params)
    for step in CountWindows(CountWindowSpec(300, 100)).push(ev):
        rep.update(step.enter, step.leave)
        _check(rep, step.window, name, **params)


def test_bad_parameters_and_names():
    with pytest.raises(ValueError, match="unknown representation"):
        incremental("nope", W, H)
    with pytest.raises(ValueError, match="patch_size"):
        incremental("dist", W, H, patch_size=4)
    with pytest.raises(ValueError, match="num_bins"):
        incremental("voxel_grid", W, H, num_bins=0)
    with pytest.raises(ValueError, match="tau_us"):
        incremental("time_surface", W, H, tau_us=0)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", NAMES)
def test_sliding_over_a_real_recording(name):
    ev = read_events(shared_file("bin/tonic_sample_nmnist.bin"))
    rep = incremental(name, 34, 34)
    for step in CountWindows(CountWindowSpec(1000, 300)).push(ev):
        rep.update(step.enter, step.leave)
        _check(rep, step.window, name, 34, 34)
