"""What the viewer shows, computed without Qt: the pipeline side (:class:`ViewerTap`) and the
images (:class:`DecayingFrame`, :func:`histogram_image`).

The pipeline's consumer thread calls :meth:`ViewerTap.window` once per window step; it only
appends the step's entering events (a copy, so the viewer never holds the pipeline's buffers),
the prediction and the latency to bounded buffers, and copies the representation when the viewer
asked for one since the last step. The viewer's timer calls :meth:`ViewerTap.take` and draws at
its own pace. A viewer that falls behind loses display updates, never events: events beyond
``max_events`` waiting for the viewer are left undrawn (counted in ``undrawn_events``) while the
pipeline processes all of them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..kernels import display

#: Display colours (RGB): background, ON events, OFF events (the Prophesee viewers' scheme).
BACKGROUND = np.array([30, 31, 36], np.float64)
ON_COLOUR = np.array([255, 255, 255], np.float64)
OFF_COLOUR = np.array([64, 126, 230], np.float64)


class DecayingFrame:
    """The live event frame: each pixel shows its latest events' polarity colours, fading with
    ``exp(-(now - t) / tau)``, ``now`` the newest event's timestamp (stream time, so a paused
    replay stands still). The state is the latest timestamp per (polarity, pixel); the drawing
    rule and its numba kernels are in :mod:`evstream.kernels.display`.
    """

    def __init__(self, width: int, height: int, tau_us: float = 30_000.0, restart_us: int = 1_000_000):
        if width <= 0 or height <= 0:
            raise ValueError(f"sensor size must be positive, got {width}x{height}")
        if not tau_us > 0:
            raise ValueError(f"decay time must be positive, got {tau_us}")
        self.width, self.height, self.tau_us = width, height, float(tau_us)
        self.restart_us = restart_us
        self.last_t = np.full(2 * height * width, display.NEVER, np.int64)
        self.now_us: int | None = None
        self._out = np.empty((height, width, 3), np.uint8)

    def add(self, events: np.ndarray) -> None:
        """Adds events (any order; out-of-sensor coordinates are ignored). Events all older than
        the newest drawn by more than ``restart_us`` mean the stream's clock restarted (a
        restarted publisher): the frame starts afresh instead of staying dark."""
        if not len(events):
            return
        if self.now_us is not None and int(events["t"].max()) < self.now_us - self.restart_us:
            self.last_t.fill(display.NEVER)
            self.now_us = None
        newest = display.latest_times(
            self.last_t, events["x"], events["y"], events["p"], events["t"], self.width, self.height
        )
        if newest != display.NEVER:
            self.now_us = newest if self.now_us is None else max(self.now_us, int(newest))

    def rgb(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 image (a new array)."""
        now = display.NEVER if self.now_us is None else self.now_us
        display.decay_rgb(self.last_t, now, self.tau_us, BACKGROUND, ON_COLOUR, OFF_COLOUR, self._out)
        return self._out.copy()


def histogram_image(counts: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None):
    """The model's input as the viewer shows it: ``counts`` ``(2, H, W)`` (OFF, ON), resized by
    nearest neighbour with ``rows`` / ``cols`` (source index per output row / column) when the
    model's input differs from the sensor, laid out ``[ON | OFF]`` side by side with a one-pixel
    gap of NaN. Returns ``(image float32 (h, 2w+1), max count)``."""
    if rows is not None and cols is not None:
        counts = counts[:, rows][:, :, cols]
    on, off = counts[1].astype(np.float32), counts[0].astype(np.float32)
    gap = np.full((on.shape[0], 1), np.nan, np.float32)
    img = np.concatenate([on, gap, off], axis=1)
    return img, float(max(on.max(initial=0), off.max(initial=0)))


def display_scale(img: np.ndarray, q: float = 99.0) -> float:
    """The count drawn at full brightness: the ``q``-th percentile of the non-zero pixels (so a
    few hot pixels do not darken the rest), at least 1."""
    nz = img[np.isfinite(img) & (img > 0)]
    return float(max(1.0, np.percentile(nz, q))) if len(nz) else 1.0


@dataclass
class TapSnapshot:
    """What :meth:`ViewerTap.take` hands the viewer: everything since its previous call."""

    events: list = field(default_factory=list)  # arrays of entering events, oldest first
    undrawn_events: int = 0  # events skipped for display since the previous snapshot
    windows: int = 0
    entered: int = 0
    flops: int = 0
    latencies_ms: list = field(default_factory=list)
    prediction: dict | None = None  # the newest
    counts: np.ndarray | None = None  # the representation, when requested


class ViewerTap:
    """The pipeline -> viewer hand-over (see the module docstring). Thread-safe: ``window`` runs on
    the pipeline's consumer thread, ``take`` on the viewer's."""

    def __init__(self, max_events: int = 2_000_000):
        self.max_events = max_events
        self._lock = threading.Lock()
        self._hist = None
        self._want_counts = False
        self._shown_prediction = None
        self._fresh_prediction = False
        self._reset()
        self.events_total = 0
        self.undrawn_total = 0

    def _reset(self) -> None:
        self._pending = TapSnapshot()
        self._pending.events = deque()
        self._queued = 0

    def attach(self, hist) -> None:
        """The histogram whose counts are the representation (called by the pipeline)."""
        self._hist = hist

    def request_counts(self) -> None:
        """Asks for a copy of the representation at the next window step."""
        self._want_counts = True

    def window(self, step, prediction, latency_ms: float | None) -> None:
        enter = step.enter.copy() if len(step.enter) else None
        counts = None
        if self._want_counts and self._hist is not None:
            counts = self._hist.counts.copy()
            self._want_counts = False
        with self._lock:
            snap = self._pending
            if enter is not None:
                snap.events.append(enter)
                self._queued += len(enter)
                while self._queued > self.max_events and len(snap.events) > 1:
                    old = snap.events.popleft()
                    self._queued -= len(old)
                    snap.undrawn_events += len(old)
                    self.undrawn_total += len(old)
            snap.windows += 1
            n = 0 if enter is None else len(enter)
            snap.entered += n
            self.events_total += n
            if latency_ms is not None:
                snap.latencies_ms.append(latency_ms)
            if prediction is not None:
                snap.flops += prediction.flops
                # as in the run summary: windows that only lose events (a stream running dry)
                # do not replace the prediction on display
                if n or self._shown_prediction is None:
                    self._shown_prediction = prediction  # made a dict by take(), off this thread
                    self._fresh_prediction = True
            if counts is not None:
                snap.counts = counts

    def take(self) -> TapSnapshot:
        with self._lock:
            snap = self._pending
            prediction, self._fresh_prediction = (
                self._shown_prediction if self._fresh_prediction else None,
                False,
            )
            self._reset()
        snap.events = list(snap.events)
        if prediction is not None:
            snap.prediction = prediction.to_dict()
        return snap


class RateMeter:
    """Frames per second over the last ``span_s`` seconds."""

    def __init__(self, span_s: float = 2.0):
        self.span_s = span_s
        self.times: deque = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.times.append(now)
        while self.times and now - self.times[0] > self.span_s:
            self.times.popleft()

    def rate(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)
