"""The Qt viewer of ``evstream run --viewer`` and ``evstream view`` (pyqtgraph; ``evstream[viewer]``).

One window shows the live event frame (polarity colours, decaying), the representation the
model sees, the top-k predictions with class names, rolling plots of event rate, window latency
and FLOPs per event, and counters (events, dropped events, windows, the viewer's own frame
rate). Replays are paused, resumed, sped up and slowed down from the keyboard; ``H`` lists the
keys.

The pipeline runs on its own thread and never waits for the viewer: the viewer's timer pulls
what happened since its last frame from a :class:`~evstream.runtime.viewer_state.ViewerTap`.
Qt is imported only here, and only when a viewer is asked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .viewer_state import BACKGROUND, DecayingFrame, RateMeter, ViewerTap, display_scale, histogram_image

#: Qt platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay")

NO_DISPLAY_ADVICE = (
    "use --screenshot FILE.png (renders offscreen, no display needed) or run without --viewer "
    "for the terminal status line"
)

_PROBE = "import sys\nfrom pyqtgraph.Qt import QtWidgets\napp = QtWidgets.QApplication(sys.argv[:1])\n"


class ViewerUnavailable(RuntimeError):
    """No window can be opened here (no display, or Qt cannot reach it)."""


def _headless_platform(env) -> bool:
    """QT_QPA_PLATFORM names a platform that needs no display server."""
    return env.get("QT_QPA_PLATFORM", "").split(":")[0].strip() in HEADLESS_PLATFORMS


def display_problem(env=None, platform: str | None = None) -> str | None:
    """Why a window cannot open here, judged from the environment alone (None: it may)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if _headless_platform(env):
        return None
    if platform.startswith("linux") and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return (
            "no display: neither DISPLAY nor WAYLAND_DISPLAY is set "
            "(a headless machine, or an SSH session without X forwarding)"
        )
    return None


_probed: dict = {}


def probe_display(timeout_s: float = 30.0) -> str | None:
    """Starts Qt in a child process (Qt aborts a process whose display it cannot open): the
    reason it failed, or None when a window can open. Remembered per display setting."""
    if problem := display_problem():
        return problem
    if _headless_platform(os.environ):
        return None
    key = tuple(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if key not in _probed:
        _probed[key] = _probe(timeout_s)
    return _probed[key]


def _probe(timeout_s: float) -> str | None:
    try:
        run = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return f"Qt did not start within {timeout_s:g} s"
    if run.returncode == 0:
        return None
    lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()]
    detail = "; ".join(lines[-3:]) if lines else f"exit status {run.returncode}"
    return f"Qt cannot open a window here ({detail})"


def import_qt():
    """pyqtgraph and its Qt modules, or an ImportError naming the extra to install."""
    try:
        import pyqtgraph as pg
        from pyqtgraph.Qt import QtCore, QtGui, QtWidgets
    except ImportError as exc:
        raise ImportError(
            f"the viewer needs pyqtgraph and a Qt binding ({exc}): pip install 'evstream[viewer]'"
        ) from None
    from pyqtgraph import Qt as pgqt

    if pgqt.QT_LIB == "PySide6" and sys.version_info < (3, 12):
        import PySide6

        if PySide6.__version__ == "6.12.0":
            raise ImportError(
                "PySide6 6.12.0 corrupts the reference counts of None/True/False on Python < 3.12 and "
                "the viewer would crash: pip install 'PySide6-Essentials!=6.12.0' (6.11.3 is tested)"
            )
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    _quiet_offscreen_warnings(QtCore)
    return pg, QtCore, QtGui, QtWidgets


_handler_installed = False


def _quiet_offscreen_warnings(QtCore) -> None:  # noqa: N803 (Qt module)
    """The offscreen platform warns on every window resize that it 'does not support
    propagateSizeHints()'; drop that line, pass everything else to stderr."""
    global _handler_installed
    if _handler_installed:
        return
    _handler_installed = True

    def handler(mode, context, message):
        if "propagateSizeHints" not in message:
            sys.stderr.write(message + "\n")

    QtCore.qInstallMessageHandler(handler)


@dataclass
class ViewerStats:
    """What the viewer did: frames drawn, their rate, events it skipped drawing."""

    frames: int = 0
    fps_median: float | None = None
    undrawn_events: int = 0
    screenshot: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


SPEED_MIN, SPEED_MAX = 1 / 64, 64.0
HISTORY_S = 30.0  # span of the rolling plots
PLOT_PERIOD_S = 0.2  # one point per curve every ... (each point repaints three plots)


def build_window(pipeline, tap: ViewerTap, *, fps: float = 30.0, top_k: int = 5):
    """The viewer's main window for ``pipeline`` (not started). Separate from :func:`run_viewer`
    so tests can drive it with ``qtbot``."""
    pg, QtCore, QtGui, QtWidgets = import_qt()
    Qt = QtCore.Qt

    class ViewerWindow(QtWidgets.QMainWindow):
        def __init__(self):
            super().__init__()
            self.pipeline, self.tap = pipeline, tap
            self.source = pipeline.source
            self.classifier = pipeline.classifier
            self.stream_done = False  # set by the runner when the pipeline returned
            self.frame = DecayingFrame(self.source.width, self.source.height)
            self.fps_meter = RateMeter()
            self.frame_rates: list[float] = []
            self.stats = ViewerStats()
            self.t_start = time.perf_counter()
            self._acc = {"entered": 0, "flops": 0, "lat": [], "t": self.t_start}
            self.history = {
                k: deque(maxlen=int(HISTORY_S / PLOT_PERIOD_S)) for k in ("t", "rate", "lat", "fpe")
            }
            self.events_drawn = 0
            self._lut = pg.colormap.get("viridis").getLookupTable(nPts=256, alpha=False).astype(np.uint8)
            self.setWindowTitle(f"evstream — {self.source.description}")
            self.resize(1280, 820)
            self._build(pg, QtWidgets, QtGui, Qt)
            self.keys = self._key_table(Qt)
            self.help.setText(self._help_html())
            self.timer = QtCore.QTimer(self)
            self.timer.setTimerType(Qt.TimerType.PreciseTimer)
            self.timer.timeout.connect(self.tick)
            self.timer.start(max(1, int(1000 / fps)))
            self.on_tick = None  # extra per-frame hook (screenshots)

        # -- layout --------------------------------------------------------------------------
        def _build(self, pg, QtWidgets, QtGui, Qt):
            central = QtWidgets.QWidget()
            grid = QtWidgets.QGridLayout(central)
            grid.setContentsMargins(6, 6, 6, 6)
            self.setCentralWidget(central)

            self.events_view = pg.GraphicsLayoutWidget()
            self.events_title = self.events_view.addLabel(
                f"events {self.source.width}x{self.source.height} (ON white, OFF blue, fading over "
                f"{self.frame.tau_us / 1000:g} ms)",
                row=0,
                col=0,
            )
            vb = self.events_view.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
            self.events_image = pg.ImageItem()
            vb.addItem(self.events_image)
            vb.setRange(xRange=(0, self.source.width), yRange=(0, self.source.height), padding=0.01)
            self.events_image.setImage(self.frame.rgb(), autoLevels=False)

            self.rep_view = pg.GraphicsLayoutWidget()
            self.rep_title = self.rep_view.addLabel("representation", row=0, col=0)
            rvb = self.rep_view.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False)
            self.rep_image = pg.ImageItem()
            rvb.addItem(self.rep_image)

            self.prediction_label = QtWidgets.QLabel("waiting for events")
            font = self.prediction_label.font()
            font.setPointSize(22)
            font.setBold(True)
            self.prediction_label.setFont(font)
            self.prediction_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.prediction_detail = QtWidgets.QLabel("")
            self.prediction_detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.bars_plot = pg.PlotWidget()
            self.bars_plot.setTitle("top classes")
            self.bars_plot.setXRange(0, 1, padding=0)
            self.bars_plot.setMouseEnabled(False, False)
            self.bars_plot.hideButtons()
            self.bars_plot.invertY(True)
            self.bars_plot.setLabel("bottom", "probability")
            self.bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brush=(90, 160, 250))
            self.bars_plot.addItem(self.bars)

            self.plots = {}
            for key, title, unit in (
                ("rate", "event rate", "ev/s"),
                ("lat", "window latency: p50 (blue), max (orange)", "s"),
                (
                    "fpe",
                    "FLOPs per event"
                    + (
                        ""
                        if self.classifier is None
                        else " (dense)"
                        if self.classifier.dense
                        else " (asynchronous)"
                    ),
                    "FLOP",
                ),
            ):
                w = pg.PlotWidget()
                w.setTitle(title)
                w.setLabel("left", units=unit)
                w.setLabel("bottom", "s")
                w.setMouseEnabled(False, False)
                w.hideButtons()
                w.showGrid(x=True, y=True, alpha=0.2)
                curve = w.plot(pen=pg.mkPen((90, 160, 250), width=2))
                self.plots[key] = (w, curve)
            self.lat_max_curve = self.plots["lat"][0].plot(pen=pg.mkPen((230, 120, 60), width=1))

            right = QtWidgets.QVBoxLayout()
            right.addWidget(self.rep_view, 3)
            right.addWidget(self.prediction_label)
            right.addWidget(self.prediction_detail)
            right.addWidget(self.bars_plot, 3)
            grid.addWidget(self.events_view, 0, 0, 1, 2)
            grid.addLayout(right, 0, 2)
            for i, key in enumerate(("rate", "lat", "fpe")):
                grid.addWidget(self.plots[key][0], 1, i)
            grid.setRowStretch(0, 3)
            grid.setRowStretch(1, 1)
            for c in range(3):
                grid.setColumnStretch(c, 1)

            self.status = QtWidgets.QLabel("")
            self.dropped_label = QtWidgets.QLabel("dropped 0")
            self.statusBar().addWidget(self.status, 1)
            self.statusBar().addPermanentWidget(self.dropped_label)

            self.help = QtWidgets.QLabel(central)
            self.help.setStyleSheet(
                "QLabel { background: rgba(20, 20, 26, 225); color: white; padding: 18px; "
                "border-radius: 8px; font-size: 14px; }"
            )
            self.help.hide()
            for w in self.findChildren(QtWidgets.QWidget):
                w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys go to the window
            self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            if self.classifier is None:
                self.prediction_label.setText("no model")
                self.prediction_detail.setText("run with --model CHECKPOINT for predictions")
                self.bars_plot.hide()
                self.plots["fpe"][0].setTitle("FLOPs per event (no model)")

        # -- keys ----------------------------------------------------------------------------
        def _key_table(self, Qt):
            K = Qt.Key
            return [
                ((K.Key_Space,), "Space", "pause / resume the replay", self.toggle_pause),
                (
                    (K.Key_Plus, K.Key_Equal, K.Key_BracketRight),
                    "+ or ]",
                    "faster (x2)",
                    lambda: self.scale_speed(2.0),
                ),
                ((K.Key_Minus, K.Key_BracketLeft), "- or [", "slower (/2)", lambda: self.scale_speed(0.5)),
                ((K.Key_1,), "1", "real time", lambda: self.set_speed(1.0)),
                ((K.Key_M,), "M", "as fast as possible", lambda: self.set_speed(None)),
                ((K.Key_S,), "S", "save a screenshot (evstream-DATE-TIME.png)", self.save_screenshot_now),
                (
                    (K.Key_H, K.Key_F1, K.Key_Question),
                    "H, F1 or ?",
                    "show / hide this help",
                    self.toggle_help,
                ),
                ((K.Key_Q, K.Key_Escape), "Q or Esc", "quit", self.close),
            ]

        def _help_html(self) -> str:
            rows = "".join(
                f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{what}</td></tr>" for _, k, what, _ in self.keys
            )
            return f"<h3>evstream viewer: keys</h3><table>{rows}</table>"

        def keyPressEvent(self, event):  # noqa: N802 (Qt's name)
            for keys, _, _, action in self.keys:
                if event.key() in keys:
                    action()
                    return
            super().keyPressEvent(event)

        def toggle_help(self):
            if self.help.isVisible():
                self.help.hide()
                return
            self.help.adjustSize()
            c = self.centralWidget().rect().center()
            self.help.move(c.x() - self.help.width() // 2, c.y() - self.help.height() // 2)
            self.help.raise_()
            self.help.show()

        def toggle_pause(self):
            pacer = self.source.pacer
            if pacer is None:
                self.flash("live source: it cannot be paused")
            elif pacer.paused:
                pacer.resume()
            else:
                pacer.pause()

        def set_speed(self, speed):
            if self.source.pacer is None:
                self.flash("live source: its speed is the sensor's")
                return
            self.source.pacer.set_speed(speed)

        def scale_speed(self, factor: float):
            pacer = self.source.pacer
            if pacer is None:
                return self.set_speed(1.0)
            if pacer.speed is None:
                self.flash("as fast as possible: press 1 for real time first")
                return
            pacer.set_speed(float(min(SPEED_MAX, max(SPEED_MIN, pacer.speed * factor))))

        def flash(self, text: str):
            self.statusBar().showMessage(text, 3000)

        def save_screenshot_now(self):
            path = time.strftime("evstream-%Y%m%d-%H%M%S.png")
            self.flash(f"saved {path}" if self.save_screenshot(path) else f"could not write {path}")

        def save_screenshot(self, path: str) -> bool:
            ok = bool(self.grab().save(path))
            if ok:
                self.stats.screenshot = path
            return ok

        # -- drawing -------------------------------------------------------------------------
        @staticmethod
        def _set(widget, text: str) -> None:
            """Sets a label's text only when it changed (each change costs a relayout/repaint)."""
            if widget.text != text if isinstance(widget.text, str) else widget.text() != text:
                widget.setText(text)

        def tick(self):
            now = time.perf_counter()
            snap = self.tap.take()
            self.tap.request_counts()
            for ev in snap.events:
                self.frame.add(ev)
                self.events_drawn += len(ev)
            if snap.events or self.stats.frames == 0:
                self.events_image.setImage(self.frame.rgb(), autoLevels=False)
            if snap.counts is not None:
                self._draw_representation(snap.counts)
            if snap.prediction is not None:
                self._draw_prediction(snap.prediction)
            acc = self._acc
            acc["entered"] += snap.entered
            acc["flops"] += snap.flops
            acc["lat"].extend(snap.latencies_ms)
            if now - acc["t"] >= PLOT_PERIOD_S:
                self._push_history(now)
            self.fps_meter.tick(now)
            self.stats.frames += 1
            if self.stats.frames % 10 == 0:
                self.frame_rates.append(self.fps_meter.rate())
            self._draw_status()
            if self.on_tick is not None:
                self.on_tick(self)

        def _draw_representation(self, counts):
            c = self.classifier
            rows, cols = (None, None) if c is None or c.identity else (c.rows, c.cols)
            img, vmax = histogram_image(counts, rows, cols)
            scale = display_scale(img)
            self.rep_image.setImage(colourise(img, scale, self._lut), autoLevels=False)
            h, w = img.shape
            # a CLIP model sees an event image made from the window, not these counts
            who = "model input" if c is not None and not c.image_input else "window histogram"
            self._set(
                self.rep_title,
                f"{who} {(w - 1) // 2}x{h}: ON | OFF counts (full scale {scale:.0f}, max {vmax:.0f})",
            )

        def _draw_prediction(self, pred):
            top = pred["top"][:top_k]
            best = top[0]
            self._set(self.prediction_label, f"{best['class']}  {best['probability'] * 100:.0f}%")
            self._set(
                self.prediction_detail,
                f"{self.classifier.mode}: {pred['flops'] / 1e6:.2f} MFLOP, "
                f"{pred['changed_sites']} sites changed",
            )
            self.bars.setOpts(
                x0=np.zeros(len(top)),
                y=np.arange(len(top)),
                width=[t["probability"] for t in top],
                height=0.7,
            )
            self.bars_plot.getAxis("left").setTicks([[(i, str(t["class"])) for i, t in enumerate(top)]])
            self.bars_plot.setYRange(-0.5, max(len(top), 3) - 0.5, padding=0)

        def _push_history(self, now: float):
            acc = self._acc
            dt = now - acc["t"]
            h = self.history
            h["t"].append(now - self.t_start)
            h["rate"].append(acc["entered"] / dt)
            lat = acc["lat"]
            h["lat"].append((float(np.median(lat)) / 1e3, max(lat) / 1e3) if lat else (np.nan, np.nan))
            h["fpe"].append(acc["flops"] / acc["entered"] if acc["entered"] and self.classifier else np.nan)
            self._acc = {"entered": 0, "flops": 0, "lat": [], "t": now}
            t = np.asarray(h["t"]) - (now - self.t_start)
            self.plots["rate"][1].setData(t, np.asarray(h["rate"]))
            lat_arr = np.asarray(h["lat"], float).reshape(-1, 2)
            self.plots["lat"][1].setData(t, lat_arr[:, 0], connect="finite")
            self.lat_max_curve.setData(t, lat_arr[:, 1], connect="finite")
            self.plots["fpe"][1].setData(t, np.asarray(h["fpe"], float), connect="finite")
            for w, _ in self.plots.values():
                w.setXRange(-HISTORY_S, 0, padding=0)

        def _draw_status(self):
            pacer = self.source.pacer
            if self.stream_done:
                mode = "end of stream"
            elif pacer is None:
                mode = "live"
            elif pacer.paused:
                mode = "PAUSED"
            elif pacer.speed is None:
                mode = "speed max"
            else:
                mode = f"speed {pacer.speed:g}x"
            s = self.pipeline.summary
            recent = [p50 for p50, _ in self.history["lat"] if np.isfinite(p50)]
            lat = f"{recent[-1] * 1e3:.2f} ms" if recent else "-"
            self._set(
                self.status,
                f"{mode} | events {self.tap.events_total:,} | windows {s.windows if s else 0:,} | "
                f"latency p50 {lat} | viewer {self.fps_meter.rate():.0f} fps | H: help",
            )
            dropped = self.pipeline.dropped()
            if self.dropped_label.text() != f"dropped {dropped:,}":
                self.dropped_label.setText(f"dropped {dropped:,}")
                self.dropped_label.setStyleSheet(
                    "color: rgb(230, 70, 60); font-weight: bold;" if dropped else ""
                )

        def closeEvent(self, event):  # noqa: N802 (Qt's name)
            self.timer.stop()
            self.pipeline.cancel()
            rates = [r for r in self.frame_rates if r > 0]
            self.stats.fps_median = float(np.median(rates)) if rates else None
            super().closeEvent(event)

    return ViewerWindow()


def colourise(img: np.ndarray, vmax: float, lut: np.ndarray) -> np.ndarray:
    """``(h, w)`` float image (NaN: gap) -> ``(h, w, 3)`` uint8 through a 256-entry colour table,
    0..vmax mapped onto it."""
    gap = np.isnan(img)
    idx = np.clip(np.nan_to_num(img) / max(vmax, 1.0) * 255.0, 0, 255).astype(np.uint8)
    out = lut[idx]
    out[gap] = BACKGROUND.astype(np.uint8)
    return out


def run_viewer(
    pipeline,
    tap: ViewerTap,
    *,
    screenshot: str | None = None,
    after_s: float = 3.0,
    fps: float = 30.0,
    top_k: int = 5,
):
    """Runs ``pipeline`` on a thread with the viewer open until the window is closed (or, with
    ``screenshot``, until the screenshot is saved ``after_s`` seconds after the pipeline started
    (the window's start-up not counted), or at the end of the stream if that comes first).
    Returns ``(summary, ViewerStats)``.

    Raises :class:`ViewerUnavailable` when no window can open here (checked before anything runs).
    """
    pg, QtCore, QtGui, QtWidgets = import_qt()
    app = QtWidgets.QApplication.instance()
    if app is None:
        if screenshot is not None:
            if probe_display() is not None:
                os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no display
        elif problem := probe_display():
            raise ViewerUnavailable(problem)
        app = QtWidgets.QApplication(sys.argv[:1])
    win = build_window(pipeline, tap, fps=fps, top_k=top_k)
    result: dict = {}

    def work():
        try:
            result["summary"] = pipeline.run()
        except BaseException as exc:  # reported below, after the window closed
            result["error"] = exc

    thread = threading.Thread(target=work, name="evstream-pipeline", daemon=True)
    failed: list[str] = []
    started: list[float] = []  # when the pipeline started (the window's start-up not counted)
    if screenshot is not None:
        done_at: list[float] = []

        def maybe_shoot(w):
            now = time.perf_counter()
            if w.stream_done and not done_at:
                done_at.append(now)  # one more frame after the end, so the last state is drawn
                return
            if (started and now - started[0] >= after_s) or (done_at and now > done_at[0]):
                w.on_tick = None
                if not w.save_screenshot(screenshot):
                    failed.append(screenshot)
                w.close()

        win.on_tick = maybe_shoot

    def watch():
        if not thread.is_alive() and not win.stream_done:
            win.stream_done = True

    watcher = QtCore.QTimer(win)
    watcher.timeout.connect(watch)
    watcher.start(50)
    # The viewer's Python code and the pipeline's share the GIL; a short switch interval hands it
    # back to the pipeline thread sooner (the default 5 ms would add up to 5 ms to a window).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(float(os.environ.get("EVSTREAM_SWITCH", "0.0005")))
    previous = None
    if threading.current_thread() is threading.main_thread():

        def interrupt(*_):
            result["interrupted"] = True
            win.close()

        previous = signal.signal(signal.SIGINT, interrupt)
    try:
        win.show()
        started.append(time.perf_counter())
        thread.start()
        app.exec()
    finally:
        sys.setswitchinterval(switch)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        watcher.stop()
        pipeline.cancel()
        thread.join(timeout=30)
        win.stats.undrawn_events = tap.undrawn_total
        stats = win.stats
        win.deleteLater()
        app.processEvents()
    if "error" in result:
        raise result["error"]
    summary = result.get("summary")
    if result.get("interrupted") and summary is not None and summary.error is None:
        summary.error = "interrupted"  # Ctrl-C in the terminal, as without the viewer
    if failed:
        raise OSError(f"{failed[0]}: could not write the screenshot (is the folder there and writable?)")
    return summary, stats
