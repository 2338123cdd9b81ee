"""Sliding event windows that report what changed: the events that enter and the events that
leave at each step, so that representations and the asynchronous network update incrementally.

Two kinds, both fed arbitrary batches of events in stream order:

* :class:`CountWindows` -- window ``k`` holds stream events ``[k*stride, k*stride + size)``
  (indices counted from the first event). Step ``k`` is emitted as soon as the window is full.
* :class:`TimeWindows` -- window ``k`` holds events with ``t0 + k*stride <= t < t0 + k*stride +
  duration`` (microseconds; ``t0`` is the first event's timestamp unless given, or with
  ``trailing`` the first event's timestamp minus ``duration - stride``: the first window then ends
  one stride after the first event and the windows fill up from there, so results start at once
  instead of after a whole duration). Step ``k`` is
  emitted when an event at or past the window's end arrives, or at :meth:`flush` (end of stream).
  Events are assumed in timestamp order (as every reader yields them); one that arrives late
  joins the window that is open when it arrives. A gap in time gives empty windows; after an
  empty window, more than ``max_empty`` (:data:`MAX_EMPTY_WINDOWS`) further empty ones (a long pause, or a
  timestamp that jumps ahead by days in a damaged stream) are skipped and counted in
  ``skipped``, so one event far in the future cannot stall the stream.

At step ``k``, ``enter`` holds the window's events that were not in window ``k-1`` and
``leave`` the events of window ``k-1`` that are not in window ``k`` (step 0: everything enters).
With ``stride > size`` (gaps between windows) events in the gaps are never part of a window.
Invariant (tested): applying ``+enter`` and ``-leave`` at every step reproduces exactly the
current window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..kernels.events import concat_events, empty_events

#: Empty time windows emitted in a row before the rest of a gap is skipped (see the module docstring).
MAX_EMPTY_WINDOWS = 1000


@dataclass(frozen=True)
class WindowStep:
    """One step of a sliding window.

    Attributes:
        index: window number (0, 1, ...).
        enter: events that joined the window at this step (``EVENT_DTYPE``).
        leave: events that left it.
        window: all events in the window now.
        t_start_us, t_end_us: the window's span: ``[t_start, t_end)`` for time windows; for count
            windows the first and one past the last event's timestamp.
        last_index: stream index of the newest event in the window (for latency bookkeeping),
            -1 for an empty window.
    """

    index: int
    enter: np.ndarray
    leave: np.ndarray
    window: np.ndarray
    t_start_us: int
    t_end_us: int
    last_index: int


@dataclass(frozen=True)
class CountWindowSpec:
    """``size`` events per window, advancing by ``stride`` events (defaults to ``size``)."""

    size: int
    stride: int | None = None

    def __post_init__(self):
        if self.size <= 0 or (self.stride is not None and self.stride <= 0):
            raise ValueError(f"window size and stride must be positive, got {self.size}, {self.stride}")


@dataclass(frozen=True)
class TimeWindowSpec:
    """``duration_us`` per window, advancing by ``stride_us`` (defaults to ``duration_us``)."""

    duration_us: int
    stride_us: int | None = None
    t0_us: int | None = None
    trailing: bool = False  # without t0_us: the first window ends one stride after the first event

    def __post_init__(self):
        if self.duration_us <= 0 or (self.stride_us is not None and self.stride_us <= 0):
            raise ValueError(
                f"window duration and stride must be positive, got {self.duration_us}, {self.stride_us}"
            )


class _Buffer:
    """Events from stream index ``start`` on, in arrival order (a list of arrays, compacted lazily)."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.start = 0  # stream index of the first buffered event
        self.n = 0

    def append(self, ev: np.ndarray) -> None:
        if len(ev):
            self.parts.append(ev)
            self.n += len(ev)

    def end(self) -> int:
        return self.start + self.n

    def slice(self, a: int, b: int) -> np.ndarray:
        """Events with stream indices [a, b) (must be buffered)."""
        if b <= a:
            return empty_events(0)
        self._compact()
        return self.parts[0][a - self.start : b - self.start]

    def drop_before(self, a: int) -> None:
        """Forgets events with stream index < a."""
        if a <= self.start:
            return
        self._compact()
        k = min(a, self.end()) - self.start
        rest = self.parts[0][k:] if self.parts else empty_events(0)
        self.parts = [rest] if len(rest) else []
        self.start += k
        self.n -= k

    def times(self) -> np.ndarray:
        self._compact()
        return self.parts[0]["t"] if self.parts else np.zeros(0, np.int64)

    def _compact(self) -> None:
        if len(self.parts) > 1:
            self.parts = [concat_events(self.parts)]


class CountWindows:
    """Count-based sliding windows (see the module docstring)."""

    skipped = 0  # as TimeWindows.skipped: count windows are never empty, none is skipped

    def __init__(self, spec: CountWindowSpec):
        self.size = spec.size
        self.stride = spec.stride or spec.size
        self._buf = _Buffer()
        self._k = 0  # next window to emit

    def reset(self) -> None:
        self._buf = _Buffer()
        self._k = 0

    def push(self, events: np.ndarray) -> Iterator[WindowStep]:
        """Adds events; yields every window step they complete."""
        self._buf.append(events)
        while True:
            k = self._k
            lo, hi = k * self.stride, k * self.stride + self.size
            if self._buf.end() < hi:
                return
            if k == 0:
                enter_lo, leave_lo, leave_hi = lo, 0, 0
            else:
                plo, phi = lo - self.stride, hi - self.stride
                enter_lo = max(lo, phi)
                leave_lo, leave_hi = plo, min(lo, phi)
            leave = self._buf.slice(leave_lo, leave_hi)
            enter = self._buf.slice(enter_lo, hi)
            window = self._buf.slice(lo, hi)
            yield WindowStep(k, enter, leave, window, int(window["t"][0]), int(window["t"][-1]) + 1, hi - 1)
            self._k += 1
            self._buf.drop_before(lo)  # keep window k (the next step's leave set)

    def flush(self) -> Iterator[WindowStep]:
        """End of stream: an incomplete count window is never emitted."""
        return iter(())


class TimeWindows:
    """Time-based sliding windows (see the module docstring)."""

    def __init__(self, spec: TimeWindowSpec, max_empty: int = MAX_EMPTY_WINDOWS):
        self.duration = spec.duration_us
        self.max_empty = max_empty
        self.stride = spec.stride_us or spec.duration_us
        self._t0 = spec.t0_us
        self._trailing = spec.trailing
        self._buf = _Buffer()
        self._k = 0
        self._prev: tuple[int, int] | None = None  # stream index range of window k-1
        self.skipped = 0  # empty windows skipped in long gaps

    def reset(self) -> None:
        self._buf = _Buffer()
        self._k = 0
        self._prev = None

    def _bounds(self, k: int) -> tuple[int, int]:
        start = self._t0 + k * self.stride
        return start, start + self.duration

    def push(self, events: np.ndarray) -> Iterator[WindowStep]:
        """Adds events; yields every window step they complete."""
        if len(events) and self._t0 is None:
            self._t0 = int(events["t"][0]) - (self.duration - self.stride if self._trailing else 0)
        self._buf.append(events)
        yield from self._emit(final=False)

    def flush(self) -> Iterator[WindowStep]:
        """End of stream: emits the windows that the buffered events reach."""
        yield from self._emit(final=True)

    def _emit(self, final: bool) -> Iterator[WindowStep]:
        while self._t0 is not None:
            t = self._buf.times()
            start, end = self._bounds(self._k)
            first = self._buf.start
            if len(t) and (self._prev is None or self._prev[0] == self._prev[1]):
                # Nothing to leave, and the buffer starts at the next event in arrival order: the
                # windows it closes are identical empty steps; a long run of them is skipped.
                reach = (int(t[0]) - self._t0 - self.duration) // self.stride + 1
                if reach - self._k > self.max_empty:
                    self.skipped += reach - self._k
                    self._k = reach
                    continue
            # An event at or past the end closes the window; arrival order decides membership.
            closing = np.flatnonzero(t >= end)
            if not len(closing) and not (final and len(t) and int(t.max()) >= start):
                return
            stop = first + (int(closing[0]) if len(closing) else len(t))
            begin = first + int(np.argmax(t >= start)) if np.any(t >= start) else stop
            begin = min(begin, stop)
            cur = (begin, stop)
            if self._prev is None:
                enter_rng, leave_rng = cur, (0, 0)
            else:
                plo, phi = self._prev
                enter_rng = (max(begin, phi), stop)
                leave_rng = (plo, min(begin, phi))
            yield WindowStep(
                self._k,
                self._buf.slice(*enter_rng),
                self._buf.slice(*leave_rng),
                self._buf.slice(*cur),
                start,
                end,
                stop - 1 if stop > begin else -1,
            )
            self._prev = cur
            self._k += 1
            self._buf.drop_before(begin)  # keep this window: the next step's `leave`
