"""numba-cuda kernels for all eight event representations; each equals its reference in
``reference.py`` (tested on numba's CUDA simulator, on seeded random streams and real recordings).

Calling convention
------------------
Every public function is called like its reference, ``f(events, width, height, **params)``, with
``events`` a host 1-D ``EVENT_DTYPE`` array, and validates its input the same way (same
``ValueError`` / ``TypeError``). It uploads ``x``, ``y`` (int32), ``t`` (int64) and the polarity
(uint8, 1 = ON) to the device and returns a numba *device* array, float32 ``(C, height, width)``:
hand it to torch without a copy through ``__cuda_array_interface__`` (``torch.as_tensor(out,
device="cuda")``), or bring it back with :func:`to_host` (``out.copy_to_host()``). Results equal
the references to float32 rounding: values that are not integers are computed in float64 on the
device, exactly as the references do it on the host, and rounded to float32 once, in the kernel
that writes the output.

Kernel design
-------------
* **Scatter, one thread per event.** ``_scatter`` accumulates per pixel and polarity, with
  atomics, the event count (int32 ``atomic.add``) and the latest and earliest timestamps (int64
  ``atomic.max`` / ``atomic.min``) into ``(2, H * W)`` arrays (row 0 = ON, row 1 = OFF). Working
  with integer timestamps keeps the atomics exact and order-independent; normalised times
  ``t_n`` are computed from them afterwards (``t_n`` is non-decreasing in ``t``, so the latest
  ``t_n`` is ``t_n`` of the latest ``t``). ``t_min`` / ``t_max`` over all events come from one
  more atomic pass (``_time_range``) and stay on the device. The voxel grid is the only
  representation that adds non-integer values: ``_voxel_scatter`` adds float64 weights with
  ``atomic.add`` (sm_60+) and ``_to_float32`` rounds them.
* **Finish, one thread per pixel.** A per-pixel kernel turns the accumulators into the output
  channels (counts, binary mask, normalised latest time, exponential decay, ...). Per-polarity
  maxima (the event image's count normaliser) are reduced with ``atomic.max``.
* **Ranking on the device.** The sorted time surface ranks each polarity's distinct latest
  timestamps; DiST ranks its values over all pixels and needs a quantile-like clip level of the
  counts. Both use the same three device steps on ``(2, N)`` arrays, both polarities at once:

  1. *sort*: the keys are padded to a power of two ``N >= H * W`` with a sentinel that sorts last
     and sorted by a bitonic network, one launch per ``(k, j)`` stage (``_bitonic_pass``, one
     thread per compared pair). Only the first ``n_valid`` sorted entries are used, so a real key
     equal to the sentinel is harmless;
  2. *distinct values*: ``_run_heads`` flags the first entry of every run of equal keys and an
     inclusive Hillis-Steele prefix sum (``_scan_pass``, ``log2 N`` launches, one thread per entry)
     turns the flags into "number of distinct keys up to here"; the last one is the number of
     distinct values ``K``;
  3. *rank*: each pixel binary-searches its own key's first position in the sorted row
     (``_dense_rank``); the prefix sum there, minus one, is its dense rank.

  DiST's clip level (``reference.dist``, step 1) sorts the counts with the same network: the
  number of pixels with ``N <= n_j`` is one plus the index of the last entry of ``n_j``'s run, so
  ``_clip_levels`` counts, with one atomic per run end, the runs for which that number is below
  ``clip_rate * H * W``. Nothing is copied to the host for ranking.
* **Grid-stride loops.** Every kernel loops ``for i in range(cuda.grid(1), n, cuda.gridsize(1))``,
  so any launch size is correct. On a GPU :func:`_launch` starts one thread per item (256 per
  block); numba's simulator runs every CUDA thread as a Python thread (a few thousand per second;
  blocks of many threads contending for the GIL and its atomic locks can stall for seconds), so
  there it starts three blocks of two threads: still several blocks, concurrent threads and a
  stride that is not a power of two, but hundreds of times faster.

Kernels are compiled lazily at their first launch (importing this module needs neither a GPU nor
the simulator; it needs numba-cuda). Without a GPU, set ``NUMBA_ENABLE_CUDASIM=1`` before numba is
imported to run everything on the simulator. Small inputs launch small grids, so on a GPU numba
may emit its low-occupancy ``NumbaPerformanceWarning`` ("Grid size ... under-utilization");
``NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0`` silences it. ``PTX_SIGNATURES`` lists every kernel with
the argument types it is launched with (the tests compile each to PTX).

Limits: per-pixel counts are int32 (at most 2**31 - 1 events per pixel and polarity) and
``t_ref`` of the time surface must fit in int64.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

try:
    from numba import cuda
except ImportError as exc:  # numba-cuda, or the CUDA Python bindings it needs, is not installed
    raise ImportError(
        f"the cuda representation backend needs numba-cuda: pip install 'evstream[cuda]' ({exc})"
    ) from exc

from .reference import (
    _MEASUREMENTS,
    DIST_ALPHA,
    DIST_CLIP_RATE,
    DIST_PATCH_SIZE,
    _unpack,
    check_patch_size,
    check_voxel_params,
    time_surface_params,
)

_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max

# numba.cuda picks the simulator or the real driver from this flag when it is first imported.
_SIMULATED = bool(numba.config.ENABLE_CUDASIM)
_THREADS_PER_BLOCK = 256
_SIMULATOR_GRID = (3, 2)  # (blocks, threads per block) on the simulator, see _launch

_SIGNATURES: list[tuple[object, str]] = []


def _kernel(*signatures):
    """``cuda.jit`` (lazy: compiled at the first launch) that records the kernel's launch
    signatures in ``PTX_SIGNATURES``, so the tests can compile every kernel to PTX."""

    def decorate(pyfunc):
        _SIGNATURES.extend((pyfunc, signature) for signature in signatures)
        return cuda.jit(pyfunc)

    return decorate


# --------------------------------------------------------------------------------------------
# Device functions. inline="always" inlines them into the calling kernel's IR: besides saving a
# call, that lets compile_ptx(..., cc=...) compile the kernels without a GPU (a separately
# compiled device function asks the driver for the current device's compute capability).


@cuda.jit(device=True, inline="always")
def _normalised(t, trange):
    """``(t - t_min) / (t_max - t_min)`` in float64, 1 when all timestamps are equal
    (``reference._normalised_time``, same operations in the same order)."""
    t_min = trange[0]
    t_max = trange[1]
    if t_max == t_min:
        return 1.0
    return (t - t_min) / float(t_max - t_min)


@cuda.jit(device=True, inline="always")
def _dense_rank(keys, dense, c, n, v):
    """Dense rank of ``v`` among ``keys[c, :n]`` (sorted; ``v`` must occur there): the number of
    distinct keys below ``v``, read from the distinct-value prefix sum at ``v``'s first position."""
    lo = 0
    hi = n
    while lo < hi:  # lower bound: first index whose key is not below v
        mid = (lo + hi) // 2
        if keys[c, mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return dense[c, lo] - 1


# --------------------------------------------------------------------------------------------
# Initialisation and per-event scatter kernels


@_kernel("(int32[:, ::1], int64[:, ::1], int64[:, ::1])")
def _init_pixels(count, latest, earliest):
    n_pixels = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n_pixels, cuda.gridsize(1)):
        c = i // n_pixels
        p = i % n_pixels
        count[c, p] = 0
        latest[c, p] = _INT64_MIN  # identity of atomic.max
        earliest[c, p] = _INT64_MAX  # identity of atomic.min


@_kernel("(float64[:, ::1], float64)", "(float32[:, ::1], float64)")
def _fill(a, value):
    n = a.shape[1]
    for i in range(cuda.grid(1), a.shape[0] * n, cuda.gridsize(1)):
        a[i // n, i % n] = value


@_kernel("(int64[::1], int64[::1])")
def _time_range(t, trange):
    """``trange = [min t, max t]`` (initialised to ``[INT64_MAX, INT64_MIN]`` by the caller)."""
    for i in range(cuda.grid(1), t.shape[0], cuda.gridsize(1)):
        cuda.atomic.min(trange, 0, t[i])
        cuda.atomic.max(trange, 1, t[i])


@_kernel(
    "(int32[::1], int32[::1], int64[::1], uint8[::1], int64, int64, "
    "int32[:, ::1], int64[:, ::1], int64[:, ::1])"
)
def _scatter(x, y, t, on, width, t_limit, count, latest, earliest):
    """Per pixel and polarity (row 0 ON, 1 OFF) of the events with ``t <= t_limit``: their number
    and their latest and earliest timestamps. A pixel saw such an event iff its count is > 0."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if t[i] <= t_limit:
            c = 0 if on[i] != 0 else 1
            p = y[i] * width + x[i]
            cuda.atomic.add(count, (c, p), 1)
            cuda.atomic.max(latest, (c, p), t[i])
            cuda.atomic.min(earliest, (c, p), t[i])


@_kernel("(int32[::1], int32[::1], int64[::1], uint8[::1], int64, int64[::1], int64, int64, float64[:, ::1])")
def _voxel_scatter(x, y, t, on, width, trange, num_bins, measurement, grid):
    """Adds each event's measurement times its bilinear-in-time weights to ``grid`` (float64)."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        tn = _normalised(t[i], trange)
        if measurement == 0:  # "count"
            f = 1.0
        elif measurement == 1:  # "polarity"
            f = 1.0 if on[i] != 0 else -1.0
        else:  # "timestamp"
            f = tn
        position = tn * (num_bins - 1)
        group = num_bins if on[i] != 0 else 0
        p = y[i] * width + x[i]
        # The reference loops over all bins, but max(0, 1 - |position - k|) is 0 unless
        # k = floor(position) or floor(position) + 1 (position >= 0, so int() is floor()).
        k_low = int(position)
        for k in range(k_low, min(k_low + 2, num_bins)):
            weight = max(0.0, 1.0 - abs(position - k))
            if weight > 0.0:
                cuda.atomic.add(grid, (group + k, p), f * weight)


# --------------------------------------------------------------------------------------------
# Per-pixel output kernels


@_kernel("(int32[:, ::1], float32[:, ::1])")
def _counts_out(count, out):
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        out[i // n, i % n] = count[i // n, i % n]


@_kernel("(int32[:, ::1], float32[:, ::1])")
def _binary_out(count, out):
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        out[i // n, i % n] = 1.0 if count[i // n, i % n] > 0 else 0.0


@_kernel("(int32[:, ::1], int32[::1])")
def _max_per_row(count, top):
    """``top[c] = max(count[c])`` (``top`` zeroed by the caller)."""
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        cuda.atomic.max(top, i // n, count[i // n, i % n])


@_kernel("(int32[:, ::1], int64[:, ::1], int64[::1], float32[:, ::1])")
def _timestamp_out(count, latest, trange, out):
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        out[c, p] = _normalised(latest[c, p], trange) if count[c, p] > 0 else 0.0


@_kernel("(int32[:, ::1], int64[:, ::1], int32[::1], int64[::1], float32[:, ::1])")
def _event_image_out(count, latest, top, trange, out):
    """Channels ``2c`` (count / max count of the polarity) and ``2c + 1`` (latest t_n)."""
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        out[2 * c, p] = count[c, p] / top[c] if top[c] > 0 else 0.0
        out[2 * c + 1, p] = _normalised(latest[c, p], trange) if count[c, p] > 0 else 0.0


@_kernel("(int32[:, ::1], int64[:, ::1], int64, float64, float32[:, ::1])")
def _time_surface_out(count, latest, t_ref, tau, out):
    """``exp(-(t_ref - latest) / tau)`` where a pixel saw an event (``count`` holds only events
    with ``t <= t_ref``), exactly 1 at age 0 and 0 for older events when ``tau`` is 0."""
    n = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        value = 0.0
        if count[c, p] > 0:
            age = t_ref - latest[c, p]
            if age == 0:
                value = 1.0
            elif tau > 0.0:
                value = math.exp(-age / tau)
        out[c, p] = value


@_kernel("(float64[:, ::1], float32[:, ::1])")
def _to_float32(src, out):
    n = src.shape[1]
    for i in range(cuda.grid(1), src.shape[0] * n, cuda.gridsize(1)):
        out[i // n, i % n] = src[i // n, i % n]


# --------------------------------------------------------------------------------------------
# Ranking kernels: sort, distinct-value prefix sum (see the module docstring)


@_kernel("(int32[:, ::1], int64[:, ::1], int64[:, ::1], int32[::1])")
def _active_keys(count, latest, keys, n_valid):
    """Sort keys of the sorted time surface: each active pixel's latest timestamp, the int64
    maximum for inactive pixels and padding; ``n_valid[c]`` counts the active pixels."""
    n_pixels = count.shape[1]
    n = keys.shape[1]
    for i in range(cuda.grid(1), keys.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        if p < n_pixels and count[c, p] > 0:
            keys[c, p] = latest[c, p]
            cuda.atomic.add(n_valid, c, 1)
        else:
            keys[c, p] = _INT64_MAX


@_kernel("(int32[:, ::1], int64[:, ::1], int64)", "(float64[:, ::1], float64[:, ::1], float64)")
def _pad_keys(values, keys, sentinel):
    """``keys[c] = values[c]`` followed by ``sentinel`` up to the padded length."""
    n_pixels = values.shape[1]
    n = keys.shape[1]
    for i in range(cuda.grid(1), keys.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        keys[c, p] = values[c, p] if p < n_pixels else sentinel


@_kernel("(int64[:, ::1], int64, int64)", "(float64[:, ::1], int64, int64)")
def _bitonic_pass(keys, k, j):
    """One compare-exchange stage of a bitonic sort of each row (length a power of two): pairs
    ``(lo, lo + j)`` with bit ``j`` of ``lo`` clear, ascending where bit ``k`` of ``lo`` is clear.
    One thread per pair; running the stages for k = 2, 4, ..., N and j = k/2, ..., 1 sorts."""
    half = keys.shape[1] // 2
    for i in range(cuda.grid(1), keys.shape[0] * half, cuda.gridsize(1)):
        c = i // half
        q = i % half
        lo = (q // j) * 2 * j + q % j
        hi = lo + j
        a = keys[c, lo]
        b = keys[c, hi]
        ascending = (lo & k) == 0
        if (ascending and a > b) or (not ascending and a < b):
            keys[c, lo] = b
            keys[c, hi] = a


@_kernel("(int64[:, ::1], int32[::1], int32[:, ::1])", "(float64[:, ::1], int32[::1], int32[:, ::1])")
def _run_heads(keys, n_valid, heads):
    """1 at the first entry of each run of equal keys among the first ``n_valid[c]``, else 0."""
    n = keys.shape[1]
    for i in range(cuda.grid(1), keys.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        head = p < n_valid[c] and (p == 0 or keys[c, p] != keys[c, p - 1])
        heads[c, p] = 1 if head else 0


@_kernel("(int32[:, ::1], int32[:, ::1], int64)")
def _scan_pass(src, dst, d):
    """One step of an inclusive Hillis-Steele prefix sum per row: ``dst[i] = src[i] + src[i - d]``."""
    n = src.shape[1]
    for i in range(cuda.grid(1), src.shape[0] * n, cuda.gridsize(1)):
        c = i // n
        p = i % n
        dst[c, p] = src[c, p] + src[c, p - d] if p >= d else src[c, p]


@_kernel("(int32[:, ::1], int64[:, ::1], int64[:, ::1], int32[:, ::1], int32[::1], int64, float32[:, ::1])")
def _sorted_out(count, latest, keys, dense, n_valid, use_image, out):
    """Sorted time surface: rank / (K - 1) of each active pixel's latest timestamp (0 when
    K <= 1), preceded per polarity by the binary image when ``use_image``."""
    n_pixels = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n_pixels, cuda.gridsize(1)):
        c = i // n_pixels
        p = i % n_pixels
        active = count[c, p] > 0
        value = 0.0
        if active:
            n = n_valid[c]
            distinct = dense[c, n - 1]
            if distinct > 1:
                value = _dense_rank(keys, dense, c, n, latest[c, p]) / (distinct - 1)
        if use_image:
            out[2 * c, p] = 1.0 if active else 0.0
            out[2 * c + 1, p] = value
        else:
            out[c, p] = value


@_kernel("(int64[:, ::1], int64, float64, int32[::1])")
def _clip_levels(sorted_counts, n_pixels, threshold, levels):
    """DiST clip level before ``max(1, .)``: with the counts sorted, entry ``i`` ending a run of
    equal counts has ``i + 1`` pixels at or below its count; count those runs below
    ``threshold = clip_rate * H * W`` (``levels`` zeroed by the caller)."""
    for i in range(cuda.grid(1), sorted_counts.shape[0] * n_pixels, cuda.gridsize(1)):
        c = i // n_pixels
        p = i % n_pixels
        run_end = p == n_pixels - 1 or sorted_counts[c, p] != sorted_counts[c, p + 1]
        if run_end and float(p + 1) < threshold:
            cuda.atomic.add(levels, c, 1)


@_kernel(
    "(int32[:, ::1], int64[:, ::1], int64[:, ::1], int64[::1], int32[::1], "
    "int64, int64, int64, float64, float64[:, ::1])"
)
def _dist_values(count, latest, earliest, trange, levels, width, height, radius, alpha, values):
    """DiST steps 1-4 of ``reference.dist`` per pixel: the discounted latest time ``V``."""
    n_pixels = count.shape[1]
    for i in range(cuda.grid(1), count.shape[0] * n_pixels, cuda.gridsize(1)):
        c = i // n_pixels
        p = i % n_pixels
        value = 0.0
        if count[c, p] > 0:
            clip = max(levels[c], 1)
            row = p // width
            col = p % width
            neighbours = 0
            # max L and min E over the window; starting from the reference's fill values for empty
            # pixels (L = 0, E = 1) is the same as including them, as 0 <= t_n <= 1.
            newest = 0.0
            oldest = 1.0
            for yy in range(max(0, row - radius), min(height, row + radius + 1)):
                for xx in range(max(0, col - radius), min(width, col + radius + 1)):
                    q = yy * width + xx
                    if count[c, q] > 0:
                        neighbours += min(count[c, q], clip)
                        newest = max(newest, _normalised(latest[c, q], trange))
                        oldest = min(oldest, _normalised(earliest[c, q], trange))
            if neighbours != 1:  # an event alone in its neighbourhood stays 0
                discount = (newest - oldest) / neighbours
                v = _normalised(latest[c, p], trange) - alpha * discount
                value = v if v > 0.0 else 0.0  # Python's max(0.0, v), as in the reference
        values[c, p] = value


@_kernel("(float64[:, ::1], float64[:, ::1], int32[:, ::1], float32[:, ::1])")
def _dist_out(values, keys, dense, out):
    """DiST step 5: dense rank of each pixel's value over all pixels, divided by the number of
    distinct values."""
    n_pixels = values.shape[1]
    for i in range(cuda.grid(1), values.shape[0] * n_pixels, cuda.gridsize(1)):
        c = i // n_pixels
        p = i % n_pixels
        distinct = dense[c, n_pixels - 1]
        out[c, p] = _dense_rank(keys, dense, c, n_pixels, values[c, p]) / distinct


PTX_SIGNATURES = tuple(_SIGNATURES)
"""``(python function, signature)`` for every kernel launch type: compile with
``numba.cuda.compile_ptx(function, signature, cc=(8, 0))`` (no GPU needed)."""


# --------------------------------------------------------------------------------------------
# Host-side orchestration


@functools.cache
def _device_available() -> bool:
    return bool(cuda.is_available())


def _require_device():
    if not _device_available():
        raise RuntimeError(
            "no CUDA GPU found (numba.cuda.is_available() is False); use backend='cpu' or set "
            "NUMBA_ENABLE_CUDASIM=1 (before numba is imported) to run the kernels on numba's CUDA "
            "simulator"
        )


def _launch(kernel, n_items, *args):
    """Launches ``kernel`` over ``n_items`` grid-stride items (nothing for zero items)."""
    if n_items == 0:
        return
    if _SIMULATED:
        blocks, threads = _SIMULATOR_GRID
    else:
        threads = _THREADS_PER_BLOCK
        blocks = (n_items + threads - 1) // threads
    kernel[blocks, threads](*args)


def to_host(array) -> np.ndarray:
    """A host numpy copy of a device array returned by this module (``array.copy_to_host()``)."""
    return array.copy_to_host()


class _Accumulators:
    """Validated events, uploaded, and (``scatter=True``) their per-pixel ``_scatter`` on the device."""

    def __init__(self, events, width, height, *, scatter=True):
        x, y, t, on = _unpack(events, width, height)
        _require_device()
        self.width = int(width)
        self.height = int(height)
        self.n_pixels = self.width * self.height
        self.n_events = len(t)
        self.trange = cuda.to_device(np.array([_INT64_MAX, _INT64_MIN], np.int64))
        self.count = cuda.device_array((2, self.n_pixels), np.int32)
        self.latest = cuda.device_array((2, self.n_pixels), np.int64)
        self.earliest = cuda.device_array((2, self.n_pixels), np.int64)
        _launch(_init_pixels, 2 * self.n_pixels, self.count, self.latest, self.earliest)
        self.x = self.y = self.t = self.on = None
        if self.n_events == 0:
            return  # nothing to upload or scatter: the accumulators keep their initial values
        self.x = cuda.to_device(x.astype(np.int32))
        self.y = cuda.to_device(y.astype(np.int32))
        self.t = cuda.to_device(t)
        self.on = cuda.to_device(on.view(np.uint8))
        _launch(_time_range, self.n_events, self.t, self.trange)
        if scatter:
            self.scatter(_INT64_MAX)

    def scatter(self, t_limit):
        """Accumulates the events with ``t <= t_limit`` (see ``_scatter``)."""
        _launch(
            _scatter,
            self.n_events,
            self.x,
            self.y,
            self.t,
            self.on,
            self.width,
            int(t_limit),
            self.count,
            self.latest,
            self.earliest,
        )

    def output(self, channels):
        """A new float32 ``(channels, H * W)`` device array (reshape with :meth:`shaped`)."""
        return cuda.device_array((channels, self.n_pixels), np.float32)

    def shaped(self, out):
        return out.reshape(out.shape[0], self.height, self.width)


def _sort_rows(keys):
    """Sorts each row of ``keys`` (length a power of two) ascending on the device."""
    n = keys.shape[1]
    k = 2
    while k <= n:
        j = k // 2
        while j >= 1:
            _launch(_bitonic_pass, keys.shape[0] * (n // 2), keys, k, j)
            j //= 2
        k *= 2


def _distinct_prefix(keys, n_valid):
    """``dense[c, i]`` = number of distinct keys among ``keys[c, :i + 1]`` (rows sorted, only the
    first ``n_valid[c]`` entries counted), int32, via run-head flags and a prefix sum."""
    src = cuda.device_array(keys.shape, np.int32)
    dst = cuda.device_array(keys.shape, np.int32)
    n_items = keys.shape[0] * keys.shape[1]
    _launch(_run_heads, n_items, keys, n_valid, src)
    d = 1
    while d < keys.shape[1]:
        _launch(_scan_pass, n_items, src, dst, d)
        src, dst = dst, src
        d *= 2
    return src


def _padded_length(n):
    return 1 << max(0, (n - 1).bit_length())


# --------------------------------------------------------------------------------------------
# Public functions (signatures, validation and results as in reference.py)


def event_histogram(events, width, height):
    """numba-cuda version of :func:`reference.event_histogram`; a float32 ``(2, H, W)`` device array."""
    acc = _Accumulators(events, width, height)
    out = acc.output(2)
    _launch(_counts_out, 2 * acc.n_pixels, acc.count, out)
    return acc.shaped(out)


def binary_event_image(events, width, height):
    """numba-cuda version of :func:`reference.binary_event_image`; a float32 ``(2, H, W)`` device array."""
    acc = _Accumulators(events, width, height)
    out = acc.output(2)
    _launch(_binary_out, 2 * acc.n_pixels, acc.count, out)
    return acc.shaped(out)


def event_image(events, width, height):
    """numba-cuda version of :func:`reference.event_image`; a float32 ``(4, H, W)`` device array."""
    acc = _Accumulators(events, width, height)
    top = cuda.to_device(np.zeros(2, np.int32))
    _launch(_max_per_row, 2 * acc.n_pixels, acc.count, top)
    out = acc.output(4)
    _launch(_event_image_out, 2 * acc.n_pixels, acc.count, acc.latest, top, acc.trange, out)
    return acc.shaped(out)


def timestamp_image(events, width, height):
    """numba-cuda version of :func:`reference.timestamp_image`; a float32 ``(2, H, W)`` device array."""
    acc = _Accumulators(events, width, height)
    out = acc.output(2)
    _launch(_timestamp_out, 2 * acc.n_pixels, acc.count, acc.latest, acc.trange, out)
    return acc.shaped(out)


def sorted_time_surface(events, width, height, *, use_image=True):
    """numba-cuda version of :func:`reference.sorted_time_surface`; a float32 ``(4, H, W)``
    device array (``(2, H, W)`` with ``use_image=False``)."""
    acc = _Accumulators(events, width, height)
    keys = cuda.device_array((2, _padded_length(acc.n_pixels)), np.int64)
    n_valid = cuda.to_device(np.zeros(2, np.int32))
    _launch(_active_keys, keys.size, acc.count, acc.latest, keys, n_valid)
    _sort_rows(keys)
    dense = _distinct_prefix(keys, n_valid)
    out = acc.output(4 if use_image else 2)
    with_image = 1 if use_image else 0
    _launch(_sorted_out, 2 * acc.n_pixels, acc.count, acc.latest, keys, dense, n_valid, with_image, out)
    return acc.shaped(out)


def dist(events, width, height, *, alpha=DIST_ALPHA, patch_size=DIST_PATCH_SIZE, clip_rate=DIST_CLIP_RATE):
    """numba-cuda version of :func:`reference.dist`; a float32 ``(2, H, W)`` device array."""
    check_patch_size(patch_size)
    acc = _Accumulators(events, width, height)
    n_pixels = acc.n_pixels
    padded = _padded_length(n_pixels)
    all_pixels = cuda.to_device(np.full(2, n_pixels, np.int32))

    # 1. Clip level from the sorted counts (the counts-of-counts rule, see _clip_levels).
    count_keys = cuda.device_array((2, padded), np.int64)
    _launch(_pad_keys, count_keys.size, acc.count, count_keys, _INT64_MAX)
    _sort_rows(count_keys)
    levels = cuda.to_device(np.zeros(2, np.int32))
    threshold = float(clip_rate * height * width)  # the reference's expression, in its order
    _launch(_clip_levels, 2 * n_pixels, count_keys, n_pixels, threshold, levels)

    # 2.-4. Discounted latest times.
    values = cuda.device_array((2, n_pixels), np.float64)
    _launch(
        _dist_values,
        2 * n_pixels,
        acc.count,
        acc.latest,
        acc.earliest,
        acc.trange,
        levels,
        acc.width,
        acc.height,
        int(patch_size) // 2,
        float(alpha),
        values,
    )

    # 5. Dense rank over all pixels.
    value_keys = cuda.device_array((2, padded), np.float64)
    _launch(_pad_keys, value_keys.size, values, value_keys, math.inf)
    _sort_rows(value_keys)
    dense = _distinct_prefix(value_keys, all_pixels)
    out = acc.output(2)
    _launch(_dist_out, 2 * n_pixels, values, value_keys, dense, out)
    return acc.shaped(out)


def voxel_grid(events, width, height, *, num_bins=9, measurement="count"):
    """numba-cuda version of :func:`reference.voxel_grid`; a float32 ``(2 * num_bins, H, W)``
    device array."""
    check_voxel_params(num_bins, measurement)
    acc = _Accumulators(events, width, height, scatter=False)  # only the upload and the time range
    num_bins = int(num_bins)
    grid = cuda.device_array((2 * num_bins, acc.n_pixels), np.float64)
    _launch(_fill, grid.size, grid, 0.0)
    _launch(
        _voxel_scatter,
        acc.n_events,
        acc.x,
        acc.y,
        acc.t,
        acc.on,
        acc.width,
        acc.trange,
        num_bins,
        _MEASUREMENTS.index(measurement),
        grid,
    )
    out = acc.output(2 * num_bins)
    _launch(_to_float32, out.size, grid, out)
    return acc.shaped(out)


def time_surface(events, width, height, *, tau_us=None, t_ref=None):
    """numba-cuda version of :func:`reference.time_surface`; a float32 ``(2, H, W)`` device array."""
    acc = _Accumulators(events, width, height, scatter=False)  # t_ref must be known first
    out = acc.output(2)
    if acc.n_events == 0:
        _launch(_fill, out.size, out, 0.0)
        return acc.shaped(out)
    # t_ref and tau default to functions of t_min / t_max: read those two scalars back.
    t_min, t_max = (int(v) for v in acc.trange.copy_to_host())
    t_ref, tau = time_surface_params(np.array([t_min, t_max]), tau_us, t_ref)
    acc.scatter(t_ref)
    _launch(_time_surface_out, 2 * acc.n_pixels, acc.count, acc.latest, t_ref, float(tau), out)
    return acc.shaped(out)


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
"""Representation name -> numba-cuda function (each returns a float32 device array)."""
