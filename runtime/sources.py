"""Event sources behind one interface, chosen from a ``--source`` string.

* a path: a recording in any readable format, paced by its timestamps (``speed``: 1 real time,
  0.1 ten times slower, None as fast as possible), optionally looped;
* ``tcp://host:port`` or ``ipc://path``: a ZeroMQ stream in evstream's wire format
  (:mod:`evstream.runtime.wire`), SUB (default) or PULL.

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
        shift = 0
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
                    if shift:
                        ev = ev.copy()
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
            shift = last_t + 1 - self._first_t()  # the next loop continues after this one

    def _first_t(self) -> int:
        with self._open() as r:
            for ev in r.blocks():
                return int(ev["t"][0])
        return 0

    def stats(self):
        return {"reader": self.reader_counters}


class ZmqSource(Source):
    """Receives events in the wire format from a ZeroMQ PUB (with SUB) or PUSH (with PULL).

    Malformed messages are counted and skipped with a warning; sequence gaps and events outside
    the sensor are counted as dropped. A publisher that restarts (a new stream id) is picked up.
    The stream ends at an end-of-stream message unless ``follow`` is set.
    """

    live = True

    def __init__(
        self,
        url: str,
        pattern: str = "sub",
        follow: bool = False,
        timeout_s: float | None = None,
        first_message_timeout_s: float = 10.0,
    ):
        super().__init__()
        import zmq

        if pattern not in ("sub", "pull"):
            raise ValueError(f"pattern must be 'sub' or 'pull', got {pattern!r}")
        self.url, self.pattern, self.follow = url, pattern, follow
        self.timeout_s = timeout_s
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB if pattern == "sub" else zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, 1000)
        self._sock.setsockopt(zmq.MAXMSGSIZE, (1 << 24) * 32 + (1 << 16))
        if pattern == "sub":
            self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(url)
        self.description = f"{url} (ZeroMQ {pattern.upper()})"
        self.counters = {"messages": 0, "malformed": 0, "gap_events": 0, "out_of_bounds": 0, "restarts": 0}
        self._stream = None
        self._expect = 0
        # The sensor size arrives with the first message.
        try:
            self._first = self._receive_first(first_message_timeout_s)
        except BaseException:
            self._sock.close(linger=0)
            raise

    def _recv(self, timeout_s: float):
        import zmq

        if not self._sock.poll(int(timeout_s * 1000)):
            return None
        return self._sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)

    def _receive_first(self, timeout_s: float):
        from .wire import WireError, decode

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frames = self._recv(min(0.2, max(0.0, deadline - time.monotonic())))
            if frames is None:
                continue
            try:
                msg = decode(frames)
            except WireError as exc:
                self._malformed(exc)
                continue
            self.width, self.height = msg.width, msg.height
            return msg
        raise TimeoutError(
            f"{self.url}: no evstream message within {timeout_s:g} s (is the publisher running?)"
        )

    def _malformed(self, exc) -> None:
        self.counters["malformed"] += 1
        if self.counters["malformed"] <= 10:
            log.warning("%s: skipped a malformed message: %s", self.url, exc)

    def _account(self, msg) -> None:
        self.counters["messages"] += 1
        if msg.stream != self._stream:
            if self._stream is not None:
                self.counters["restarts"] += 1
                log.warning("%s: publisher restarted (new stream %s)", self.url, msg.stream)
            self._stream, self._expect = msg.stream, msg.first
        if msg.first > self._expect:
            self.counters["gap_events"] += msg.first - self._expect
        self._expect = max(
            self._expect,
            msg.first + (len(msg.events) + msg.dropped_out_of_bounds if msg.events is not None else 0),
        )
        self.counters["out_of_bounds"] += msg.dropped_out_of_bounds

    def batches(self):
        from .wire import WireError, decode

        msg, idle = self._first, 0.0
        self._first = None
        while not self._stop.is_set():
            if msg is None:
                frames = self._recv(0.1)
                if frames is None:
                    idle += 0.1
                    if self.timeout_s is not None and idle >= self.timeout_s:
                        log.warning("%s: no message for %g s; stopping", self.url, self.timeout_s)
                        return
                    continue
                idle = 0.0
                try:
                    msg = decode(frames)
                except WireError as exc:
                    self._malformed(exc)
                    msg = None
                    continue
            self._account(msg)
            if msg.kind == "eos":
                if not self.follow:
                    return
            elif len(msg.events):
                yield msg.events
            msg = None

    def stats(self):
        return dict(self.counters)

    def close(self):
        super().close()
        self._sock.close(linger=0)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "camera: and video: sources need OpenCV: pip install 'evstream[camera]' (opencv-python-headless)"
        ) from None
    return cv2


class VideoSource(Source):
    """``camera:N`` (a webcam) or ``video:FILE``: OpenCV frames turned into events by the
    emulator (:mod:`evstream.kernels.emulator`), so any camera acts as an event sensor.

    Video files are paced by their frame timestamps (``speed`` as for recordings; None: as fast
    as possible); cameras are live (timestamps from the wall clock).
    """

    def __init__(self, spec: str, speed: float | None = 1.0, loop: bool = False, config=None):
        super().__init__()
        from ..kernels.emulator import EmulatorConfig, EventEmulator

        cv2 = _cv2()
        kind, _, target = spec.partition(":")
        self.live = kind == "camera"
        if self.live:
            if not target.isdigit():
                raise ValueError(f"{spec}: expected camera:N with N a device number, e.g. camera:0")
            self._open = lambda: cv2.VideoCapture(int(target))
        else:
            if not os.path.isfile(target):
                raise FileNotFoundError(f"{target}: no such video file")
            self._open = lambda: cv2.VideoCapture(target)
        cap = self._open()
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        cap.release()
        if not ok or frame is None:
            # OpenCV reports failure only through isOpened()/read(): say what could be wrong.
            what = "camera" if self.live else "video"
            raise ValueError(
                f"{spec}: OpenCV cannot open or read this {what} "
                "(no such device, no permission, or an unsupported codec)"
            )
        self.height, self.width = frame.shape[:2]
        self.speed, self.loop, self.spec = speed, loop, spec
        self._emulator = lambda: EventEmulator(self.width, self.height, config or EmulatorConfig())
        self.description = f"{spec} ({self.width}x{self.height}, emulated events)"
        self.frames = 0

    def batches(self):
        cv2 = _cv2()
        offset = 0
        while not self._stop.is_set():
            cap, emu = self._open(), self._emulator()
            wall0 = time.perf_counter()
            t_last = None
            try:
                while not self._stop.is_set():
                    ok, frame = cap.read()
                    if not ok:
                        break
                    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
                    if self.live:
                        t = int((time.perf_counter() - wall0) * 1e6)
                    else:
                        t = offset + int(round(cap.get(cv2.CAP_PROP_POS_MSEC) * 1000))
                        if t_last is not None and t <= t_last:
                            fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
                            t = t_last + int(1e6 / fps)
                        if self.speed is not None:
                            delay = wall0 + (t - offset) * 1e-6 / self.speed - time.perf_counter()
                            if delay > 0 and self._stop.wait(delay):
                                return
                    t_last = t
                    self.frames += 1
                    events = emu.frame(grey, t)
                    if len(events):
                        yield events
            finally:
                cap.release()
            if self.live or not self.loop or t_last is None:
                return
            offset = t_last + 1

    def stats(self):
        return {"frames": self.frames}


class DvSource(Source):
    """iniVation sensors through dv-processing: ``dv:`` (the first camera), ``dv:SERIAL``, or a DV
    network stream ``dv-net://HOST:PORT`` (dv-processing's NetworkWriter, DV software)."""

    live = True

    def __init__(self, spec: str):
        super().__init__()
        try:
            import dv_processing as dv
        except ImportError:
            raise ImportError(
                f"{spec}: iniVation sources need dv-processing: pip install dv-processing"
            ) from None
        self._dv = dv
        if spec.startswith("dv-net://"):
            host, _, port = spec[len("dv-net://") :].rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{spec}: expected dv-net://HOST:PORT")
            try:
                self._cap = dv.io.NetworkReader(host, int(port))
            except RuntimeError as exc:
                raise ValueError(f"{spec}: cannot connect to the DV stream ({exc})") from None
        else:
            serial = spec.partition(":")[2]
            try:
                self._cap = dv.io.camera.open(serial) if serial else dv.io.camera.open()
            except RuntimeError as exc:
                raise ValueError(f"{spec}: cannot open the iniVation camera ({exc})") from None
        if not self._cap.isEventStreamAvailable():
            raise ValueError(f"{spec}: the device or stream has no event stream")
        self.width, self.height = (int(v) for v in self._cap.getEventResolution())
        self.description = f"{spec} ({self.width}x{self.height}, dv-processing)"

    def batches(self):
        from ..kernels.events import make_events

        while not self._stop.is_set() and self._cap.isRunning():
            batch = self._cap.getNextEventBatch()
            if batch is None:
                self._stop.wait(0.001)
                continue
            a = batch.numpy()
            if len(a):
                yield make_events(a["x"], a["y"], a["timestamp"], a["polarity"])


class MetavisionSource(Source):
    """Prophesee sensors through the Metavision SDK: ``metavision:`` (the first camera) or
    ``metavision:SERIAL``."""

    live = True

    def __init__(self, spec: str, delta_t_us: int = 1000):
        super().__init__()
        try:
            from metavision_core.event_io import EventsIterator
        except ImportError:
            raise ImportError(
                f"{spec}: Prophesee cameras need the Metavision SDK's Python bindings (metavision_core); "
                "install the SDK from Prophesee"
            ) from None
        serial = spec.partition(":")[2]
        try:
            self._it = EventsIterator(input_path=serial, delta_t=delta_t_us)
        except Exception as exc:  # the SDK raises its own exception types
            raise ValueError(f"{spec}: cannot open the Prophesee camera ({exc})") from None
        self.height, self.width = (int(v) for v in self._it.get_size())
        self.description = f"{spec} ({self.width}x{self.height}, Metavision SDK)"

    def batches(self):
        from ..kernels.events import make_events

        for evs in self._it:
            if self._stop.is_set():
                return
            if len(evs):
                yield make_events(evs["x"], evs["y"], evs["t"], evs["p"])


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
    if spec.startswith(("tcp://", "ipc://", "inproc://")):
        return ZmqSource(spec, pattern=zmq_pattern, follow=follow, first_message_timeout_s=connect_timeout_s)
    if spec.startswith(("camera:", "video:")):
        return VideoSource(spec, speed=speed, loop=loop)
    if spec.startswith(("dv:", "dv-net://")):
        return DvSource(spec)
    if spec.startswith("metavision:"):
        return MetavisionSource(spec)
    return FileSource(spec, speed=speed, loop=loop, format=format, sensor_size=sensor_size)
