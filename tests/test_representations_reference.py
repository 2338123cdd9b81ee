"""The numpy reference event representations: hand-computed tiny examples, invariants over seeded
random streams, empty and single-event inputs, and that inputs are never modified."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import random_events
from evstream.kernels.events import empty_events, make_events
from evstream.kernels.representations import (
    REPRESENTATIONS,
    binary_event_image,
    dist,
    event_histogram,
    event_image,
    sorted_time_surface,
    time_surface,
    timestamp_image,
    voxel_grid,
)

W, H = 4, 3  # the hand-computed examples use a 3x4 sensor
SW, SH = 13, 9  # the random streams' sensor

CHANNELS = {
    "event_histogram": 2,
    "binary_event_image": 2,
    "event_image": 4,
    "timestamp_image": 2,
    "sorted_time_surface": 4,
    "dist": 2,
    "voxel_grid": 18,
    "time_surface": 2,
}


def zeros(c):
    return np.zeros((c, H, W), np.float32)


@pytest.fixture
def tiny():
    # Six events on the 3x4 sensor, t_min = 100, t_max = 500, so t_n = (t - 100) / 400:
    #   e0 (x0, y0) t100 ON   t_n 0
    #   e1 (x1, y0) t200 OFF  t_n 0.25
    #   e2 (x0, y0) t300 ON   t_n 0.5
    #   e3 (x3, y2) t400 OFF  t_n 0.75
    #   e4 (x2, y1) t400 ON   t_n 0.75
    #   e5 (x1, y0) t500 ON   t_n 1
    return make_events(
        x=[0, 1, 0, 3, 2, 1], y=[0, 0, 0, 2, 1, 0], t=[100, 200, 300, 400, 400, 500], p=[1, 0, 1, 0, 1, 1]
    )


@pytest.fixture
def stream(rng):
    # Absolute microsecond timestamps, with ties (dt = 0 has probability 1/41).
    return random_events(rng, 600, SW, SH, t0=1_000_000, max_dt=40)


# --------------------------------------------------------------------------------------------
# Registry and conventions


def test_registry_names_and_shapes(tiny):
    assert set(REPRESENTATIONS) == set(CHANNELS)
    for name, fn in REPRESENTATIONS.items():
        out = fn(tiny, W, H)
        assert out.dtype == np.float32, name
        assert out.shape == (CHANNELS[name], H, W), name
        assert np.isfinite(out).all(), name


def test_importable_as_subpackage():
    import evstream.kernels.representations as reps

    assert reps.REPRESENTATIONS["voxel_grid"] is voxel_grid


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_empty_input_gives_zeros(name):
    out = REPRESENTATIONS[name](empty_events(0), W, H)
    np.testing.assert_array_equal(out, zeros(CHANNELS[name]))
    assert out.dtype == np.float32


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_inputs_not_modified_and_outputs_not_aliased(name, stream):
    before = stream.copy()
    stream.flags.writeable = False  # any write into the input would raise
    out = REPRESENTATIONS[name](stream, SW, SH)
    np.testing.assert_array_equal(stream, before)
    assert not np.shares_memory(out, stream)
    again = REPRESENTATIONS[name](stream, SW, SH)
    assert not np.shares_memory(out, again)
    np.testing.assert_array_equal(out, again)


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_order_of_events_is_irrelevant(name, stream, rng):
    shuffled = stream[rng.permutation(len(stream))]
    np.testing.assert_allclose(
        REPRESENTATIONS[name](shuffled, SW, SH), REPRESENTATIONS[name](stream, SW, SH), atol=1e-6
    )


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_rejects_bad_input(name):
    fn = REPRESENTATIONS[name]
    with pytest.raises(ValueError, match="outside"):
        fn(make_events(x=[W], y=[0], t=[0], p=[1]), W, H)
    with pytest.raises(ValueError, match="outside"):
        fn(make_events(x=[0], y=[H], t=[0], p=[1]), W, H)
    with pytest.raises(ValueError, match="polarity"):
        fn(make_events(x=[0], y=[0], t=[0], p=[2]), W, H)
    with pytest.raises(ValueError, match="width"):
        fn(empty_events(0), 0, H)
    with pytest.raises(TypeError):
        fn(np.zeros(3, np.int64), W, H)


# --------------------------------------------------------------------------------------------
# Hand-computed examples (the `tiny` stream above)


def test_event_histogram_tiny(tiny):
    expected = zeros(2)
    expected[0, 0, 0] = 2  # e0, e2
    expected[0, 0, 1] = 1  # e5
    expected[0, 1, 2] = 1  # e4
    expected[1, 0, 1] = 1  # e1
    expected[1, 2, 3] = 1  # e3
    np.testing.assert_array_equal(event_histogram(tiny, W, H), expected)


def test_binary_event_image_tiny(tiny):
    expected = zeros(2)
    expected[0, 0, 0] = expected[0, 0, 1] = expected[0, 1, 2] = 1
    expected[1, 0, 1] = expected[1, 2, 3] = 1
    np.testing.assert_array_equal(binary_event_image(tiny, W, H), expected)


def test_event_image_tiny(tiny):
    expected = zeros(4)
    # ON counts 2, 1, 1 divided by the ON maximum 2; latest ON t_n: (0,0) e2 0.5, (1,0) e5 1, (2,1) e4 0.75.
    expected[0, 0, 0], expected[0, 0, 1], expected[0, 1, 2] = 1.0, 0.5, 0.5
    expected[1, 0, 0], expected[1, 0, 1], expected[1, 1, 2] = 0.5, 1.0, 0.75
    # OFF counts 1, 1 divided by 1; latest OFF t_n: (1,0) e1 0.25, (3,2) e3 0.75.
    expected[2, 0, 1], expected[2, 2, 3] = 1.0, 1.0
    expected[3, 0, 1], expected[3, 2, 3] = 0.25, 0.75
    np.testing.assert_array_equal(event_image(tiny, W, H), expected)


def test_timestamp_image_tiny(tiny):
    expected = zeros(2)
    expected[0, 0, 0], expected[0, 0, 1], expected[0, 1, 2] = 0.5, 1.0, 0.75
    expected[1, 0, 1], expected[1, 2, 3] = 0.25, 0.75
    np.testing.assert_array_equal(timestamp_image(tiny, W, H), expected)


def test_sorted_time_surface_tiny(tiny):
    # Latest ON timestamps: (0,0) 300, (2,1) 400, (1,0) 500 -> ranks 0, 1, 2 of K = 3 -> 0, 0.5, 1.
    # Latest OFF timestamps: (1,0) 200, (3,2) 400 -> ranks 0, 1 of K = 2 -> 0, 1.
    expected = zeros(4)
    expected[0, 0, 0] = expected[0, 0, 1] = expected[0, 1, 2] = 1  # ON binary image
    expected[1, 0, 0], expected[1, 1, 2], expected[1, 0, 1] = 0.0, 0.5, 1.0
    expected[2, 0, 1] = expected[2, 2, 3] = 1  # OFF binary image
    expected[3, 0, 1], expected[3, 2, 3] = 0.0, 1.0
    np.testing.assert_array_equal(sorted_time_surface(tiny, W, H), expected)
    np.testing.assert_array_equal(sorted_time_surface(tiny, W, H, use_image=False), expected[[1, 3]])


def test_sorted_time_surface_ties_share_a_value():
    # (1,0) fires at 5 and 50 (only its latest counts). Latest ON timestamps per column 10, 50, 30, 30
    # -> distinct 10 < 30 < 50 -> 0, 1, 0.5, 0.5.
    ev = make_events(x=[0, 1, 2, 3, 1], y=[0, 0, 0, 0, 0], t=[10, 5, 30, 30, 50], p=[1, 1, 1, 1, 1])
    out = sorted_time_surface(ev, W, H, use_image=False)
    np.testing.assert_array_equal(out[0, 0], [0.0, 1.0, 0.5, 0.5])
    assert not out[0, 1:].any() and not out[1].any()


def test_dist_tiny_defaults(tiny):
    # patch 5 covers all rows; columns x-2..x+2. ON: counts (0,0) 2, (1,0) 1, (2,1) 1; 9 pixels
    # have 0 events, 2 have 1, 1 has 2: cumulative pixels 9, 11, 12, two of them < 0.99 * 12 = 11.88,
    # so counts are clipped at 2 (no change). Latest t_n: (0,0) 0.5, (1,0) 1, (2,1) 0.75; earliest:
    # (0,0) 0, (1,0) 1, (2,1) 0.75. Every ON pixel sees all three: M = 4, D = (1 - 0) / 4 = 0.25,
    # V = L - 3 * 0.25: (0,0) -0.25 -> 0, (1,0) 0.25, (2,1) 0. Distinct values {0, 0.25}: K = 2,
    # so (1,0) gets 1 / 2 and every other pixel 0.
    # OFF: (1,0) t_n 0.25 and (3,2) t_n 0.75 see each other: M = 2, D = 0.25, V = 0.25 - 0.75 < 0 and
    # 0.75 - 0.75 = 0: all zero.
    expected = zeros(2)
    expected[0, 0, 1] = 0.5
    np.testing.assert_array_equal(dist(tiny, W, H), expected)


def test_dist_tiny_small_patch(tiny):
    # patch 3, alpha 1. ON:
    #   (0,0): window rows 0-1, cols 0-1 holds (0,0) [2 events] and (1,0) [1]: M = 3,
    #          D = (max L 1 - min E 0) / 3, V = 0.5 - 1/3 = 1/6
    #   (1,0): window rows 0-1, cols 0-2 holds all three: M = 4, D = 1/4, V = 1 - 1/4 = 0.75
    #   (2,1): window rows 0-2, cols 1-3 holds (1,0) and (2,1): M = 2, D = (1 - 0.75) / 2, V = 0.625
    #   distinct {0, 1/6, 0.625, 0.75}, K = 4 -> (0,0) 1/4, (2,1) 2/4, (1,0) 3/4.
    # OFF: (1,0) and (3,2) are alone in their 3x3 windows (M = 1): isolated, both 0.
    expected = zeros(2)
    expected[0, 0, 0], expected[0, 1, 2], expected[0, 0, 1] = 0.25, 0.5, 0.75
    np.testing.assert_array_equal(dist(tiny, W, H, alpha=1.0, patch_size=3), expected)


def test_dist_clips_counts_by_number_of_levels():
    # Four ON events at (0,0), t 0..300, then one at (1,0), t 400: t_n 0, .25, .5, .75 and 1.
    # Count levels 0 (10 pixels), 1 (1), 4 (1): cumulative 10, 11, 12; two are < 11.88, so the clip
    # level is 2 (N-ImageNet's rule counts levels; the 99% quantile would be 4). Clipped count at
    # (0,0) is 2, so both pixels see M = 2 + 1 = 3, D = (1 - 0) / 3; with alpha 2.5:
    # (0,0) 0.75 - 0.833 -> 0, (1,0) 1 - 0.833 = 0.167 -> distinct {0, 0.167}: (1,0) gets 1/2.
    # (Unclipped, M = 5 would give 0.25 and 0.5 -> ranks 1/3 and 2/3.)
    ev = make_events(x=[0, 0, 0, 0, 1], y=[0] * 5, t=[0, 100, 200, 300, 400], p=[1] * 5)
    expected = zeros(2)
    expected[0, 0, 1] = 0.5
    np.testing.assert_array_equal(dist(ev, W, H, alpha=2.5, patch_size=3), expected)


def test_dist_rejects_even_patch(tiny):
    with pytest.raises(ValueError, match="odd"):
        dist(tiny, W, H, patch_size=4)


def test_voxel_grid_tiny(tiny):
    # 3 bins centred at t_n = 0, 0.5, 1; position s = 2 t_n. Channels 0-2 OFF, 3-5 ON.
    #   e0 ON  s 0   -> ON bin 0 at (0,0): 1
    #   e1 OFF s 0.5 -> OFF bins 0 and 1 at (1,0): 0.5 each
    #   e2 ON  s 1   -> ON bin 1 at (0,0): 1
    #   e3 OFF s 1.5 -> OFF bins 1 and 2 at (3,2): 0.5 each
    #   e4 ON  s 1.5 -> ON bins 1 and 2 at (2,1): 0.5 each
    #   e5 ON  s 2   -> ON bin 2 at (1,0): 1
    count = np.zeros((6, H, W), np.float32)
    count[0, 0, 1] = count[1, 0, 1] = 0.5
    count[1, 2, 3] = count[2, 2, 3] = 0.5
    count[3, 0, 0] = count[4, 0, 0] = 1
    count[4, 1, 2] = count[5, 1, 2] = 0.5
    count[5, 0, 1] = 1
    np.testing.assert_array_equal(voxel_grid(tiny, W, H, num_bins=3), count)
    # "polarity": the OFF half is negated.
    polarity = count.copy()
    polarity[:3] *= -1
    np.testing.assert_array_equal(voxel_grid(tiny, W, H, num_bins=3, measurement="polarity"), polarity)
    # "timestamp" (EST): each event's weights times its t_n: e0 0, e1 0.25, e2 0.5, e3/e4 0.75, e5 1.
    stamp = np.zeros((6, H, W), np.float32)
    stamp[0, 0, 1] = stamp[1, 0, 1] = 0.125
    stamp[1, 2, 3] = stamp[2, 2, 3] = 0.375
    stamp[4, 0, 0] = 0.5
    stamp[4, 1, 2] = stamp[5, 1, 2] = 0.375
    stamp[5, 0, 1] = 1
    np.testing.assert_array_equal(voxel_grid(tiny, W, H, num_bins=3, measurement="timestamp"), stamp)


def test_voxel_grid_one_bin_and_bad_parameters(tiny):
    one = voxel_grid(tiny, W, H, num_bins=1)
    np.testing.assert_array_equal(one, event_histogram(tiny, W, H)[::-1])  # [OFF, ON]
    with pytest.raises(ValueError, match="num_bins"):
        voxel_grid(tiny, W, H, num_bins=0)
    with pytest.raises(ValueError, match="measurement"):
        voxel_grid(tiny, W, H, measurement="intensity")


def test_time_surface_tiny(tiny):
    # tau 100 us, t_ref = t_max = 500. ON: (0,0) last 300 -> e^-2, (2,1) 400 -> e^-1, (1,0) 500 -> 1.
    # OFF: (1,0) last 200 -> e^-3, (3,2) 400 -> e^-1.
    expected = np.zeros((2, H, W))
    expected[0, 0, 0], expected[0, 1, 2], expected[0, 0, 1] = math.exp(-2), math.exp(-1), 1.0
    expected[1, 0, 1], expected[1, 2, 3] = math.exp(-3), math.exp(-1)
    np.testing.assert_allclose(time_surface(tiny, W, H, tau_us=100), expected.astype(np.float32), rtol=1e-6)
    # Default tau = 0.3 * 400 us = 120 us (N-ImageNet's exp(-(1 - T) / 0.3)).
    expected[0, 0, 0], expected[0, 1, 2] = math.exp(-200 / 120), math.exp(-100 / 120)
    expected[1, 0, 1], expected[1, 2, 3] = math.exp(-300 / 120), math.exp(-100 / 120)
    np.testing.assert_allclose(time_surface(tiny, W, H), expected.astype(np.float32), rtol=1e-6)


def test_time_surface_reference_time(tiny):
    # t_ref 350: e3, e4, e5 are in the future and ignored. ON (0,0) last 300 -> e^-0.5; OFF (1,0) 200
    # -> e^-1.5 (tau 100).
    expected = np.zeros((2, H, W))
    expected[0, 0, 0] = math.exp(-0.5)
    expected[1, 0, 1] = math.exp(-1.5)
    out = time_surface(tiny, W, H, tau_us=100, t_ref=350)
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)
    with pytest.raises(ValueError, match="tau_us"):
        time_surface(tiny, W, H, tau_us=0)


# --------------------------------------------------------------------------------------------
# Single events: (x 2, y 1, t 7, ON), and the same event as OFF


@pytest.mark.parametrize("on", [True, False])
def test_single_event(on):
    ev = make_events(x=[2], y=[1], t=[7], p=[int(on)])
    c = 0 if on else 1  # [ON, OFF] channel of two-channel representations
    one = zeros(2)
    one[c, 1, 2] = 1
    np.testing.assert_array_equal(event_histogram(ev, W, H), one)
    np.testing.assert_array_equal(binary_event_image(ev, W, H), one)
    np.testing.assert_array_equal(timestamp_image(ev, W, H), one)  # t_n = 1 with no time span
    np.testing.assert_array_equal(time_surface(ev, W, H), one)  # an event at t_ref
    np.testing.assert_array_equal(time_surface(ev, W, H, tau_us=5.0, t_ref=12), one * math.exp(-1))
    np.testing.assert_array_equal(dist(ev, W, H), zeros(2))  # alone in its neighbourhood
    four = zeros(4)
    four[2 * c, 1, 2] = four[2 * c + 1, 1, 2] = 1  # count / max = 1, latest t_n = 1
    np.testing.assert_array_equal(event_image(ev, W, H), four)
    four[2 * c + 1, 1, 2] = 0  # a single latest timestamp: K = 1 -> 0, only the image channel is set
    np.testing.assert_array_equal(sorted_time_surface(ev, W, H), four)
    grid = zeros(18)
    grid[(9 if on else 0) + 8, 1, 2] = 1  # t_n = 1: the last bin of its polarity
    np.testing.assert_array_equal(voxel_grid(ev, W, H), grid)


# --------------------------------------------------------------------------------------------
# Invariants over seeded random streams


def _latest_normalised(ev, on):
    """Latest normalised time per pixel, vectorised: sort by time, the last write wins."""
    t = ev["t"].astype(np.float64)
    tn = (t - t.min()) / (t.max() - t.min())
    order = np.argsort(ev["t"], kind="stable")
    sel = order[(ev["p"][order] == 1) == on]
    img = np.zeros((SH, SW))
    img[ev["y"][sel], ev["x"][sel]] = tn[sel]
    return img


def test_histogram_and_binary_image_invariants(stream):
    hist = event_histogram(stream, SW, SH)
    assert hist[0].sum() == np.count_nonzero(stream["p"] == 1)
    assert hist[1].sum() == np.count_nonzero(stream["p"] == 0)
    expected = np.zeros((2, SH, SW))
    np.add.at(expected, (1 - stream["p"].astype(np.int64), stream["y"], stream["x"]), 1)
    np.testing.assert_array_equal(hist, expected)
    binary = binary_event_image(stream, SW, SH)
    assert set(np.unique(binary)) <= {0.0, 1.0}
    np.testing.assert_array_equal(binary, (hist > 0).astype(np.float32))


def test_timestamp_and_event_image_invariants(stream):
    ts = timestamp_image(stream, SW, SH)
    assert ts.min() >= 0 and ts.max() == 1
    for c, on in ((0, True), (1, False)):
        np.testing.assert_allclose(ts[c], _latest_normalised(stream, on), atol=1e-7)
    img = event_image(stream, SW, SH)
    hist = event_histogram(stream, SW, SH)
    np.testing.assert_allclose(img[0], hist[0] / hist[0].max(), atol=1e-7)
    np.testing.assert_allclose(img[2], hist[1] / hist[1].max(), atol=1e-7)
    np.testing.assert_array_equal(img[[1, 3]], ts)


def test_sorted_time_surface_invariants(stream):
    out = sorted_time_surface(stream, SW, SH)
    assert out.min() >= 0 and out.max() <= 1
    binary = binary_event_image(stream, SW, SH)
    np.testing.assert_array_equal(out[[0, 2]], binary)
    for c, on in ((1, True), (3, False)):
        latest = np.full((SH, SW), -1, np.int64)
        sel = (stream["p"] == 1) == on
        np.maximum.at(latest, (stream["y"][sel], stream["x"][sel]), stream["t"][sel])
        active = latest >= 0
        assert not out[c][~active].any()
        values, stamps = out[c][active], latest[active]
        assert values.min() == 0 and values.max() == 1
        # Ordered like the timestamps: same order, ties <-> equal values.
        i, j = np.triu_indices(len(values), 1)
        np.testing.assert_array_equal(np.sign(values[i] - values[j]), np.sign(stamps[i] - stamps[j]))
        # Evenly spaced dense ranks.
        distinct = np.unique(stamps)
        np.testing.assert_allclose(values, np.searchsorted(distinct, stamps) / (len(distinct) - 1), atol=1e-7)


def test_dist_invariants(stream):
    out = dist(stream, SW, SH)
    hist = event_histogram(stream, SW, SH)
    assert out.min() >= 0 and out.max() < 1
    assert not out[hist == 0].any()
    for c in range(2):
        k = len(np.unique(out[c]))  # ranks r / K for r = 0 .. K-1
        np.testing.assert_allclose(np.unique(out[c]), np.arange(k) / k, atol=1e-7)
    # Without the discount (alpha 0) a pixel keeps its latest time, so DiST orders like the timestamp
    # image among the non-zero pixels (isolated events are 0).
    plain = dist(stream, SW, SH, alpha=0.0)
    ts = timestamp_image(stream, SW, SH)
    for c in range(2):
        nz = plain[c] > 0
        i, j = np.triu_indices(np.count_nonzero(nz), 1)
        a, b = plain[c][nz], ts[c][nz]
        np.testing.assert_array_equal(np.sign(a[i] - a[j]), np.sign(b[i] - b[j]))


@pytest.mark.parametrize("num_bins", [1, 2, 5, 9])
def test_voxel_grid_mass(stream, num_bins):
    n_on = np.count_nonzero(stream["p"] == 1)
    n_off = len(stream) - n_on
    grid = voxel_grid(stream, SW, SH, num_bins=num_bins).astype(np.float64)
    assert grid.shape == (2 * num_bins, SH, SW)
    assert grid.min() >= 0
    assert grid.sum() == pytest.approx(len(stream), rel=1e-6)
    # Per pixel, the bins of each polarity sum to that pixel's count (weights sum to 1 per event).
    hist = event_histogram(stream, SW, SH)
    np.testing.assert_allclose(grid[num_bins:].sum(axis=0), hist[0], atol=1e-5)
    np.testing.assert_allclose(grid[:num_bins].sum(axis=0), hist[1], atol=1e-5)
    polarity = voxel_grid(stream, SW, SH, num_bins=num_bins, measurement="polarity").astype(np.float64)
    assert polarity[num_bins:].sum() == pytest.approx(n_on, rel=1e-6)
    assert polarity[:num_bins].sum() == pytest.approx(-n_off, rel=1e-6)
    stamp = voxel_grid(stream, SW, SH, num_bins=num_bins, measurement="timestamp").astype(np.float64)
    t = stream["t"].astype(np.float64)
    assert stamp.sum() == pytest.approx(((t - t.min()) / (t.max() - t.min())).sum(), rel=1e-6)


def test_voxel_grid_bilinear_weights():
    # Two OFF events at t 0 and 800 fix the time range; an ON event at t = 100 k has t_n = k / 8 and,
    # with 5 bins, position s = 4 t_n: its unit mass is split between bins floor(s) and floor(s) + 1.
    for k in range(9):
        ev = make_events(x=[0, 0, 5], y=[0, 0, 4], t=[0, 800, 100 * k], p=[0, 0, 1])
        grid = voxel_grid(ev, SW, SH, num_bins=5)
        s = k / 2
        lo = min(int(s), 3)
        expected = np.zeros(5)
        expected[lo], expected[lo + 1] = lo + 1 - s, s - lo
        np.testing.assert_allclose(grid[5:, 4, 5], expected, atol=1e-7)
        assert grid[5:].sum() == pytest.approx(1.0)


def test_time_surface_invariants(stream):
    out = time_surface(stream, SW, SH)
    hist = event_histogram(stream, SW, SH)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out > 0, hist > 0)
    # N-ImageNet's formula exp(-(1 - T) / 0.3) on the timestamp image T, at pixels with events.
    ts = timestamp_image(stream, SW, SH).astype(np.float64)
    np.testing.assert_allclose(out[hist > 0], np.exp(-(1 - ts[hist > 0]) / 0.3), rtol=1e-5)
    t_max = int(stream["t"].max())
    latest_pixels = stream[stream["t"] == t_max]
    for e in latest_pixels:
        assert out[0 if e["p"] else 1, e["y"], e["x"]] == 1
    # A fixed tau and a later reference time: exp(-(t_ref - t_last) / tau) from the latest timestamps.
    t_ref = t_max + 100
    fixed = time_surface(stream, SW, SH, tau_us=200.0, t_ref=t_ref)
    for c, on in ((0, True), (1, False)):
        latest = np.full((SH, SW), -1, np.int64)
        sel = (stream["p"] == 1) == on
        np.maximum.at(latest, (stream["y"][sel], stream["x"][sel]), stream["t"][sel])
        active = latest >= 0
        np.testing.assert_allclose(fixed[c][active], np.exp(-(t_ref - latest[active]) / 200.0), rtol=1e-6)
        assert not fixed[c][~active].any()
