"""Display kernels of the viewer: the decaying event frame.

State: ``last_t`` int64 ``(2 * H * W,)``, the newest timestamp per (polarity, row, column)
(``NEVER`` where no event came: weight 0). Each pixel is drawn as the blend of the ON and OFF colours,
each weighted by its decay ``exp(-(now - t) / tau)``, over the background:

    w_on, w_off = decay(ON), decay(OFF)
    colour = (w_on * ON + w_off * OFF) / (w_on + w_off)
    pixel  = round(BG + min(w_on + w_off, 1) * (colour - BG))

The numba kernels (GIL released, so a viewer drawing never stalls the pipeline's thread) are the
fast path; :func:`latest_times_reference` and :func:`decay_rgb_reference` are the numpy oracles
they are tested against.
"""

from __future__ import annotations

import numba
import numpy as np

NEVER = np.iinfo(np.int64).min // 2  # "no event yet": decays to exactly 0
_CUTOFF = 30.0  # ages beyond 30 tau weigh < 1e-13: skip the exponential


@numba.njit(cache=True, nogil=True)
def latest_times(last_t, x, y, p, t, width, height):
    """``last_t[(p * H + y) * W + x] = max(last_t[...], t)`` for every event inside the sensor;
    returns the largest timestamp seen (or NEVER when no event was inside)."""
    newest = NEVER
    for i in range(x.shape[0]):
        xi, yi = np.int64(x[i]), np.int64(y[i])
        if xi >= width or yi >= height:
            continue
        k = ((np.int64(1) if p[i] != 0 else np.int64(0)) * height + yi) * width + xi
        ti = np.int64(t[i])
        if ti > last_t[k]:
            last_t[k] = ti
        if ti > newest:
            newest = ti
    return newest


@numba.njit(cache=True, nogil=True)
def decay_rgb(last_t, now, tau, background, on, off, out):
    """Fills ``out`` ``(H, W, 3)`` uint8 with the decaying frame at stream time ``now``."""
    height, width = out.shape[0], out.shape[1]
    plane = height * width
    inv_tau = 1.0 / tau
    for r in range(height):
        for c in range(width):
            k = r * width + c
            a_off = (now - last_t[k]) * inv_tau
            a_on = (now - last_t[plane + k]) * inv_tau
            w_off = np.exp(-max(a_off, 0.0)) if a_off < _CUTOFF and last_t[k] != NEVER else 0.0
            w_on = np.exp(-max(a_on, 0.0)) if a_on < _CUTOFF and last_t[plane + k] != NEVER else 0.0
            s = w_on + w_off
            for ch in range(3):
                if s > 0.0:
                    colour = (w_on * on[ch] + w_off * off[ch]) / s
                    v = background[ch] + min(s, 1.0) * (colour - background[ch])
                else:
                    v = background[ch]
                v = np.floor(v + 0.5)  # round half up (the reference does the same)
                out[r, c, ch] = np.uint8(min(max(v, 0.0), 255.0))


def latest_times_reference(last_t, events, width, height) -> int:
    """numpy oracle of :func:`latest_times` (takes an ``EVENT_DTYPE`` array)."""
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    ok = (x < width) & (y < height)
    if not ok.any():
        return int(NEVER)
    p = (events["p"][ok] != 0).astype(np.int64)
    t = events["t"][ok].astype(np.int64)
    np.maximum.at(last_t, (p * height + y[ok]) * width + x[ok], t)
    return int(t.max())


def decay_rgb_reference(last_t, now, tau, background, on, off, height, width) -> np.ndarray:
    """numpy oracle of :func:`decay_rgb`."""
    age = (now - last_t.astype(np.float64)).reshape(2, height, width) / tau
    hit = (last_t != NEVER).reshape(2, height, width)
    weight = np.where((age < _CUTOFF) & hit, np.exp(-np.maximum(age, 0.0)), 0.0)
    w_off, w_on = weight[0][..., None], weight[1][..., None]
    s = w_on + w_off
    bg, on, off = (np.asarray(v, np.float64) for v in (background, on, off))
    with np.errstate(invalid="ignore", divide="ignore"):
        colour = np.where(s > 0, (w_on * on + w_off * off) / np.where(s > 0, s, 1.0), bg)
    v = np.floor(bg + np.minimum(s, 1.0) * (colour - bg) + 0.5)
    return np.clip(v, 0, 255).astype(np.uint8)
