"""numba CPU representation kernels == the numpy references, on seeded random streams (including
empty, single-event, equal-timestamp and border cases) and on real recordings."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_file
from evstream.kernels.events import make_events
from evstream.kernels.representations import REPRESENTATIONS
from evstream.kernels.representations.cpu import KERNELS
from evstream.replay import read_events


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


def test_bad_input_is_rejected_like_the_reference():
    ev = make_events([40], [1], [5], [1])
    with pytest.raises(ValueError, match="outside"):
        KERNELS["event_histogram"](ev, 17, 11)
    with pytest.raises(TypeError):
        KERNELS["event_histogram"](np.zeros(3), 17, 11)
