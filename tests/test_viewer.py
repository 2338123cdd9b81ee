"""The viewer (#7): its display kernels against numpy oracles, the pipeline -> viewer hand-over,
pausable replays, the Qt window driven with pytest-qt offscreen (predictions shown, screenshots
that change as events arrive, keys), and the command line (screenshots, headless machines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import random_events, shared_file
from evstream.kernels import display
from evstream.kernels.events import make_events
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.sources import FileSource, Pacer, Source
from evstream.runtime.viewer_state import (
    BACKGROUND,
    OFF_COLOUR,
    ON_COLOUR,
    DecayingFrame,
    ViewerTap,
    display_scale,
    histogram_image,
)
from evstream.runtime.windows import TimeWindowSpec

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "nmnist_digit7.bs2"  # N-MNIST digit 7 (tests/data/README.md)
BG = tuple(int(v) for v in BACKGROUND)


# -- display kernels ---------------------------------------------------------------------------


def _reference_frame(events, width, height, now, tau):
    last = np.full(2 * height * width, display.NEVER, np.int64)
    display.latest_times_reference(last, events, width, height)
    img = display.decay_rgb_reference(last, now, tau, BACKGROUND, ON_COLOUR, OFF_COLOUR, height, width)
    return last, img


@pytest.mark.parametrize("width,height", [(34, 34), (346, 260), (7, 3)])
def test_decaying_frame_equals_reference(rng, width, height):
    ev = random_events(rng, 20_000, width + 3, height + 2, max_dt=5)  # some outside the sensor
    frame = DecayingFrame(width, height, tau_us=2_000)
    for part in np.array_split(ev, 7):  # in chunks, as the viewer receives them
        frame.add(part)
    inside = (ev["x"] < width) & (ev["y"] < height)
    assert frame.now_us == int(ev["t"][inside].max())
    for now in (frame.now_us, frame.now_us + 1_500, frame.now_us + 10**6):
        last, ref = _reference_frame(ev, width, height, now, 2_000.0)
        np.testing.assert_array_equal(frame.last_t, last)
        frame.now_us = now
        np.testing.assert_array_equal(frame.rgb(), ref)


def test_decaying_frame_colours():
    frame = DecayingFrame(4, 2, tau_us=1_000)
    assert (frame.rgb() == BG).all()  # nothing yet: background
    frame.add(make_events([0, 1, 2, 2], [0, 0, 1, 1], [5_000, 5_000, 4_000, 5_000], [1, 0, 1, 0]))
    img = frame.rgb()
    assert tuple(img[0, 0]) == tuple(int(v) for v in ON_COLOUR)  # fresh ON event
    assert tuple(img[0, 1]) == tuple(int(v) for v in OFF_COLOUR)  # fresh OFF event
    assert tuple(img[1, 0]) == BG  # never hit
    # (1, 2): OFF now, ON 1 ms = one tau ago: OFF dominates, blended towards ON by e^-1
    w_on = np.exp(-1.0)
    mix = (w_on * ON_COLOUR + OFF_COLOUR) / (1 + w_on)
    np.testing.assert_allclose(img[1, 2], np.floor(mix + 0.5), atol=0)
    frame.now_us = 6_000  # one tau later the fresh pixels fade by e^-1 towards the background
    faded = np.floor(BACKGROUND + np.exp(-1.0) * (ON_COLOUR - BACKGROUND) + 0.5)
    np.testing.assert_array_equal(frame.rgb()[0, 0], faded)


def test_decaying_frame_starts_afresh_when_the_clock_restarts():
    frame = DecayingFrame(4, 4, tau_us=1_000)
    frame.add(make_events([0], [0], [50_000_000], [1]))
    frame.add(make_events([1], [1], [10], [1]))  # a restarted publisher: time begins again
    img = frame.rgb()
    assert frame.now_us == 10 and tuple(img[1, 1]) == (255, 255, 255) and tuple(img[0, 0]) == BG
    frame.add(make_events([2], [2], [5], [0]))  # slightly out of order: no restart
    assert frame.now_us == 10 and tuple(frame.rgb()[1, 1]) == (255, 255, 255)


def test_decaying_frame_on_a_real_recording():
    from evstream.replay import read_events

    ev = read_events(shared_file("raw_evt2/expelliarmus_evt2_sample.raw"))  # 640x480, 539k events
    frame = DecayingFrame(640, 480)
    frame.add(ev)
    _, ref = _reference_frame(ev, 640, 480, frame.now_us, frame.tau_us)
    np.testing.assert_array_equal(frame.rgb(), ref)


def test_histogram_image_layout():
    counts = np.zeros((2, 4, 6), np.int32)
    counts[1, 0, 0] = 5  # ON
    counts[0, 3, 5] = 2  # OFF
    img, vmax = histogram_image(counts)
    assert img.shape == (4, 13) and vmax == 5
    assert img[0, 0] == 5 and img[3, 12] == 2 and np.isnan(img[:, 6]).all()
    rows, cols = np.array([0, 3]), np.array([0, 5, 5])  # nearest-neighbour resize indices
    small, _ = histogram_image(counts, rows, cols)
    assert small.shape == (2, 7) and small[0, 0] == 5 and small[1, 6] == 2
    # full brightness at the 99th percentile of the non-zero counts: one hot pixel does not darken the rest
    hot = np.concatenate([np.full(999, 3.0), [1000.0], [np.nan, 0, 0]])
    assert display_scale(hot) == pytest.approx(3.0) and display_scale(np.zeros(4)) == 1.0


# -- pipeline -> viewer hand-over --------------------------------------------------------------


class _Step:
    def __init__(self, enter, t_end=0):
        self.enter, self.t_end_us = enter, t_end


class _Prediction:
    def __init__(self, label, flops=10):
        self.flops, self.label = flops, label

    def to_dict(self):
        return {"top": [{"class": self.label, "probability": 1.0}], "flops": self.flops, "changed_sites": 1}


def test_tap_bounds_what_waits_for_the_viewer(rng):
    tap = ViewerTap(max_events=1_000)
    ev = random_events(rng, 3_000, 10, 10)
    for part in np.array_split(ev, 30):
        tap.window(_Step(part), None, 1.0)
    snap = tap.take()
    drawn = sum(len(e) for e in snap.events)
    assert drawn <= 1_000 and drawn + snap.undrawn_events == 3_000  # skipped for display, counted
    assert snap.entered == 3_000 and tap.events_total == 3_000 and snap.windows == 30
    np.testing.assert_array_equal(np.concatenate(snap.events), ev[-drawn:])  # the newest are kept
    assert tap.take().windows == 0  # taken once


def test_tap_copies_the_representation_only_on_request_and_keeps_the_last_real_prediction():
    class Hist:
        counts = np.ones((2, 3, 3), np.int32)

    tap = ViewerTap()
    tap.attach(Hist())
    ev = make_events([1], [1], [5], [1])
    tap.window(_Step(ev), _Prediction("a"), None)
    assert tap.take().counts is None
    tap.request_counts()
    tap.window(_Step(ev), _Prediction("b"), None)
    tap.window(_Step(ev[:0]), _Prediction("drained"), None)  # a window that only lost events
    snap = tap.take()
    assert snap.counts is not None and snap.counts is not Hist.counts and snap.flops == 20
    assert snap.prediction["top"][0]["class"] == "b"


def test_tap_sees_every_event_of_a_real_run(tmp_path, rng):
    from evstream.replay import write_events

    ev = random_events(rng, 50_000, 64, 48)
    path = tmp_path / "r.npz"
    write_events(path, ev, 64, 48)
    tap = ViewerTap()
    spec = TimeWindowSpec(2_000)  # disjoint windows: every event enters exactly once
    summary = Pipeline(FileSource(path, speed=None), RunConfig(window=spec), tap=tap).run()
    snap = tap.take()
    assert snap.entered == summary.events_processed == len(ev) and snap.windows == summary.windows
    np.testing.assert_array_equal(np.concatenate(snap.events), ev)


# -- pausable replays ----------------------------------------------------------------------------


def test_pacer_pause_resume_and_speed():
    stop = threading.Event()
    pacer = Pacer(1.0, stop)
    assert pacer.wait(0)  # the first call anchors the clock
    pacer.pause()
    done = threading.Event()
    threading.Thread(target=lambda: done.set() if pacer.wait(1_000) else None, daemon=True).start()
    assert not done.wait(0.5)  # due after 1 ms, but paused
    pacer.resume()
    assert done.wait(5)
    pacer.set_speed(None)  # as fast as possible: far future times are due at once
    assert pacer.wait(10**12)
    pacer.set_speed(1e-3)  # 1000x slower: a stop must still end the wait
    threading.Timer(0.2, lambda: (stop.set(), pacer.wake())).start()
    assert pacer.wait(10**12 + 10**6) is False
    with pytest.raises(ValueError, match="speed"):
        pacer.set_speed(0)


def test_paused_file_source_holds_its_events(tmp_path, rng):
    from evstream.replay import write_events

    ev = random_events(rng, 5_000, 20, 20, max_dt=20)
    path = tmp_path / "r.npz"
    write_events(path, ev, 20, 20)
    src = FileSource(path, speed=1.0)
    src.pacer.pause()
    got = []
    th = threading.Thread(target=lambda: got.extend(src.batches()), daemon=True)
    th.start()
    time.sleep(0.5)
    assert sum(len(b) for b in got) <= 1_000  # at most the first slice got through
    src.pacer.set_speed(50.0)
    src.pacer.resume()
    th.join(20)
    assert not th.is_alive()
    np.testing.assert_array_equal(np.concatenate(got), ev)


# -- the window (pytest-qt, offscreen) -------------------------------------------------------------


def _qt():
    pytest.importorskip("pyqtgraph")
    pytest.importorskip("pytestqt")
    from evstream.runtime.viewer import build_window

    return build_window


def _classifier(source):
    from evstream.models.checkpoint import load_checkpoint
    from evstream.models.default import DEFAULT_CHECKPOINTS
    from evstream.runtime.classifier import StreamClassifier

    return StreamClassifier(load_checkpoint(DEFAULT_CHECKPOINTS["nmnist"]), (source.width, source.height))


def _start(pipeline):
    result = {}
    th = threading.Thread(target=lambda: result.update(summary=pipeline.run()), daemon=True)
    th.start()
    return th, result


def _image(widget):
    from pyqtgraph import functions as fn

    qimage = widget.grab().toImage().convertToFormat(fn.QtGui.QImage.Format.Format_RGB32)
    return fn.ndarray_from_qimage(qimage)[..., :3].copy()  # a copy: the view dies with qimage


def test_window_shows_events_and_the_prediction(qtbot):
    build_window = _qt()
    source = FileSource(SAMPLE, speed=1.0)
    classifier = _classifier(source)
    spec = TimeWindowSpec(310_000, 10_000, trailing=True)  # the bundled model's streaming window
    pipeline = Pipeline(source, RunConfig(window=spec), classifier=classifier, tap=ViewerTap())
    win = build_window(pipeline, pipeline.tap)
    qtbot.addWidget(win)
    win.show()
    assert SAMPLE.name in win.windowTitle() and "34x34" in win.windowTitle()
    source.pacer.pause()
    th, result = _start(pipeline)
    qtbot.wait(300)
    before = _image(win)
    before_events = win.events_image.image.copy()
    source.pacer.resume()
    th.join(30)
    qtbot.waitUntil(lambda: win.events_drawn == result["summary"].events_processed, timeout=10_000)
    qtbot.wait(200)  # a few frames more
    after = _image(win)
    # the prediction is shown, as text and as bars with the class names
    assert win.prediction_label.text().startswith("7 ")
    ticks = win.bars_plot.getAxis("left")._tickLevels[0]
    assert ticks[0][1] == "7"
    assert result["summary"].last_prediction["top"][0]["class"] == "7"
    # the screenshot is not blank and changed as the events arrived
    assert len(np.unique(after.reshape(-1, after.shape[-1]), axis=0)) > 50
    assert (before != after).any(axis=-1).mean() > 0.02
    assert (before_events == BG).all() and (win.events_image.image != BG).any(axis=-1).sum() > 100
    # the label's pixels carry the text (not an empty label)
    label = _image(win.prediction_label)
    assert len(np.unique(label.reshape(-1, label.shape[-1]), axis=0)) > 3
    assert win.rep_title.text.startswith("model input 34x34")
    win.close()
    assert win.stats.frames > 5 and win.stats.fps_median is not None


def test_keys_control_the_replay_and_the_help(qtbot, tmp_path, rng):
    build_window = _qt()
    from pyqtgraph.Qt import QtCore

    from evstream.replay import write_events

    Key = QtCore.Qt.Key
    path = tmp_path / "r.npz"
    write_events(path, random_events(rng, 20_000, 40, 30, max_dt=200), 40, 30)
    source = FileSource(path, speed=1.0)
    pipeline = Pipeline(source, RunConfig(), tap=ViewerTap())
    win = build_window(pipeline, pipeline.tap)
    qtbot.addWidget(win)
    win.show()
    th, result = _start(pipeline)
    qtbot.keyClick(win, Key.Key_Space)
    assert source.pacer.paused
    qtbot.waitUntil(lambda: "PAUSED" in win.status.text(), timeout=5_000)
    qtbot.keyClick(win, Key.Key_Space)
    assert not source.pacer.paused
    qtbot.keyClick(win, Key.Key_Plus)
    qtbot.keyClick(win, Key.Key_BracketRight)
    assert source.pacer.speed == 4.0
    qtbot.keyClick(win, Key.Key_Minus)
    assert source.pacer.speed == 2.0
    qtbot.keyClick(win, Key.Key_1)
    assert source.pacer.speed == 1.0
    assert not win.help.isVisible()
    qtbot.keyClick(win, Key.Key_H)
    assert win.help.isVisible() and "pause / resume" in win.help.text() and "Space" in win.help.text()
    qtbot.keyClick(win, Key.Key_H)
    assert not win.help.isVisible()
    assert "no model" in win.prediction_label.text()
    qtbot.keyClick(win, Key.Key_Q)  # quits: the window closes and the run ends early
    th.join(20)
    assert not win.isVisible() and not th.is_alive()
    s = result["summary"]
    assert s.cancelled and s.events_processed < 20_000
    assert s.to_dict()["events_unprocessed"] + s.events_processed + s.events_dropped == s.events_in


class _LiveSource(Source):
    live = True
    description = "live test source"
    width, height = 16, 16

    def batches(self):
        t = 0
        while not self._stop.wait(0.01):
            t += 10_000
            yield make_events([1, 2], [3, 4], [t, t], [1, 0])


def test_live_sources_cannot_be_paused(qtbot):
    build_window = _qt()
    from pyqtgraph.Qt import QtCore

    pipeline = Pipeline(_LiveSource(), RunConfig(), tap=ViewerTap())
    win = build_window(pipeline, pipeline.tap)
    qtbot.addWidget(win)
    win.show()
    th, _ = _start(pipeline)
    qtbot.keyClick(win, QtCore.Qt.Key.Key_Space)
    assert "cannot be paused" in win.statusBar().currentMessage()
    qtbot.waitUntil(lambda: "live" in win.status.text() and win.events_drawn > 0, timeout=5_000)
    win.close()
    th.join(10)
    assert not th.is_alive()


def test_qt_binding_keeps_reference_counts():
    """PySide6 6.12.0 decremented None on every void call under Python < 3.12 and crashed the
    viewer after a few seconds; the pinned binding must not."""
    pytest.importorskip("pyqtgraph")
    from evstream.runtime.viewer import import_qt

    _, _, _, QtWidgets = import_qt()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    label = QtWidgets.QLabel("x")
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2_000):
        label.setText("abc")
        label.setStyleSheet("")
        label.isVisible()
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert abs(after[0] - before[0]) < 50 and abs(after[1] - before[1]) < 50, (before, after)
    label.deleteLater()
    app.processEvents()


# -- command line ---------------------------------------------------------------------------------


def _cli(args, env=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "evstream.runtime.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _headless_env():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return env


def test_view_screenshot_from_the_command_line(tmp_path):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("pyqtgraph")
    png, summary = tmp_path / "shot.png", tmp_path / "s.json"
    # no display at all: --screenshot renders offscreen by itself
    run = _cli(
        ["view", str(SAMPLE), "--screenshot", str(png), "--summary-json", str(summary)], _headless_env()
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "prediction: 7" in run.stdout and "screenshot" in run.stdout
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 800
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    s = json.loads(summary.read_text())
    assert s["viewer"]["frames"] > 0 and s["viewer"]["screenshot"] == str(png)
    assert s["prediction"]["top"][0]["class"] == "7" and s["events_dropped"] == 0


def test_viewer_without_a_display_says_so():
    pytest.importorskip("pyqtgraph")
    run = _cli(["run", "--source", str(SAMPLE), "--viewer"], _headless_env(), timeout=60)
    assert run.returncode == 2
    assert "no display" in run.stderr and "--screenshot" in run.stderr and "without --viewer" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 display names are a Linux matter")
def test_viewer_with_an_unreachable_display_says_so():
    pytest.importorskip("pyqtgraph")
    env = {**_headless_env(), "DISPLAY": ":97"}  # no X server there
    run = _cli(["view", str(SAMPLE)], env, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "cannot open a window" in run.stderr and "--screenshot" in run.stderr


def test_screenshot_arguments_are_checked(tmp_path, capsys):
    from evstream.runtime.cli import main

    assert main(["view", str(SAMPLE), "--screenshot", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["view", str(SAMPLE), "--screenshot", str(tmp_path / "x.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    assert main(["view", str(SAMPLE), "--screenshot", str(tmp_path / "x.png"), "--after", "-1"]) == 2
    assert "--after" in capsys.readouterr().err


def test_ctrl_c_closes_the_viewer_with_a_summary(tmp_path):
    pytest.importorskip("pyqtgraph")
    out, lines = tmp_path / "s.json", tmp_path / "p.jsonl"
    env = {**_headless_env(), "QT_QPA_PLATFORM": "offscreen"}  # a window, offscreen
    cmd = [sys.executable, "-m", "evstream.runtime.cli", "view", str(SAMPLE), "--loop"]
    cmd += ["--summary-json", str(out), "--predictions", str(lines)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if lines.exists() and lines.stat().st_size > 0:  # windows are flowing: the viewer is up
            break
        time.sleep(0.2)
    for _ in range(6):  # (again if one came before the handler; a busy machine may take seconds to stop,
        proc.send_signal(signal.SIGINT)  # and a second Ctrl-C while stopping kills the process)
        try:
            proc.wait(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.kill()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["error"] == "interrupted" and s["events_processed"] > 0 and s["viewer"]["frames"] > 0
    assert "windows" in stdout
