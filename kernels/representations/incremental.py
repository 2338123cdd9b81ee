"""Incremental representations for sliding windows: fed the events that enter and leave at each
window step, they equal a recomputation on the current window (tested after random sequences of
steps, on sorted and unsorted streams).

    >>> rep = incremental("event_histogram", 34, 34)
    >>> for step in windows.push(chunk):
    ...     rep.update(step.enter, step.leave)
    ...     frame = rep.output()          # == compute("event_histogram", step.window, 34, 34)

What an update costs, per representation:

* ``event_histogram`` and ``binary_event_image``: the output itself is the state. An update costs
  O(events entering + leaving) and :meth:`~IncrementalRepresentation.output` returns the live
  array without any work (copy it if you keep it across updates).
* ``event_image``, ``timestamp_image``, ``time_surface``, ``sorted_time_surface``, ``dist``: the
  output is normalised by the window's time range (and by the maximum count, or by ranks), which
  changes at every step, so every value may change. The state below is updated in O(events
  changed); :meth:`output` then derives the frame from it in O(pixels) (O(A log A) for the two
  ranked surfaces, A the active pixels) -- a recomputation from per-pixel state, never a rescan
  of the window's events. This pays off for windows with many events per pixel; for windows of
  far fewer events than pixels, recomputing the window with :func:`compute` is cheaper (see the
  incremental table of ``benchmarks/representations.py`` in the README).
* ``voxel_grid``: an event's weights depend on the window's time range, so every event's
  contribution changes at every step; :meth:`output` recomputes the grid from the window's events
  (kept in the state's ring), O(window events).

The state (:class:`WindowState`) keeps the window's events in a ring buffer and, for each pixel and
polarity, a linked list of its events in arrival order with their count and latest and earliest
timestamps. Events must leave in the order they entered (as ``runtime.windows`` delivers them);
anything else raises ``ValueError`` before the state is touched. While the window's timestamps
are non-decreasing (as sensors produce them), a pixel's earliest and latest events are the head
and tail of its list, so a step is O(1) per event; when the window holds out-of-order timestamps,
an event leaving with its pixel's earliest or latest timestamp makes that pixel's list be
rescanned (exact, at a cost proportional to that pixel's events).
"""

from __future__ import annotations

import numba
import numpy as np

from ..events import EVENT_DTYPE
from . import cpu
from .reference import (
    DIST_ALPHA,
    DIST_CLIP_RATE,
    DIST_PATCH_SIZE,
    check_patch_size,
    check_tau,
    check_voxel_params,
    range_error,
    time_surface_params,
)

_NONE = np.int64(-1)


# --------------------------------------------------------------------------------------------
# numba kernels over the state's arrays


@numba.njit(cache=True, nogil=True)
def _count_add(x, y, p, width, height, sign, counts, out, binary):
    """counts[plane] += sign per event, mirroring into ``out`` (count or count > 0). Returns the
    index of the first event that would make a count negative (after undoing the earlier ones),
    or -1."""
    plane = width * height
    for i in range(x.shape[0]):
        j = (1 - np.int64(p[i])) * plane + np.int64(y[i]) * width + np.int64(x[i])
        c = counts[j] + sign
        if c < 0:
            for k in range(i - 1, -1, -1):
                jk = (1 - np.int64(p[k])) * plane + np.int64(y[k]) * width + np.int64(x[k])
                counts[jk] -= sign
                out[jk] = (1.0 if counts[jk] > 0 else 0.0) if binary else np.float32(counts[jk])
            return i
        counts[j] = c
        out[j] = (1.0 if c > 0 else 0.0) if binary else np.float32(c)
    return -1


@numba.njit(cache=True, nogil=True)
def _enter(x, y, p, t, width, height, rx, ry, rp, rt, nxt, head, tail, first, last, count, tmin, tmax, inv):
    """Appends events at ring sequence numbers tail, tail + 1, ... (the ring has room). Returns the
    new number of adjacent out-of-order pairs in the ring, given ``inv`` before."""
    mask = rx.shape[0] - 1
    plane = width * height
    for i in range(x.shape[0]):
        seq = tail + i
        s = seq & mask
        rx[s] = x[i]
        ry[s] = y[i]
        rp[s] = p[i]
        rt[s] = t[i]
        nxt[s] = -1
        if seq > head and t[i] < rt[(seq - 1) & mask]:
            inv += 1
        j = (1 - np.int64(p[i])) * plane + np.int64(y[i]) * width + np.int64(x[i])
        if count[j] == 0:
            first[j] = seq
            tmin[j] = t[i]
            tmax[j] = t[i]
        else:
            nxt[last[j] & mask] = seq
            tmin[j] = min(tmin[j], t[i])
            tmax[j] = max(tmax[j], t[i])
        last[j] = seq
        count[j] += 1
    return inv


@numba.njit(cache=True, nogil=True)
def _matches_head(x, y, p, t, head, rx, ry, rp, rt):
    """Index of the first leaving event that is not the ring's next oldest event, or -1."""
    mask = rx.shape[0] - 1
    for i in range(x.shape[0]):
        s = (head + i) & mask
        if x[i] != rx[s] or y[i] != ry[s] or p[i] != rp[s] or t[i] != rt[s]:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def _leave(n, head, tail, width, height, rx, ry, rp, rt, nxt, first, last, count, tmin, tmax, inv):
    """Removes the n oldest events. Returns the new out-of-order pair count."""
    mask = rx.shape[0] - 1
    plane = width * height
    for i in range(n):
        seq = head + i
        s = seq & mask
        if seq + 1 < tail and rt[(seq + 1) & mask] < rt[s]:
            inv -= 1
        j = (1 - np.int64(rp[s])) * plane + np.int64(ry[s]) * width + np.int64(rx[s])
        count[j] -= 1
        if count[j] == 0:
            first[j] = -1
            last[j] = -1
            continue
        first[j] = nxt[s]
        if inv == 0:
            # Sorted window: the pixel's list is sorted too, its earliest event is the new head
            # and its latest (the tail) is unchanged.
            tmin[j] = rt[first[j] & mask]
        elif rt[s] == tmin[j] or rt[s] == tmax[j]:
            lo = rt[first[j] & mask]
            hi = lo
            k = first[j]
            while k != -1:
                v = rt[k & mask]
                lo = min(lo, v)
                hi = max(hi, v)
                k = nxt[k & mask]
            tmin[j] = lo
            tmax[j] = hi
    return inv


@numba.njit(cache=True, nogil=True, parallel=True)
def _normalised_planes(count, tmax, tmin, t_min, t_max, latest, earliest):
    """latest/earliest normalised time per plane pixel (0 / 1 where empty), as the references."""
    span = float(t_max - t_min)
    for j in numba.prange(count.shape[0]):
        if count[j] == 0:
            latest[j] = 0.0
            earliest[j] = 1.0
        elif span == 0.0:
            latest[j] = 1.0
            earliest[j] = 1.0
        else:
            latest[j] = (tmax[j] - t_min) / span
            earliest[j] = (tmin[j] - t_min) / span


@numba.njit(cache=True, nogil=True, parallel=True)
def _latest_out(count, tmax, t_min, t_max, top, out, count_channels):
    """Per plane c (0 ON, 1 OFF): latest normalised time as float32 into out[c * k + k - 1], and with
    ``count_channels`` (k = 2) the count divided by ``top[c]`` into out[2 * c]; else k = 1."""
    planes, n = count.shape
    span = float(t_max - t_min)
    for j in numba.prange(n):
        for c in range(planes):
            k = c * 2 + 1 if count_channels else c
            if count[c, j] == 0:
                out[k, j] = 0.0
            elif span == 0.0:
                out[k, j] = 1.0
            else:
                out[k, j] = np.float32((tmax[c, j] - t_min) / span)
            if count_channels:
                out[k - 1, j] = np.float32(count[c, j] / top[c]) if top[c] > 0 else 0.0


# --------------------------------------------------------------------------------------------
# State


def _fields(events, width, height, what):
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise TypeError(f"{what} events must be a 1-D EVENT_DTYPE array, got {events.dtype} {events.shape}")
    x, y, p, t = events["x"], events["y"], events["p"], events["t"]
    if len(events) and cpu._first_bad(x, y, p, width, height) >= 0:
        raise ValueError(f"{what} events: {range_error(x, y, p, width, height)}")
    return x, y, p, t


class WindowState:
    """The events of the current window (a ring buffer, grown by doubling) and, per pixel and
    polarity (plane index ``(1 - p) * H * W + y * W + x``, ON first as in the outputs), the
    event count, the latest and earliest timestamp and a linked list of the pixel's events.

    ``enter(events)`` appends newer events; ``leave(events)`` removes the oldest ones, which must
    equal ``events`` (``ValueError`` otherwise, state untouched). Both cost O(len(events)) while
    the window's timestamps are non-decreasing (see the module docstring for the other case).
    """

    def __init__(self, width: int, height: int, capacity: int = 1 << 12):
        if width < 1 or height < 1:
            raise ValueError(f"sensor size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        planes = 2 * self.width * self.height
        self.count = np.zeros(planes, np.int64)
        self.first = np.full(planes, _NONE, np.int64)
        self.last = np.full(planes, _NONE, np.int64)
        self.tmin = np.zeros(planes, np.int64)
        self.tmax = np.zeros(planes, np.int64)
        self._alloc(max(16, 1 << (int(capacity) - 1).bit_length()))
        self.head = 0  # sequence number of the oldest event in the window
        self.tail = 0  # sequence number the next entering event gets
        self.inversions = 0  # adjacent pairs in the window with decreasing timestamps

    def _alloc(self, capacity):
        self.rx = np.zeros(capacity, np.uint16)
        self.ry = np.zeros(capacity, np.uint16)
        self.rp = np.zeros(capacity, np.uint8)
        self.rt = np.zeros(capacity, np.int64)
        self.nxt = np.full(capacity, _NONE, np.int64)

    def __len__(self) -> int:
        return self.tail - self.head

    def reset(self) -> None:
        self.count[:] = 0
        self.first[:] = _NONE
        self.last[:] = _NONE
        self.head = self.tail = self.inversions = 0

    def _reserve(self, extra: int) -> None:
        """Grows the ring so ``len(self) + extra`` events fit; sequence numbers stay valid."""
        needed = len(self) + extra
        capacity = self.rx.shape[0]
        if needed <= capacity:
            return
        new = capacity
        while new < needed:
            new *= 2
        old = (self.rx, self.ry, self.rp, self.rt, self.nxt)
        self._alloc(new)
        seqs = np.arange(self.head, self.tail, dtype=np.int64)
        for src, dst in zip(old, (self.rx, self.ry, self.rp, self.rt, self.nxt), strict=True):
            dst[seqs & (new - 1)] = src[seqs & (capacity - 1)]

    def enter(self, events: np.ndarray) -> None:
        x, y, p, t = _fields(events, self.width, self.height, "entering")
        if len(x) == 0:
            return
        self._reserve(len(x))
        self.inversions = _enter(
            x, y, p, t, self.width, self.height, self.rx, self.ry, self.rp, self.rt, self.nxt,
            self.head, self.tail, self.first, self.last, self.count, self.tmin, self.tmax, self.inversions,
        )  # fmt: skip
        self.tail += len(x)

    def leave(self, events: np.ndarray) -> None:
        x, y, p, t = _fields(events, self.width, self.height, "leaving")
        n = len(x)
        if n == 0:
            return
        if n > len(self):
            raise ValueError(f"{n} events cannot leave a window of {len(self)}")
        bad = _matches_head(x, y, p, t, self.head, self.rx, self.ry, self.rp, self.rt)
        if bad >= 0:
            raise ValueError(
                f"leaving event {bad} is not the window's oldest event: events must leave in the order "
                "they entered"
            )
        self.inversions = _leave(
            n, self.head, self.tail, self.width, self.height, self.rx, self.ry, self.rp, self.rt,
            self.nxt, self.first, self.last, self.count, self.tmin, self.tmax, self.inversions,
        )  # fmt: skip
        self.head += n

    def events(self) -> np.ndarray:
        """The window's events in arrival order (a new array)."""
        out = np.empty(len(self), EVENT_DTYPE)
        seqs = np.arange(self.head, self.tail, dtype=np.int64) & (self.rx.shape[0] - 1)
        out["x"], out["y"], out["p"], out["t"] = self.rx[seqs], self.ry[seqs], self.rp[seqs], self.rt[seqs]
        return out

    def time_range(self) -> tuple[int, int] | None:
        """Earliest and latest timestamp in the window (None when empty)."""
        if len(self) == 0:
            return None
        mask = self.rx.shape[0] - 1
        if self.inversions == 0:
            return int(self.rt[self.head & mask]), int(self.rt[(self.tail - 1) & mask])
        active = self.count > 0
        return int(self.tmin[active].min()), int(self.tmax[active].max())

    def planes(self, array: np.ndarray) -> np.ndarray:
        """A per-plane array viewed as ``(2, height, width)``."""
        return array.reshape(2, self.height, self.width)


# --------------------------------------------------------------------------------------------
# Representations


class IncrementalRepresentation:
    """Base class: ``update(enter, leave)`` then ``output()`` (float32 ``(C, H, W)``)."""

    name = ""

    def __init__(self, width: int, height: int):
        self.width, self.height = int(width), int(height)

    def update(self, enter: np.ndarray, leave: np.ndarray) -> None:
        """Applies one window step: ``leave`` (the oldest events, in order) go, ``enter`` come."""
        raise NotImplementedError

    def output(self) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class _Counts(IncrementalRepresentation):
    """Histogram / binary image: per-pixel counts with the output mirrored in place."""

    binary = False

    def __init__(self, width, height):
        super().__init__(width, height)
        self.counts = np.zeros(2 * self.width * self.height, np.int64)
        self._out = np.zeros(2 * self.width * self.height, np.float32)

    def reset(self):
        self.counts[:] = 0
        self._out[:] = 0

    def _apply(self, events, sign, what):
        x, y, p, _ = _fields(events, self.width, self.height, what)
        bad = _count_add(x, y, p, self.width, self.height, sign, self.counts, self._out, self.binary)
        if bad >= 0:
            raise ValueError(f"leaving event {bad} is not in the window (its pixel's count would go below 0)")

    def update(self, enter, leave):
        self._apply(leave, -1, "leaving")
        self._apply(enter, +1, "entering")

    def output(self):
        """The live output (updated in place by the next :meth:`update`; copy it to keep it)."""
        return self._out.reshape(2, self.height, self.width)


class IncrementalEventHistogram(_Counts):
    """Incremental :func:`reference.event_histogram`: O(events changed) per step, O(1) output."""

    name = "event_histogram"


class IncrementalBinaryEventImage(_Counts):
    """Incremental :func:`reference.binary_event_image`: keeps counts so a pixel turns 0 only
    when its last event leaves; O(events changed) per step, O(1) output."""

    name = "binary_event_image"
    binary = True


class _Stateful(IncrementalRepresentation):
    """Representations derived from :class:`WindowState` when the output is requested."""

    def __init__(self, width, height):
        super().__init__(width, height)
        self.state = WindowState(width, height)

    def reset(self):
        self.state.reset()

    def update(self, enter, leave):
        self.state.leave(leave)
        self.state.enter(enter)

    def _normalised(self):
        """(count, latest t_n, earliest t_n) as (2, H, W) planes, as the references define them."""
        s = self.state
        latest = np.empty(s.count.shape, np.float64)
        earliest = np.empty(s.count.shape, np.float64)
        t_range = s.time_range() or (0, 0)
        _normalised_planes(s.count, s.tmax, s.tmin, *t_range, latest, earliest)
        return s.planes(s.count), s.planes(latest), s.planes(earliest)


class IncrementalTimestampImage(_Stateful):
    """Incremental :func:`reference.timestamp_image` (O(pixels) output: the time range moves)."""

    name = "timestamp_image"
    count_channels = False

    def output(self):
        s = self.state
        out = np.empty((4 if self.count_channels else 2, self.height * self.width), np.float32)
        count, tmax = s.count.reshape(2, -1), s.tmax.reshape(2, -1)
        top = count.max(axis=1).astype(np.float64) if self.count_channels and len(s) else np.zeros(2)
        _latest_out(count, tmax, *(s.time_range() or (0, 0)), top, out, self.count_channels)
        return out.reshape(-1, self.height, self.width)


class IncrementalEventImage(IncrementalTimestampImage):
    """Incremental :func:`reference.event_image` (O(pixels) output: the time range and the
    maximum counts move)."""

    name = "event_image"
    count_channels = True


class IncrementalTimeSurface(_Stateful):
    """Incremental :func:`reference.time_surface` (O(pixels) output). With an explicit ``t_ref``
    earlier than the window's latest event, pixels may need an event older than their latest, so
    the surface is recomputed from the window's events."""

    name = "time_surface"

    def __init__(self, width, height, *, tau_us=None, t_ref=None):
        super().__init__(width, height)
        check_tau(tau_us)
        self.tau_us, self.t_ref = tau_us, t_ref

    def output(self):
        s = self.state
        t_range = s.time_range()
        if t_range is None:
            return np.zeros((2, self.height, self.width), np.float32)
        if self.t_ref is not None and int(self.t_ref) < t_range[1]:
            return cpu.time_surface(s.events(), self.width, self.height, tau_us=self.tau_us, t_ref=self.t_ref)
        t_ref, tau = time_surface_params(np.asarray(t_range), self.tau_us, self.t_ref)
        return cpu.exp_decay(s.planes(s.tmax), s.planes(s.count) > 0, t_ref, tau)


class IncrementalSortedTimeSurface(_Stateful):
    """Incremental :func:`reference.sorted_time_surface` (O(A log A) output for A active pixels:
    the ranks of all pixels move when one pixel's latest timestamp changes)."""

    name = "sorted_time_surface"

    def __init__(self, width, height, *, use_image=True):
        super().__init__(width, height)
        self.use_image = bool(use_image)

    def output(self):
        s = self.state
        return cpu.rank_surface(s.planes(s.tmax), s.planes(s.count) > 0, self.use_image)


class IncrementalDist(_Stateful):
    """Incremental :func:`reference.dist` (O(pixels) output: clipping level, neighbourhood
    discounts and ranks are recomputed from the per-pixel count, latest and earliest time)."""

    name = "dist"

    def __init__(
        self, width, height, *, alpha=DIST_ALPHA, patch_size=DIST_PATCH_SIZE, clip_rate=DIST_CLIP_RATE
    ):
        super().__init__(width, height)
        check_patch_size(patch_size)
        self.alpha, self.patch_size, self.clip_rate = alpha, patch_size, clip_rate

    def output(self):
        count, latest, earliest = self._normalised()
        planes = [
            cpu.dist_plane(count[c], latest[c], earliest[c], self.alpha, self.patch_size, self.clip_rate)
            for c in (0, 1)
        ]
        return np.stack(planes).astype(np.float32)


class IncrementalVoxelGrid(_Stateful):
    """:func:`reference.voxel_grid` over a sliding window. Not incremental in its output: each
    event's bilinear weights depend on the window's time range, which moves at every step, so
    :meth:`output` recomputes the grid from the window's events (O(window events), numba)."""

    name = "voxel_grid"

    def __init__(self, width, height, *, num_bins=9, measurement="count"):
        super().__init__(width, height)
        check_voxel_params(num_bins, measurement)
        self.num_bins, self.measurement = num_bins, measurement

    def output(self):
        return cpu.voxel_grid(
            self.state.events(), self.width, self.height, num_bins=self.num_bins, measurement=self.measurement
        )


INCREMENTAL = {
    cls.name: cls
    for cls in (
        IncrementalEventHistogram,
        IncrementalBinaryEventImage,
        IncrementalEventImage,
        IncrementalTimestampImage,
        IncrementalSortedTimeSurface,
        IncrementalDist,
        IncrementalVoxelGrid,
        IncrementalTimeSurface,
    )
}


def incremental(name: str, width: int, height: int, **params) -> IncrementalRepresentation:
    """An incremental representation by name (the names of ``REPRESENTATIONS``), with the same
    parameters as the reference function."""
    if name not in INCREMENTAL:
        raise ValueError(f"unknown representation {name!r}; choose one of {', '.join(INCREMENTAL)}")
    return INCREMENTAL[name](width, height, **params)
