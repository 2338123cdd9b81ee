"""numba CPU kernels for the scatter-type representations; each equals its reference in
``reference.py`` (tested on seeded random streams and real recordings).

Kernels take the event fields as arrays and write into a preallocated float32 ``(C, H, W)``
output; the public functions validate input exactly as the references do.
"""

from __future__ import annotations

import numba
import numpy as np

from .reference import _unpack, time_surface_params


@numba.njit(cache=True, nogil=True)
def _histogram(x, y, on, out):
    for i in range(x.shape[0]):
        out[0 if on[i] else 1, y[i], x[i]] += 1.0


@numba.njit(cache=True, nogil=True)
def _binary(x, y, on, out):
    for i in range(x.shape[0]):
        out[0 if on[i] else 1, y[i], x[i]] = 1.0


@numba.njit(cache=True, nogil=True)
def _latest_time(x, y, on, t, t_min, t_max, out, c_on, c_off):
    """out[c, y, x] = max normalised time per pixel and polarity (0 where none)."""
    span = float(t_max - t_min)
    for i in range(x.shape[0]):
        tn = 1.0 if span == 0.0 else (t[i] - t_min) / span
        c = c_on if on[i] else c_off
        if tn > out[c, y[i], x[i]]:
            out[c, y[i], x[i]] = tn


@numba.njit(cache=True, nogil=True)
def _last_event(x, y, on, t, t_ref, last, seen):
    for i in range(x.shape[0]):
        c = 0 if on[i] else 1
        if t[i] <= t_ref and (not seen[c, y[i], x[i]] or t[i] > last[c, y[i], x[i]]):
            last[c, y[i], x[i]] = t[i]
            seen[c, y[i], x[i]] = True


def event_histogram(events, width, height):
    """numba version of :func:`reference.event_histogram`."""
    x, y, _, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float32)
    _histogram(x, y, on, out)
    return out


def binary_event_image(events, width, height):
    """numba version of :func:`reference.binary_event_image`."""
    x, y, _, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float32)
    _binary(x, y, on, out)
    return out


def timestamp_image(events, width, height):
    """numba version of :func:`reference.timestamp_image`."""
    x, y, t, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    if len(t):
        _latest_time(x, y, on, t, int(t.min()), int(t.max()), out, 0, 1)
    return out.astype(np.float32)


def event_image(events, width, height):
    """numba version of :func:`reference.event_image`."""
    x, y, t, on = _unpack(events, width, height)
    out = np.zeros((4, height, width), np.float64)
    if len(t):
        counts = np.zeros((2, height, width), np.float32)
        _histogram(x, y, on, counts)
        for c, k in ((0, 0), (2, 1)):
            top = counts[k].max()
            if top > 0:
                out[c] = counts[k] / np.float64(top)
        _latest_time(x, y, on, t, int(t.min()), int(t.max()), out, 1, 3)
    return out.astype(np.float32)


def time_surface(events, width, height, *, tau_us=None, t_ref=None):
    """numba version of :func:`reference.time_surface`."""
    x, y, t, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    if len(t) == 0:
        return out.astype(np.float32)
    t_ref, tau = time_surface_params(t, tau_us, t_ref)
    last = np.zeros((2, height, width), np.int64)
    seen = np.zeros((2, height, width), np.bool_)
    _last_event(x, y, on, t, t_ref, last, seen)
    age = (t_ref - last).astype(np.float64)
    if tau > 0.0:
        out[seen] = np.exp(-age[seen] / tau)
    else:
        out[seen] = age[seen] == 0
    out[seen & (age == 0)] = 1.0
    return out.astype(np.float32)


KERNELS = {
    "event_histogram": event_histogram,
    "binary_event_image": binary_event_image,
    "event_image": event_image,
    "timestamp_image": timestamp_image,
    "time_surface": time_surface,
}
