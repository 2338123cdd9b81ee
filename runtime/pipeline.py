"""The streaming loop behind ``evstream run``: source -> ring -> windows -> representation -> sinks.

A producer thread moves the source's batches into the ring (block for recordings, drop-oldest
for live sources: every dropped event is counted). The consumer (the calling thread) pops,
slides the windows and updates the representation incrementally from the entering and leaving
events. With a classifier (:class:`~evstream.runtime.classifier.StreamClassifier`) every step
refreshes the predictions (the asynchronous engine updated with the pixels that changed) and
reports their FLOPs; without one the output is the event histogram itself.

Latency of a window: from the arrival of its newest event (the moment the source handed it
over) to the moment the window's result is ready.

Observers: ``on_window`` gets every window's result; a ``tap`` (the viewer's
:class:`~evstream.runtime.viewer_state.ViewerTap`) gets each step's entering events, prediction
and latency and takes a copy of the representation only when its reader asked for one, so a slow
reader costs the loop nothing. :meth:`Pipeline.cancel` (from another thread) ends a run early;
the events still in the ring are then reported as ``events_unprocessed``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..kernels import _core
from .ring import EventRing
from .sources import Source
from .windows import CountWindows, CountWindowSpec, TimeWindows, TimeWindowSpec


@dataclass
class RunConfig:
    """Options of one run (the CLI only fills this in)."""

    window: CountWindowSpec | TimeWindowSpec = field(default_factory=lambda: TimeWindowSpec(10_000))
    ring_capacity: int = 1 << 22
    policy: str | None = None  # None: block for recordings, drop-oldest for live sources
    pop_events: int = 1 << 16
    max_seconds: float | None = None


#: Largest sensor the dense per-pixel state is allocated for (8192 x 8192: 512 MiB of histogram;
#: real event sensors have at most a few megapixels). A damaged or hostile file declaring
#: 65535 x 65535 gets a clear error instead of a 32 GiB allocation.
MAX_SENSOR_PIXELS = 1 << 26


def check_sensor_pixels(width: int, height: int) -> None:
    """Raises ValueError for a sensor too large for the per-pixel state (histogram, viewer frame)."""
    if width * height > MAX_SENSOR_PIXELS:
        raise ValueError(
            f"sensor size {width}x{height} is too large for the per-pixel state "
            f"({2 * width * height * 4 / 2**30:.1f} GiB; at most {MAX_SENSOR_PIXELS} pixels): "
            "if the recording's geometry is wrong, give the real one with --sensor WxH"
        )


class Histogram:
    """Event histogram ``(2, H, W)`` (polarity, row, column), updated incrementally."""

    def __init__(self, width: int, height: int):
        check_sensor_pixels(width, height)
        self.width, self.height = width, height
        self.counts = np.zeros((2, height, width), np.int32)

    def update(self, enter: np.ndarray, leave: np.ndarray) -> None:
        if len(enter):
            _core.histogram_add(self.counts, np.ascontiguousarray(enter), 1)
        if len(leave):
            _core.histogram_add(self.counts, np.ascontiguousarray(leave), -1)

    def image(self) -> np.ndarray:
        return self.counts


class LatencyRecorder:
    """Window latencies (ms) in bounded memory, for runs of any length: the exact values of the
    first ``keep`` windows, a histogram of all of them on log-spaced bins 0.5 % wide (1 us to
    1000 s), the maximum, and the last 200 for a status line. Percentiles are exact while at most
    ``keep`` windows were recorded, afterwards read from the histogram (within about 1 %)."""

    RATIO, LOWEST_MS = 1.005, 1e-3
    _LOG_RATIO = math.log(RATIO)
    BINS = int(math.ceil(math.log(1e6 / LOWEST_MS) / _LOG_RATIO)) + 1

    def __init__(self, keep: int = 100_000):
        self.keep = keep
        self.samples: list[float] = []
        self.count = 0
        self.max: float | None = None
        self.recent: deque = deque(maxlen=200)
        self.bins = np.zeros(self.BINS, np.int64)

    def add(self, ms: float) -> None:
        self.count += 1
        self.max = ms if self.max is None else max(self.max, ms)
        self.recent.append(ms)
        if len(self.samples) < self.keep:
            self.samples.append(ms)
        i = 0 if ms <= self.LOWEST_MS else int(math.log(ms / self.LOWEST_MS) / self._LOG_RATIO) + 1
        self.bins[min(i, self.BINS - 1)] += 1

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        if self.count <= self.keep:
            return float(np.percentile(self.samples, q))
        i = int(np.searchsorted(np.cumsum(self.bins), q / 100 * self.count))
        return float(min(self.LOWEST_MS * self.RATIO ** max(i - 0.5, 0), self.max))

    def __len__(self) -> int:
        return self.count


@dataclass
class Summary:
    """What a run did; ``to_dict`` is the ``--summary-json`` content."""

    source: str
    events_in: int = 0
    events_processed: int = 0
    events_dropped: int = 0
    windows: int = 0
    windows_skipped: int = 0  # empty time windows skipped in long gaps (see windows.MAX_EMPTY_WINDOWS)
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)
    wall_s: float = 0.0
    source_stats: dict = field(default_factory=dict)
    events_unprocessed: int = 0  # still in the ring when a run was cancelled or stopped by an error
    error: str | None = None
    cancelled: bool = False
    model: str | None = None
    flops_total: int = 0
    predictions: int = 0
    last_prediction: dict | None = None

    @property
    def latencies_ms(self) -> list[float]:
        """The window latencies (the first ``latency.keep`` of them in a very long run)."""
        return self.latency.samples

    def to_dict(self) -> dict:
        pct = self.latency.percentile
        return {
            "source": self.source,
            "events_in": self.events_in,
            "events_processed": self.events_processed,
            "events_dropped": self.events_dropped,
            "events_unprocessed": self.events_unprocessed,
            "cancelled": self.cancelled,
            "windows": self.windows,
            "windows_skipped": self.windows_skipped,
            "latency_ms_p50": pct(50),
            "latency_ms_p90": pct(90),
            "latency_ms_p99": pct(99),
            "latency_ms_max": self.latency.max,
            "latency_windows": self.latency.count,
            "wall_s": self.wall_s,
            "events_per_s": self.events_processed / self.wall_s if self.wall_s else None,
            "source_stats": self.source_stats,
            "error": self.error,
            "model": self.model,
            "flops_total": self.flops_total if self.model else None,
            "flops_per_window": self.flops_total / self.predictions if self.predictions else None,
            "flops_per_event": (
                self.flops_total / self.events_processed if self.model and self.events_processed else None
            ),
            "prediction": self.last_prediction,
        }


class Pipeline:
    """Runs a source through the loop; ``on_window(result)`` is called for every window."""

    def __init__(
        self, source: Source, config: RunConfig, on_window=None, on_status=None, classifier=None, tap=None
    ):
        self.source, self.config = source, config
        self.classifier = classifier
        self.tap = tap
        self.on_window, self.on_status = on_window, on_status
        policy = config.policy or ("drop-oldest" if source.live else "block")
        self.ring = EventRing(config.ring_capacity, policy)
        self._arrivals: deque = deque()  # (ring index of a batch's first event, arrival time)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self.summary: Summary | None = None  # the running summary (its counters are read live)

    def _produce(self) -> None:
        block = self.ring.policy == "block"
        try:
            for batch in self.source.batches():
                # Recorded before the push, so the consumer always finds it: events stored from
                # this index on arrived at this time.
                self._arrivals.append((self.ring.stored, time.perf_counter()))
                rest = batch
                while len(rest) and not self._stop.is_set():
                    stored = self.ring.push(rest, timeout=0.1 if block else None)
                    if not block:
                        break
                    rest = rest[stored:]  # block: retry what did not fit before the timeout
                if self._stop.is_set():
                    break
        except BaseException as exc:  # reported by run(); the consumer must not hang
            self._error = exc
        finally:
            self.ring.close()

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()

    def cancel(self) -> None:
        """Ends :meth:`run` soon, from any thread: the source stops, the windows are not flushed."""
        self._cancel.set()
        self.stop()

    def dropped(self) -> int:
        """Events dropped so far (ring overflow; the source's own gaps are added at the end)."""
        return self.ring.stats().dropped

    def run(self) -> Summary:
        cfg = self.config
        summary = self.summary = Summary(self.source.description)
        if self.classifier is not None:
            summary.model = self.classifier.mode
        windows = (
            CountWindows(cfg.window) if isinstance(cfg.window, CountWindowSpec) else TimeWindows(cfg.window)
        )
        # with a classifier the histogram is its own (it feeds the model the pixels that change)
        hist = None if self.classifier is not None else Histogram(self.source.width, self.source.height)
        if self.tap is not None:
            self.tap.attach(self.classifier.hist if self.classifier is not None else hist)
        producer = threading.Thread(target=self._produce, name="evstream-source", daemon=True)
        start = time.perf_counter()
        producer.start()
        self._popped: deque = deque()  # (window index of a batch's first event, ring index, count)
        seen = 0
        last_status = start
        try:
            while True:
                if cfg.max_seconds is not None and time.perf_counter() - start >= cfg.max_seconds:
                    break
                if self._cancel.is_set():
                    break
                batch, first = self.ring.pop_indexed(cfg.pop_events, timeout=0.05)
                if not len(batch):
                    if self.ring.closed and not len(self.ring):
                        break
                    continue
                self._popped.append((seen, first, len(batch)))
                seen += len(batch)
                summary.events_processed += len(batch)
                for step in windows.push(batch):
                    self._finish_window(step, hist, summary)
                now = time.perf_counter()
                if self.on_status and now - last_status >= 0.25:
                    last_status = now
                    self.on_status(self._status(summary, now - start))
            summary.cancelled = self._cancel.is_set()  # the stream did not end by itself
            if not summary.cancelled:
                for step in windows.flush():
                    self._finish_window(step, hist, summary)
        except KeyboardInterrupt:
            summary.error = "interrupted"
        finally:
            self.stop()
            producer.join(timeout=5)
            self.source.close()
        if self._error is not None and summary.error is None:
            summary.error = f"{type(self._error).__name__}: {self._error}"
        st = self.ring.stats()
        summary.events_in = st.offered
        summary.events_dropped = st.dropped
        summary.events_unprocessed = st.offered - st.dropped - summary.events_processed
        summary.wall_s = time.perf_counter() - start
        summary.windows_skipped = windows.skipped
        summary.source_stats = self.source.stats()
        summary.events_dropped += int(summary.source_stats.get("gap_events", 0))
        return summary

    def _arrival_of(self, window_index: int) -> float | None:
        """Arrival time of the event the windows numbered ``window_index`` (the popped batches
        map it to its ring index, the producer's records map that to its push)."""
        while len(self._popped) > 1 and self._popped[0][0] + self._popped[0][2] <= window_index:
            self._popped.popleft()
        if not self._popped:
            return None
        w0, ring0, _ = self._popped[0]
        ring_index = ring0 + (window_index - w0)
        while len(self._arrivals) > 1 and self._arrivals[1][0] <= ring_index:
            self._arrivals.popleft()
        if self._arrivals and self._arrivals[0][0] <= ring_index:
            return self._arrivals[0][1]
        return None

    def _finish_window(self, step, hist: Histogram | None, summary: Summary) -> None:
        prediction = predicted = None
        if self.classifier is not None:
            prediction = self.classifier.step(step.enter, step.leave, step.window)
            predicted = prediction.to_dict()
            summary.flops_total += prediction.flops
            summary.predictions += 1
            # The summary keeps the prediction of the last window that received events: at the end
            # of a recording the windows that only drain (lose events) carry no new information.
            if len(step.enter) or summary.last_prediction is None:
                summary.last_prediction = predicted
        else:
            hist.update(step.enter, step.leave)
        done = time.perf_counter()
        latency = None
        if step.last_index >= 0:
            arrival = self._arrival_of(step.last_index)
            if arrival is not None:
                latency = (done - arrival) * 1e3
                summary.latency.add(latency)
        summary.windows += 1
        if self.tap is not None:
            self.tap.window(step, prediction, latency)
        if self.on_window:
            self.on_window(
                {
                    "window": step.index,
                    "t_start_us": step.t_start_us,
                    "t_end_us": step.t_end_us,
                    "events": len(step.window),
                    "entered": len(step.enter),
                    "left": len(step.leave),
                    "latency_ms": latency,
                    "representation": {"kind": "histogram", "total": int(len(step.window))},
                    **({"prediction": predicted} if predicted is not None else {}),
                }
            )

    def _status(self, s: Summary, elapsed: float) -> str:
        lat = f"{np.percentile(s.latency.recent, 50):.2f} ms" if s.latency.recent else "-"
        st = self.ring.stats()
        line = (
            f"{s.events_processed / max(elapsed, 1e-9) / 1e6:7.2f} M ev/s | windows {s.windows} | "
            f"dropped {st.dropped} | latency p50 {lat}"
        )
        if s.last_prediction:
            best = s.last_prediction["top"][0]
            per_event = s.flops_total / max(s.events_processed, 1)
            line += (
                f" | {best['class']} ({best['probability']:.2f}) | "
                f"{s.last_prediction['flops'] / 1e6:.2f} MFLOP/window, {per_event / 1e3:.1f} kFLOP/event"
            )
        return line


def write_jsonl(path):
    """A window callback writing one JSON line per window."""
    f = open(path, "w")

    def sink(result: dict) -> None:
        f.write(json.dumps(result) + "\n")

    sink.close = f.close
    return sink
