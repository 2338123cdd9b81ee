"""Event sources behind one interface, chosen from a ``--source`` string.

* a path: a recording in any readable format, paced by its timestamps (``speed``: 1 real time,
  0.1 ten times slower, None as fast as possible), optionally looped;
* ``tcp://host:port`` or ``ipc://path``: a ZeroMQ stream in evstream's wire format
  (:mod:`evstream.runtime.wire`), SUB (default) or PULL (``zmq_source.py``);
* ``camera:N`` / ``video:FILE``: frames turned into events by the emulator (``video_source.py``);
* ``dv:``, ``dv-net://host:port``, ``metavision:``: real sensors (``sensor_sources.py``).

Every source yields event arrays (``EVENT_DTYPE``) from :meth:`Source.batches` until the end of
the stream, knows the sensor size, and reports what it lost in :meth:`Source.stats`. Paced
sources (recordings, video files) have a :class:`Pacer`: the viewer pauses, resumes and changes
their speed while they run.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator

import numpy as np

log = logging.getLogger("evstream.sources")


#: Stretches of recording time without events longer than this (seconds) are not waited through.
DEFAULT_MAX_GAP_S = 10.0


def checked_max_gap(max_gap_s: float) -> float:
    """``max_gap_s`` if it is a positive number of seconds (``inf``: never skip), else ValueError."""
    if not max_gap_s > 0:  # (also NaN)
        raise ValueError(
            f"the longest gap to wait through must be positive seconds (or inf), got {max_gap_s}"
        )
    return float(max_gap_s)


class Pacer:
    """Paces a recorded stream by its timestamps, at a speed that can change while it runs.

    :meth:`wait` ``(t_us)`` returns when the event time ``t_us`` is due: ``speed`` 1.0 is real
    time, 2.0 twice as fast, None as fast as possible. A speed change or a pause re-anchors the
    clock at the current stream time, so the replay continues from where it is instead of
    jumping ahead or waiting to catch up. Thread-safe: the viewer calls :meth:`set_speed`,
    :meth:`pause` and :meth:`resume` from its own thread.

    A jump of more than ``max_gap_s`` seconds of stream time from the previous call's time to the
    next part's first one is skipped: forwards (a pause in the recording, a damaged timestamp) it
    is not waited through, backwards (a clock reset, the way back from a damaged timestamp) it is
    not raced through. The clock re-anchors there, and the jump is counted in
    :attr:`gaps_skipped` and :attr:`gap_seconds_skipped`.
    """

    def __init__(self, speed: float | None, stop: threading.Event, max_gap_s: float = DEFAULT_MAX_GAP_S):
        self._speed = self._checked(speed)
        self._max_gap_s = checked_max_gap(max_gap_s)
        self._stop = stop
        self._paused = False
        self._cond = threading.Condition()
        self._anchor: tuple[float, int] | None = None  # (wall time, stream time) of the last re-anchoring
        self._last_t: int | None = None
        self.gaps_skipped = 0
        self.gap_seconds_skipped = 0.0

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def max_gap_s(self) -> float:
        return self._max_gap_s

    def gap_stats(self) -> dict:
        """The jumps skipped, for a source's :meth:`~Source.stats`."""
        return {"gaps_skipped": self.gaps_skipped, "gap_seconds_skipped": self.gap_seconds_skipped}

    @staticmethod
    def _checked(speed: float | None) -> float | None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive (or None for as fast as possible), got {speed}")
        return speed

    def set_speed(self, speed: float | None) -> None:
        speed = self._checked(speed)
        with self._cond:
            self._speed = speed
            self._reanchor()

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._reanchor()

    def wake(self) -> None:
        """Wakes a waiting :meth:`wait` (after the stop event was set)."""
        with self._cond:
            self._cond.notify_all()

    def _reanchor(self) -> None:
        self._anchor = None if self._last_t is None else (time.perf_counter(), self._last_t)
        self._cond.notify_all()

    def wait(self, t_us: int, first_us: int | None = None) -> bool:
        """Blocks until stream time ``t_us`` is due; False when the source was stopped.
        ``first_us``: the time of the part's first event (default ``t_us``), from which a gap is
        measured."""
        first = t_us if first_us is None else first_us
        with self._cond:
            last = self._last_t
            gap_s = 0.0 if last is None else abs(first - last) * 1e-6
            if self._speed is not None and gap_s > self._max_gap_s:
                way = "forwards" if first > last else "backwards"
                log.info("skipped a %.1f s jump %s in the stream's timestamps", gap_s, way)
                self.gaps_skipped += 1
                self.gap_seconds_skipped += gap_s
                self._anchor = (time.perf_counter(), first)
                self._last_t = first  # (a pause meanwhile re-anchors here, not before the jump)
            while True:
                if self._stop.is_set():
                    return False
                if self._paused:
                    self._cond.wait(0.25)
                    continue
                now = time.perf_counter()
                if self._speed is None or self._anchor is None:
                    self._anchor = (now, t_us)
                    break
                due = self._anchor[0] + (t_us - self._anchor[1]) * 1e-6 / self._speed
                if due <= now:
                    break
                self._cond.wait(min(due - now, 0.25))
            self._last_t = t_us
            return True


class Source(ABC):
    """A stream of events. ``live`` sources drop on overload; recordings wait.

    ``pacer`` is the :class:`Pacer` of sources replayed at a controllable speed, else None."""

    live = False
    description = ""
    width = 0
    height = 0
    pacer: Pacer | None = None

    def __init__(self):
        self._stop = threading.Event()

    @abstractmethod
    def batches(self) -> Iterator[np.ndarray]:
        """Yields event arrays until the stream ends or :meth:`stop` is called."""

    def stop(self) -> None:
        """Asks :meth:`batches` to return soon (from any thread)."""
        self._stop.set()
        if self.pacer is not None:
            self.pacer.wake()

    def stats(self) -> dict:
        """Counters of events lost or skipped before they reached evstream."""
        return {}

    def close(self) -> None:
        self.stop()


def time_slices(events: np.ndarray, slice_us: int, jump_us: float = math.inf) -> Iterator[np.ndarray]:
    """Splits ``events`` (in file order) into consecutive parts for pacing, none empty (a long gap
    between two events costs nothing).

    A part ends before an event that reaches the next multiple of ``slice_us`` beyond the latest
    timestamp so far (an out-of-order earlier event stays in the part it arrived in), and before
    an event more than ``jump_us`` away from its predecessor, either way: a damaged timestamp is
    then a part of its own, and the events after it start afresh."""
    if not slice_us > 0:
        raise ValueError(f"slice_us must be positive, got {slice_us}")
    if not len(events):
        return
    t = events["t"]
    jumps = np.flatnonzero(np.abs(np.diff(t)) > jump_us) + 1
    for segment in np.split(events, jumps):
        reached = np.maximum.accumulate(segment["t"] // slice_us)
        yield from np.split(segment, np.flatnonzero(reached[1:] != reached[:-1]) + 1)


class FileSource(Source):
    """Replays a recording, paced by its timestamps.

    Args:
        path: any readable recording.
        speed: 1.0 replays in real time, 0.5 at half speed; None as fast as possible.
        loop: start again at the end (timestamps keep increasing across loops).
        slice_us: pacing granularity in microseconds of recording time.
        max_gap_s: stretches of recording time without events longer than this are skipped
            instead of waited through (see :class:`Pacer`; ``inf``: never).
    """

    def __init__(
        self,
        path,
        speed: float | None = 1.0,
        loop: bool = False,
        slice_us: int = 1000,
        format: str | None = None,
        sensor_size=None,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
    ):
        super().__init__()
        from ..replay import open_events

        self.pacer = Pacer(speed, self._stop, max_gap_s)
        self.path = os.fspath(path)
        self._open = lambda: open_events(self.path, format, sensor_size)
        with self._open() as r:
            self.width, self.height, self.format = r.width, r.height, r.format
        self.loop, self.slice_us = loop, slice_us
        self.description = (
            f"{self.path} ({self.format}, {self.width}x{self.height}, "
            + ("max speed" if speed is None else f"speed {speed:g}")
            + (", loop" if loop else "")
            + ")"
        )
        self._passes_counters: dict = {}  # the reader's counters summed over the finished passes
        self._reader = None  # the reader of the pass under way
        self._counters_lock = threading.Lock()  # (stats are read from other threads)

    @property
    def reader_counters(self) -> dict:
        """The reader's counters (damage recovered from: truncated bytes, events outside the
        sensor, ...) summed over every pass so far, the one under way included."""
        with self._counters_lock:
            total = Counter(self._passes_counters)
            if self._reader is not None:
                total.update(self._reader.counters.copy())
        return dict(total)

    def batches(self):
        from ..kernels.events import copy_events

        shift = 0
        first_t = None  # the recording's first timestamp, as stored
        while not self._stop.is_set():
            last_t = None
            with self._open() as reader:
                with self._counters_lock:
                    self._reader = reader
                # paced in slices of recording time, at full speed by whole blocks (a speed change
                # takes effect from the next block)
                parts = (
                    part
                    for block in reader.blocks()
                    for part in (
                        (block,)
                        if self.pacer.speed is None
                        else time_slices(block, self.slice_us, self.pacer.max_gap_s * 1e6)
                    )
                )
                for ev in parts:
                    if self._stop.is_set():
                        return
                    if not len(ev):
                        continue
                    if first_t is None:
                        first_t = int(ev["t"][0])
                    if shift:
                        ev = copy_events(ev)
                        ev["t"] += shift
                    if not self.pacer.wait(int(ev["t"][-1]), int(ev["t"][0])):
                        return
                    last_t = int(ev["t"][-1])
                    yield ev
            total = self.reader_counters
            with self._counters_lock:
                self._passes_counters, self._reader = total, None
            if not self.loop or last_t is None:
                return
            shift = last_t + 1 - first_t  # the next loop continues after this one

    def stats(self):
        return {
            "reader": self.reader_counters,
            **self.pacer.gap_stats(),
        }


def open_source(
    spec: str,
    *,
    speed: float | None = 1.0,
    loop: bool = False,
    zmq_pattern: str = "sub",
    follow: bool = False,
    sensor_size=None,
    format: str | None = None,
    connect_timeout_s: float = 10.0,
    curve_keys=None,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> Source:
    """A source from a ``--source`` value: a file path, ``tcp://…`` or ``ipc://…`` (with
    ``curve_keys``, a folder made by ``evstream keys``: CURVE-authenticated), ``camera:N``,
    ``video:FILE``, ``dv:``, ``dv-net://…`` or ``metavision:``."""
    from .sensor_sources import DvSource, MetavisionSource
    from .video_source import VideoSource
    from .zmq_source import ZmqSource

    if spec.startswith(("tcp://", "ipc://", "inproc://")):
        return ZmqSource(
            spec,
            pattern=zmq_pattern,
            follow=follow,
            first_message_timeout_s=connect_timeout_s,
            curve_keys=curve_keys,
        )
    if curve_keys is not None:
        raise ValueError("--curve-keys applies to ZeroMQ sources (tcp://, ipc://) only")
    if spec.startswith(("camera:", "video:")):
        return VideoSource(spec, speed=speed, loop=loop, max_gap_s=max_gap_s)
    if spec.startswith(("dv:", "dv-net://")):
        return DvSource(spec)
    if spec.startswith("metavision:"):
        return MetavisionSource(spec)
    return FileSource(
        spec, speed=speed, loop=loop, format=format, sensor_size=sensor_size, max_gap_s=max_gap_s
    )
