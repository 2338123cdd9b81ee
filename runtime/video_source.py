"""Webcams and video files as event sensors: OpenCV frames through the event emulator."""

from __future__ import annotations

import os
import time

from .sources import DEFAULT_MAX_GAP_S, Pacer, Source


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

    def __init__(
        self,
        spec: str,
        speed: float | None = 1.0,
        loop: bool = False,
        config=None,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
    ):
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
        self.loop, self.spec = loop, spec
        self.pacer = None if self.live else Pacer(speed, self._stop, max_gap_s)
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
                        if not self.pacer.wait(t):
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
        return {"frames": self.frames, **(self.pacer.gap_stats() if self.pacer else {})}
