"""numba CPU representation kernels == the numpy references, on seeded random streams (including
empty, single-event, equal-timestamp and border cases) and on real recordings."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import shared_file
from evstream.kernels.events import make_events
from evstream.kernels.representations import REPRESENTATIONS, cpu
from evstream.kernels.representations.cpu import KERNELS, histogram_threads
from evstream.replay import read_events

DATA = Path(__file__).parent / "data"


def _random(rng, n, w, h, max_dt=100):
    t = 1000 + np.cumsum(rng.integers(0, max_dt + 1, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("n", [0, 1, 2, 50, 3000])
@pytest.mark.parametrize("max_dt", [0, 100])
def test_cpu_equals_reference_on_random_streams(name, n, max_dt):
    rng = np.random.default_rng(n * 7 + max_dt)
    ev = _random(rng, n, 17, 11, max_dt)
    ev["x"][: n // 10] = 16  # right border
    want = REPRESENTATIONS[name](ev, 17, 11)
    got = KERNELS[name](ev, 17, 11)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "name, params",
    [
        ("sorted_time_surface", {"use_image": False}),
        ("dist", {"patch_size": 3}),
        ("dist", {"patch_size": 1}),
        ("dist", {"alpha": 0.5, "clip_rate": 0.5}),
        ("voxel_grid", {"num_bins": 1}),
        ("voxel_grid", {"num_bins": 5, "measurement": "polarity"}),
        ("voxel_grid", {"num_bins": 4, "measurement": "timestamp"}),
    ],
)
def test_parameters_match(name, params):
    ev = _random(np.random.default_rng(11), 2000, 23, 13, 30)
    np.testing.assert_allclose(
        KERNELS[name](ev, 23, 13, **params), REPRESENTATIONS[name](ev, 23, 13, **params), rtol=1e-6, atol=1e-7
    )


def _parallel(n, w, h):
    """Skip unless the histogram of n events on w x h runs on several threads (it does on 2 cores)."""
    threads = histogram_threads(n, w, h)
    if threads < 2:
        pytest.skip(f"one numba thread here ({numba.get_num_threads()} available)")
    return threads


def _assert_histogram_is_reference(ev, w, h):
    got = KERNELS["event_histogram"](ev, w, h)
    want = REPRESENTATIONS["event_histogram"](ev, w, h)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert got.sum() == len(ev)


def test_histogram_threads_rule():
    # 2 threads from max(65536, bins / 16) events on; one thread per max(32768, bins / 32) events.
    assert histogram_threads(65535, 34, 34, threads=2) == 1
    assert histogram_threads(65536, 34, 34, threads=2) == 2
    assert histogram_threads(65536, 640, 480, threads=2) == 2
    assert histogram_threads(115199, 1280, 720, threads=2) == 1
    assert histogram_threads(115200, 1280, 720, threads=2) == 2
    assert histogram_threads(2_000_000, 1280, 720, threads=8) == 8
    assert histogram_threads(100_000, 34, 34, threads=64) == 3
    assert histogram_threads(10**9, 34, 34, threads=1) == 1
    assert histogram_threads(0, 34, 34, threads=2) == 1


def test_parallel_histogram_equals_reference():
    rng = np.random.default_rng(3)
    n = 3 * 2 * cpu.MIN_EVENTS_PER_THREAD + 17
    _parallel(n, 64, 48)
    _assert_histogram_is_reference(_random(rng, n, 64, 48), 64, 48)


@pytest.mark.parametrize("hot", [70_000, 140_000])
def test_parallel_histogram_counts_past_uint8_and_uint16_at_one_pixel(hot):
    # One pixel gets > 65536 (> 131072) events, spread over both halves of the stream so that the
    # private uint8 count of every thread wraps hundreds of times at that pixel.
    rng = np.random.default_rng(hot)
    ev = _random(rng, hot + 50_001, 64, 48)
    where = rng.permutation(len(ev))[:hot]
    ev["x"][where], ev["y"][where], ev["p"][where] = 5, 47, 1
    _parallel(len(ev), 64, 48)
    for half in (ev[: len(ev) // 2], ev[len(ev) // 2 :]):
        assert np.count_nonzero((half["x"] == 5) & (half["y"] == 47) & (half["p"] == 1)) > hot // 2 - 5000
    _assert_histogram_is_reference(ev, 64, 48)


@pytest.mark.parametrize("n", [2 * 32768, 2 * 32768 + 511, 3 * 65536 + 255])
def test_parallel_histogram_with_every_event_at_one_pixel(n):
    # The worst case for the wrap lists: every event wraps a count every 256 events (odd n: the
    # threads' slices differ in length).
    ev = make_events(np.full(n, 16), np.zeros(n, int), np.arange(n), np.zeros(n, int))
    _parallel(n, 17, 11)
    got = KERNELS["event_histogram"](ev, 17, 11)
    assert got[1, 0, 16] == n and got.sum() == n


def test_count_wrapping_needs_one_wrap_per_256_events():
    # The wrap list of a slice of m events needs m // 256 entries, the bound event_histogram uses.
    for m in (255, 256, 257, 5 * 256 + 255):
        x, y, p = np.full(m, 3, np.uint16), np.full(m, 2, np.uint16), np.ones(m, np.uint8)
        counts = np.zeros(2 * 4 * 4, np.uint8)
        wraps = np.full(m // 256 + 1, -1, np.int64)
        bad, nwraps = cpu._count_wrapping(x, y, p, 4, 4, counts, wraps)
        assert (bad, nwraps) == (0, m // 256)
        assert (wraps[:nwraps] == 2 * 4 + 3).all() and wraps[nwraps] == -1
        assert counts[2 * 4 + 3] == m % 256 and counts.sum() == m % 256


def test_count_wrapping_finds_a_bad_event_anywhere():
    # Events are counted as four interleaved streams plus a remainder: a bad event in any of them.
    m = 4 * 5 + 3
    for i in range(m):
        for field, value in (("x", 4), ("y", 4), ("p", 2)):
            arrays = {"x": np.full(m, 3, np.uint16), "y": np.full(m, 2, np.uint16), "p": np.ones(m, np.uint8)}
            arrays[field][i] = value
            counts, wraps = np.zeros(2 * 4 * 4, np.uint8), np.empty(1, np.int64)
            bad, _ = cpu._count_wrapping(arrays["x"], arrays["y"], arrays["p"], 4, 4, counts, wraps)
            assert bad > 0, (i, field)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_planes_adds_256_per_wrap(dtype):
    # Above 2**24 events the parallel histogram sums into float64 (then rounded once to float32).
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 256, (3, 40_000)).astype(np.uint8)
    wraps = rng.integers(0, 40_000, (3, 500))
    nwraps = np.array([500, 0, 123])
    out = np.empty(40_000, dtype)
    cpu._sum_planes(counts, wraps, nwraps, out)
    want = counts.astype(np.int64).sum(axis=0)
    for c in range(3):
        np.add.at(want, wraps[c, : nwraps[c]], 256)
    np.testing.assert_array_equal(out, want)


def _clustered(rng, n, w, h):
    """Events around a few centres with a hot pixel, as real recordings look (t sorted)."""
    centres = rng.integers(0, [w, h], (8, 2))
    which = rng.integers(0, 8, n)
    xy = np.rint(centres[which] + rng.normal(0, 25, (n, 2))).astype(np.int64)
    x, y = np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1)
    x[::7], y[::7] = w // 3, h // 2
    return make_events(x, y, 1000 + np.arange(n), rng.integers(0, 2, n))


@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_parallel_histogram_1280x720_equals_reference(kind):
    # A Prophesee EVT3 sensor size, just above and well above the parallel threshold.
    rng = np.random.default_rng(12 if kind == "random" else 13)
    for n in (115_200, 300_001):
        _parallel(n, 1280, 720)
        ev = _random(rng, n, 1280, 720) if kind == "random" else _clustered(rng, n, 1280, 720)
        _assert_histogram_is_reference(ev, 1280, 720)


@pytest.mark.parametrize(
    "field, value, where",
    [("x", 1280, 3), ("y", 720, -3), ("p", 2, 150_000), ("x", 65535, -1), ("p", 255, 0)],
)
def test_parallel_histogram_rejects_bad_events_like_the_reference(field, value, where):
    rng = np.random.default_rng(6)
    ev = _random(rng, 300_000, 1280, 720)
    _parallel(len(ev), 1280, 720)
    ev[field][where] = value
    with pytest.raises(ValueError) as want:
        REPRESENTATIONS["event_histogram"](ev, 1280, 720)
    with pytest.raises(ValueError) as got:
        KERNELS["event_histogram"](ev, 1280, 720)
    assert str(got.value) == str(want.value)
    assert "outside" in str(got.value) or "polarity" in str(got.value)


def test_kernels_read_views_and_never_write_the_input():
    ev = _random(np.random.default_rng(8), 500, 9, 7)
    before = ev.copy()
    ev.flags.writeable = False
    for name, fn in KERNELS.items():
        out = fn(ev, 9, 7)
        assert not np.shares_memory(out, ev), name
    np.testing.assert_array_equal(ev, before)


def test_time_surface_parameters_match():
    ev = _random(np.random.default_rng(5), 500, 9, 7)
    t_ref = int(ev["t"][300])
    for kw in ({"tau_us": 250.0}, {"t_ref": t_ref}, {"tau_us": 40.0, "t_ref": t_ref}):
        np.testing.assert_allclose(
            KERNELS["time_surface"](ev, 9, 7, **kw),
            REPRESENTATIONS["time_surface"](ev, 9, 7, **kw),
            rtol=1e-6,
            atol=1e-7,
        )


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cpu_equals_reference_on_a_real_recording(name):
    ev = read_events(shared_file("bin/tonic_sample_nmnist.bin"))
    np.testing.assert_allclose(
        KERNELS[name](ev, 34, 34), REPRESENTATIONS[name](ev, 34, 34), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cpu_equals_reference_on_a_davis_recording(name):
    # Real DAVIS346 events shipped in tests/data (MIT): a larger sensor, hot pixels, many ties.
    ev = read_events(DATA / "davis346_aestream.aedat4")[:20_000]
    np.testing.assert_allclose(
        KERNELS[name](ev, 346, 260), REPRESENTATIONS[name](ev, 346, 260), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_bad_input_is_rejected_like_the_reference(name):
    fn = KERNELS[name]
    with pytest.raises(ValueError, match="outside"):
        fn(make_events([40], [1], [5], [1]), 17, 11)
    with pytest.raises(ValueError, match="outside"):
        fn(make_events([4], [11], [5], [1]), 17, 11)
    with pytest.raises(ValueError, match="polarity"):
        fn(make_events([4], [1], [5], [3]), 17, 11)
    with pytest.raises(TypeError):
        fn(np.zeros(3), 17, 11)
    with pytest.raises(ValueError, match="height"):
        fn(make_events([4], [1], [5], [1]), 17, 0)
