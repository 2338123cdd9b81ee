"""numba CPU representation kernels == the numpy references, on seeded random streams (including
empty, single-event, equal-timestamp and border cases) and on real recordings."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import shared_file
from evstream.kernels.events import make_events
from evstream.kernels.representations import REPRESENTATIONS
from evstream.kernels.representations.cpu import KERNELS, PARALLEL_MIN_EVENTS, PRIVATE_PLANES_BYTES
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


def test_parallel_histogram_equals_bincount():
    # Above PARALLEL_MIN_EVENTS the histogram is counted by several threads into private planes.
    assert numba.get_num_threads() * 2 * 64 * 48 * 4 <= PRIVATE_PLANES_BYTES
    rng = np.random.default_rng(3)
    n = 3 * PARALLEL_MIN_EVENTS + 17
    ev = _random(rng, n, 64, 48)
    flat = (1 - ev["p"].astype(np.int64)) * 64 * 48 + ev["y"].astype(np.int64) * 64 + ev["x"]
    want = np.bincount(flat, minlength=2 * 64 * 48).reshape(2, 48, 64)
    got = KERNELS["event_histogram"](ev, 64, 48)
    np.testing.assert_array_equal(got, want)
    assert got.sum() == n
    ev["y"][n - 5] = 48
    with pytest.raises(ValueError, match="outside"):
        KERNELS["event_histogram"](ev, 64, 48)


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
