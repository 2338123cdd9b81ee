"""Event sources behind one interface, chosen from a ``--source`` string.

* a path: a recording in any readable format, paced by its timestamps (``speed``: 1 real time,
  0.1 ten times slower, None as fast as possible), optionally looped;
* ``tcp://host:port`` or ``ipc://path``: a ZeroMQ stream in evstream's wire format
  (:mod:`evstream.runtime.wire`), SUB (default) or PULL (``zmq_source.py``);
* ``camera:N`` / ``video:FILE``: frames turned into events by the emulator (``video_source.py``);
* ``dv:``, ``dv-net://host:port``, ``metavision:``: real sensors (``sensor_sources.py``).

Every source yields event arrays (``EVENT_DTYPE``) from :meth:`Source.batches` until the end of
the stream, knows the sensor size, and reports what it lost in :meth:`Source.stats`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

log = logging.getLogger("evstream.sources")


class Source(ABC):
    """A stream of events. ``live`` sources drop on overload; recordings wait."""

    live = False
    description = ""
    width = 0
    height = 0

    def __init__(self):
        self._stop = threading.Event()

    @abstractmethod
    def batches(self) -> Iterator[np.ndarray]:
        """Yields event arrays until the stream ends or :meth:`stop` is called."""

    def stop(self) -> None:
        """Asks :meth:`batches` to return soon (from any thread)."""
        self._stop.set()

    def stats(self) -> dict:
        """Counters of events lost or skipped before they reached evstream."""
        return {}

    def close(self) -> None:
        self.stop()


class FileSource(Source):
    """Replays a recording, paced by its timestamps.

    Args:
        path: any readable recording.
        speed: 1.0 replays in real time, 0.5 at half speed; None as fast as possible.
        loop: start again at the end (timestamps keep increasing across loops).
        slice_us: pacing granularity in microseconds of recording time.
    """

    def __init__(
        self,
        path,
        speed: float | None = 1.0,
        loop: bool = False,
        slice_us: int = 1000,
        format: str | None = None,
        sensor_size=None,
    ):
        super().__init__()
        from ..replay import open_events

        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive (or None for as fast as possible), got {speed}")
        self.path = os.fspath(path)
        self._open = lambda: open_events(self.path, format, sensor_size)
        with self._open() as r:
            self.width, self.height, self.format = r.width, r.height, r.format
        self.speed, self.loop, self.slice_us = speed, loop, slice_us
        self.description = (
            f"{self.path} ({self.format}, {self.width}x{self.height}, "
            + ("max speed" if speed is None else f"speed {speed:g}")
            + (", loop" if loop else "")
            + ")"
        )
        self.reader_counters: dict = {}

    def batches(self):
        from ..kernels.events import copy_events

        shift = 0
        first_t = None  # the recording's first timestamp, as stored
        while not self._stop.is_set():
            last_t = None
            with self._open() as reader:
                if self.speed is None:
                    parts = reader.blocks()
                else:
                    parts = reader.time_windows(self.slice_us)
                wall0 = t0 = None
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
                    if self.speed is not None:
                        if wall0 is None:
                            wall0, t0 = time.perf_counter(), int(ev["t"][0])
                        due = wall0 + (int(ev["t"][-1]) - t0) * 1e-6 / self.speed
                        delay = due - time.perf_counter()
                        if delay > 0 and self._stop.wait(delay):
                            return
                    last_t = int(ev["t"][-1])
                    yield ev
                self.reader_counters = dict(reader.counters)
            if not self.loop or last_t is None:
                return
            shift = last_t + 1 - first_t  # the next loop continues after this one

    def stats(self):
        return {"reader": self.reader_counters}


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
) -> Source:
    """A source from a ``--source`` value: a file path, ``tcp://…`` or ``ipc://…``."""
    from .sensor_sources import DvSource, MetavisionSource
    from .video_source import VideoSource
    from .zmq_source import ZmqSource

    if spec.startswith(("tcp://", "ipc://", "inproc://")):
        return ZmqSource(spec, pattern=zmq_pattern, follow=follow, first_message_timeout_s=connect_timeout_s)
    if spec.startswith(("camera:", "video:")):
        return VideoSource(spec, speed=speed, loop=loop)
    if spec.startswith(("dv:", "dv-net://")):
        return DvSource(spec)
    if spec.startswith("metavision:"):
        return MetavisionSource(spec)
    return FileSource(spec, speed=speed, loop=loop, format=format, sensor_size=sensor_size)
