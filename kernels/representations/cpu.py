"""numba CPU kernels for every representation; each equals its reference in ``reference.py``
(tested on seeded random streams, edge cases and real recordings).

Design:

* Kernels read the event fields as strided *views* of the structured array (no per-field copies)
  and check coordinates and polarities in the same pass (:func:`_first_bad`; the histogram fuses
  the check into its counting loop). Errors are raised exactly as the references raise them.
* Counts are accumulated in integers and converted once, so they stay exact past float32's 2**24.
* Values derived from normalised time are computed in float64 with the same operations, in the same
  order, as the reference, and rounded to float32 once at the end.
* The event histogram, the hot path of the runtime, runs on several threads for large inputs
  (:func:`histogram_threads`): each thread counts a contiguous slice of the events into a private
  uint8 plane (1.8 MB at 1280x720, within a core's 2 MiB L2 cache), recording the bins whose
  count wraps past 255, and the planes plus 256 per wrap are summed per pixel in parallel.
  Otherwise (and for the other scatter-type kernels, whose outputs are too large to privatise per
  thread) one thread scans the events.
* Ranking steps (sorted time surface, DiST) use ``np.unique`` on the active (non-zero) values,
  O(A log A) for A active pixels; DiST's neighbourhood sums and extrema are taken only around
  pixels with events.
"""

from __future__ import annotations

import numba
import numpy as np

from .reference import (
    _MEASUREMENTS,
    DIST_ALPHA,
    DIST_CLIP_RATE,
    DIST_PATCH_SIZE,
    check_events,
    check_patch_size,
    check_voxel_params,
    range_error,
    time_surface_params,
)

#: The event histogram uses as many of numba's threads as get at least this many events each ...
MIN_EVENTS_PER_THREAD = 1 << 15
#: ... and at least one event per this many histogram bins each: every thread zeroes and sums a
#: private plane of all the bins, so with fewer events one thread is faster (measured on the 2-core
#: development machine from 34x34 to 4096x2160 sensors; this also bounds the private planes to
#: twice the bytes of the events).
BINS_PER_THREAD_EVENT = 32


# --------------------------------------------------------------------------------------------
# Validation: field views, one pass


@numba.njit(cache=True, nogil=True)
def _first_bad(x, y, p, width, height):
    """Index of the first event outside the sensor or with polarity > 1, or -1."""
    for i in range(x.shape[0]):
        if x[i] >= width or y[i] >= height or p[i] > 1:
            return i
    return -1


def _fields(events, width, height, check=True):
    """``(x, y, p, t)`` views of the validated events (no copies)."""
    events = check_events(events, width, height)
    x, y, p, t = events["x"], events["y"], events["p"], events["t"]
    if check and len(events) and _first_bad(x, y, p, width, height) >= 0:
        raise ValueError(range_error(x, y, p, width, height))
    return x, y, p, t


# --------------------------------------------------------------------------------------------
# Histogram and binary image


@numba.njit(cache=True, nogil=True)
def _count(x, y, p, width, height, out):
    """out[(1 - p) * H * W + y * W + x] += 1 for every event (any numeric ``out``); returns the
    number of invalid events (not counted). Callers pass slices rather than index bounds: a loop
    from 0 lets numba drop its negative-index handling (measured 20% faster)."""
    nbad = 0
    for i in range(x.shape[0]):
        k = _bin(x, y, p, i, width, height)
        if k < 0:
            nbad += 1
        else:
            out[k] += 1
    return nbad


@numba.njit(cache=True, nogil=True)
def _bin(x, y, p, i, width, height):
    """Histogram bin of event i, (1 - p) * H * W + y * W + x, or -1 if the event is invalid."""
    xi = np.int64(x[i])
    yi = np.int64(y[i])
    pi = np.int64(p[i])
    if xi >= width or yi >= height or pi > 1:
        return -1
    return (1 - pi) * (width * height) + yi * width + xi


@numba.njit(cache=True, nogil=True)
def _add_wrapping(counts, wraps, nwraps, k):
    """counts[k] += 1 modulo 256, appending k to ``wraps`` when the count wraps to 0; returns the
    new number of wraps."""
    c = counts[k] + 1
    counts[k] = c  # stored modulo 256
    if c == 256:
        wraps[nwraps] = k
        return nwraps + 1
    return nwraps


@numba.njit(cache=True, nogil=True)
def _count_wrapping(x, y, p, width, height, counts, wraps):
    """Counts the events into uint8 ``counts`` that are zero on entry and wrap at 256: the index of a
    count that wraps to 0 is appended to ``wraps``, so the true count of bin k is ``counts[k]`` plus
    256 per occurrence of k in ``wraps``. Each wrap takes 256 events, so ``wraps`` needs at most
    ``len(x) // 256`` entries. Returns (non-zero if any event is invalid, wraps appended).

    The events are taken as four interleaved streams (events i, i + m, i + 2m, i + 3m): their
    increments do not depend on each other, so the core overlaps their cache misses, and events
    that follow each other at one pixel (common in real recordings) do not wait on each other's
    stores; measured 7-18% faster than one stream on random and real 2-core runs."""
    n = x.shape[0]
    m = n // 4
    nbad = 0
    nwraps = 0
    for i in range(m):
        k0 = _bin(x, y, p, i, width, height)
        k1 = _bin(x, y, p, i + m, width, height)
        k2 = _bin(x, y, p, i + 2 * m, width, height)
        k3 = _bin(x, y, p, i + 3 * m, width, height)
        if k0 < 0 or k1 < 0 or k2 < 0 or k3 < 0:
            nbad += 1
        else:
            nwraps = _add_wrapping(counts, wraps, nwraps, k0)
            nwraps = _add_wrapping(counts, wraps, nwraps, k1)
            nwraps = _add_wrapping(counts, wraps, nwraps, k2)
            nwraps = _add_wrapping(counts, wraps, nwraps, k3)
    for i in range(4 * m, n):
        k = _bin(x, y, p, i, width, height)
        if k < 0:
            nbad += 1
        else:
            nwraps = _add_wrapping(counts, wraps, nwraps, k)
    return nbad, nwraps


@numba.njit(cache=True, nogil=True, parallel=True)
def _histogram_counts(x, y, p, width, height, counts, wraps, bad, nwraps):
    """Thread c zeroes row c of ``counts`` (so the row is in its cache) and counts the c-th
    contiguous slice of the events into it with :func:`_count_wrapping` (the loop body is a
    separate function: numba optimises it better than a loop inside prange)."""
    chunks = counts.shape[0]
    n = x.shape[0]
    for c in numba.prange(chunks):
        lo = n * c // chunks
        hi = n * (c + 1) // chunks
        counts[c, :] = 0
        bad[c], nwraps[c] = _count_wrapping(x[lo:hi], y[lo:hi], p[lo:hi], width, height, counts[c], wraps[c])


@numba.njit(cache=True, nogil=True, parallel=True)
def _sum_planes(counts, wraps, nwraps, out):
    """out[j] = sum over chunks of counts[:, j], plus 256 per occurrence of j in the wraps. Summed
    in parallel blocks of pixels, one plane at a time (contiguous loops that vectorise: a loop over
    the planes inside the loop over pixels does not, and was 4x slower), then the few wraps."""
    chunks = counts.shape[0]
    size = out.shape[0]
    block = 1 << 14
    for b in numba.prange((size + block - 1) // block):
        lo = b * block
        hi = min(size, lo + block)
        dst = out[lo:hi]
        src = counts[0, lo:hi]
        for j in range(hi - lo):
            dst[j] = src[j]
        for c in range(1, chunks):
            src = counts[c, lo:hi]
            for j in range(hi - lo):
                dst[j] += src[j]
    for c in range(chunks):
        for i in range(nwraps[c]):
            out[wraps[c, i]] += 256


@numba.njit(cache=True, nogil=True)
def _binary(x, y, p, out):
    for i in range(x.shape[0]):
        out[1 - np.int64(p[i]), y[i], x[i]] = 1.0


def histogram_threads(n, width, height, threads=None):
    """Threads :func:`event_histogram` uses for ``n`` events on a ``width x height`` sensor: as many
    of numba's threads (or of ``threads``) as get at least ``MIN_EVENTS_PER_THREAD`` events and at
    least one event per ``BINS_PER_THREAD_EVENT`` bins each; at least 1. With 2 threads: 2 from
    max(65536, bins / 16) events on (bins = 2 x width x height)."""
    threads = numba.get_num_threads() if threads is None else threads
    per_thread = max(MIN_EVENTS_PER_THREAD, 2 * width * height // BINS_PER_THREAD_EVENT)
    return max(1, min(threads, n // per_thread))


def event_histogram(events, width, height):
    """numba version of :func:`reference.event_histogram` (parallel for large inputs, see
    :func:`histogram_threads`).

    In parallel, each thread counts a contiguous slice of the events into a private uint8 plane
    (1.8 MB at 1280x720: within a core's 2 MiB L2 cache, where int32 planes were 7.4 MB) and records
    the bins whose count wraps past 255; the planes plus 256 per wrap are then summed per pixel.
    The sum is exact: integers in float32 (exact below 2**24 events) or, for more events, in
    float64 rounded to float32 once, as the reference rounds its float64 counts."""
    x, y, p, _ = _fields(events, width, height, check=False)
    n = len(x)
    size = 2 * height * width
    threads = histogram_threads(n, width, height)
    if threads > 1:
        counts = np.empty((threads, size), np.uint8)
        # A thread's slice has at most n // threads + 1 events, and each wrap takes 256 of them.
        wraps = np.empty((threads, (n // threads + 1) // 256 + 1), np.int64)
        bad = np.zeros(threads, np.int64)
        nwraps = np.zeros(threads, np.int64)
        _histogram_counts(x, y, p, width, height, counts, wraps, bad, nwraps)
        if bad.any():
            raise ValueError(range_error(x, y, p, width, height))
        out = np.empty(size, np.float32 if n < 2**24 else np.float64)
        _sum_planes(counts, wraps, nwraps, out)
        return out.astype(np.float32, copy=False).reshape(2, height, width)
    # One thread; float32 counts are exact below 2**24 events.
    out = np.zeros(size, np.float32 if n < 2**24 else np.int64)
    if n and _count(x, y, p, width, height, out):
        raise ValueError(range_error(x, y, p, width, height))
    return out.astype(np.float32, copy=False).reshape(2, height, width)


def binary_event_image(events, width, height):
    """numba version of :func:`reference.binary_event_image`."""
    x, y, p, _ = _fields(events, width, height)
    out = np.zeros((2, height, width), np.float32)
    _binary(x, y, p, out)
    return out


# --------------------------------------------------------------------------------------------
# Per-pixel latest / earliest times


@numba.njit(cache=True, nogil=True)
def _latest_time(x, y, p, t, t_min, t_max, out, c_on, c_off):
    """out[c, y, x] = max normalised time per pixel and polarity (0 where none)."""
    span = float(t_max - t_min)
    for i in range(x.shape[0]):
        tn = 1.0 if span == 0.0 else (t[i] - t_min) / span
        c = c_on if p[i] else c_off
        if tn > out[c, y[i], x[i]]:
            out[c, y[i], x[i]] = tn


@numba.njit(cache=True, nogil=True)
def _last_event(x, y, p, t, t_ref, last, seen):
    """last[c, y, x] = latest timestamp <= t_ref per pixel and polarity (c = 0 ON), seen = any."""
    for i in range(x.shape[0]):
        c = 1 - np.int64(p[i])
        if t[i] <= t_ref and (not seen[c, y[i], x[i]] or t[i] > last[c, y[i], x[i]]):
            last[c, y[i], x[i]] = t[i]
            seen[c, y[i], x[i]] = True


@numba.njit(cache=True, nogil=True)
def _pixel_stats(x, y, p, t, t_min, t_max, count, latest, earliest):
    """Per polarity plane (0 ON, 1 OFF): event count, latest and earliest normalised time.
    ``latest`` must start at 0 and ``earliest`` at 1 (the values of empty pixels)."""
    span = float(t_max - t_min)
    for i in range(x.shape[0]):
        tn = 1.0 if span == 0.0 else (t[i] - t_min) / span
        c = 1 - np.int64(p[i])
        count[c, y[i], x[i]] += 1
        if tn > latest[c, y[i], x[i]]:
            latest[c, y[i], x[i]] = tn
        if tn < earliest[c, y[i], x[i]]:
            earliest[c, y[i], x[i]] = tn


def _t_range(t):
    return int(t.min()), int(t.max())


def timestamp_image(events, width, height):
    """numba version of :func:`reference.timestamp_image`."""
    x, y, p, t = _fields(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    if len(t):
        _latest_time(x, y, p, t, *_t_range(t), out, 0, 1)
    return out.astype(np.float32)


def event_image(events, width, height):
    """numba version of :func:`reference.event_image`."""
    x, y, p, t = _fields(events, width, height)
    out = np.zeros((4, height, width), np.float64)
    if len(t):
        counts = event_histogram(events, width, height)
        for c, k in ((0, 0), (2, 1)):
            top = counts[k].max()
            if top > 0:
                out[c] = counts[k] / np.float64(top)
        _latest_time(x, y, p, t, *_t_range(t), out, 1, 3)
    return out.astype(np.float32)


def time_surface(events, width, height, *, tau_us=None, t_ref=None):
    """numba version of :func:`reference.time_surface`."""
    x, y, p, t = _fields(events, width, height)
    if len(t) == 0:
        return np.zeros((2, height, width), np.float32)
    t_ref, tau = time_surface_params(t, tau_us, t_ref)
    last = np.zeros((2, height, width), np.int64)
    seen = np.zeros((2, height, width), np.bool_)
    _last_event(x, y, p, t, t_ref, last, seen)
    return exp_decay(last, seen, t_ref, tau)


@numba.njit(cache=True, nogil=True, parallel=True)
def _exp_decay(last, seen, t_ref, tau, out):
    for j in numba.prange(last.shape[0]):
        if not seen[j]:
            out[j] = 0.0
        else:
            age = t_ref - last[j]
            if age == 0:
                out[j] = 1.0
            elif tau > 0.0:
                out[j] = np.float32(np.exp(-float(age) / tau))
            else:
                out[j] = 0.0


def exp_decay(last, seen, t_ref, tau):
    """``exp(-(t_ref - last) / tau)`` where ``seen`` (1 where the age is 0, 0 where not seen), float32;
    the last step of :func:`time_surface`, shared with the incremental version."""
    out = np.empty(last.shape, np.float32)
    _exp_decay(last.reshape(-1), seen.reshape(-1), np.int64(t_ref), float(tau), out.reshape(-1))
    return out


# --------------------------------------------------------------------------------------------
# Sorted time surface


def sorted_time_surface(events, width, height, *, use_image=True):
    """numba version of :func:`reference.sorted_time_surface`."""
    x, y, p, t = _fields(events, width, height)
    last = np.zeros((2, height, width), np.int64)
    seen = np.zeros((2, height, width), np.bool_)
    if len(t):
        _last_event(x, y, p, t, int(t.max()), last, seen)
    return rank_surface(last, seen, use_image)


def rank_surface(last, seen, use_image=True):
    """Dense rank of each active pixel's latest timestamp among the distinct ones of its polarity,
    divided by (distinct - 1); the last step of :func:`sorted_time_surface`."""
    planes = []
    for c in (0, 1):
        sort = np.zeros(last.shape[1:], np.float64)
        values, rank = np.unique(last[c][seen[c]], return_inverse=True)
        if len(values) > 1:
            sort[seen[c]] = rank / (len(values) - 1)
        if use_image:
            planes.append(seen[c].astype(np.float64))
        planes.append(sort)
    return np.stack(planes).astype(np.float32)


# --------------------------------------------------------------------------------------------
# DiST


@numba.njit(cache=True, nogil=True)
def _discount(count, clipped, latest, earliest, r, alpha, value):
    """DiST steps 3-4 at every pixel with events: over its (2r+1)^2 neighbourhood clipped at the
    border, the clipped count M, the latest L and earliest E times; V = max(0, L - alpha *
    (max L - min E) / M), 0 where M == 1. Pixels without events are left at 0."""
    height, width = count.shape
    for yy in range(height):
        for xx in range(width):
            if count[yy, xx] == 0:
                continue
            total = np.int64(0)
            highest = latest[yy, xx]
            lowest = earliest[yy, xx]
            for ny in range(max(0, yy - r), min(height, yy + r + 1)):
                for nx in range(max(0, xx - r), min(width, xx + r + 1)):
                    total += clipped[ny, nx]
                    highest = max(highest, latest[ny, nx])
                    lowest = min(lowest, earliest[ny, nx])
            if total != 1:
                discount = (highest - lowest) / total
                value[yy, xx] = max(0.0, latest[yy, xx] - alpha * discount)


def dense_rank(value):
    """``value``'s dense rank over all its elements divided by the number of distinct values
    (DiST step 5), sorting only the non-zero values (most pixels are 0)."""
    nonzero = value != 0.0
    distinct, rank = np.unique(value[nonzero], return_inverse=True)
    has_zero = int(not nonzero.all())
    ranked = np.zeros(value.shape, np.float64)
    ranked[nonzero] = (rank + has_zero) / (len(distinct) + has_zero)
    return ranked


def dist_plane(count, latest, earliest, alpha, patch_size, clip_rate):
    """One polarity of DiST from its per-pixel count, latest and earliest normalised time (0 / 1
    where empty), float64 ``(H, W)``; shared with the incremental version."""
    height, width = count.shape
    if count.max() == 0:
        return np.zeros((height, width), np.float64)
    levels = np.bincount(count.ravel())
    cumulative = np.cumsum(levels[levels > 0])
    clip_level = max(1, int(np.count_nonzero(cumulative < clip_rate * height * width)))
    clipped = np.minimum(count, clip_level)
    value = np.zeros((height, width), np.float64)
    _discount(count, clipped, latest, earliest, patch_size // 2, float(alpha), value)
    return dense_rank(value)


def dist(events, width, height, *, alpha=DIST_ALPHA, patch_size=DIST_PATCH_SIZE, clip_rate=DIST_CLIP_RATE):
    """numba version of :func:`reference.dist`."""
    check_patch_size(patch_size)
    x, y, p, t = _fields(events, width, height)
    count = np.zeros((2, height, width), np.int64)
    latest = np.zeros((2, height, width), np.float64)
    earliest = np.ones((2, height, width), np.float64)
    if len(t):
        _pixel_stats(x, y, p, t, *_t_range(t), count, latest, earliest)
    out = np.stack(
        [dist_plane(count[c], latest[c], earliest[c], alpha, patch_size, clip_rate) for c in (0, 1)]
    )
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Voxel grid


@numba.njit(cache=True, nogil=True)
def _voxel(x, y, p, t, t_min, t_max, num_bins, measurement, out):
    """measurement: 0 count, 1 polarity, 2 timestamp (the order of reference._MEASUREMENTS)."""
    span = float(t_max - t_min)
    for i in range(x.shape[0]):
        tn = 1.0 if span == 0.0 else (t[i] - t_min) / span
        if measurement == 0:
            f = 1.0
        elif measurement == 1:
            f = 1.0 if p[i] else -1.0
        else:
            f = tn
        position = tn * (num_bins - 1)
        group = num_bins if p[i] else 0
        k0 = min(int(position), num_bins - 1)
        for k in range(k0, min(k0 + 2, num_bins)):
            weight = max(0.0, 1.0 - abs(position - k))
            if weight > 0.0:
                out[group + k, y[i], x[i]] += f * weight


def voxel_grid(events, width, height, *, num_bins=9, measurement="count"):
    """numba version of :func:`reference.voxel_grid` (one thread: the output of 2 x num_bins planes
    is too large to give each thread a private copy, and events of a window overlap in pixels)."""
    check_voxel_params(num_bins, measurement)
    x, y, p, t = _fields(events, width, height)
    out = np.zeros((2 * num_bins, height, width), np.float64)
    if len(t):
        _voxel(x, y, p, t, *_t_range(t), int(num_bins), _MEASUREMENTS.index(measurement), out)
    return out.astype(np.float32)


KERNELS = {
    "event_histogram": event_histogram,
    "binary_event_image": binary_event_image,
    "event_image": event_image,
    "timestamp_image": timestamp_image,
    "sorted_time_surface": sorted_time_surface,
    "dist": dist,
    "voxel_grid": voxel_grid,
    "time_surface": time_surface,
}
