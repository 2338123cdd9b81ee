"""The frame-to-event emulator against a slow per-pixel reference, and the video source."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evstream.kernels.emulator import EmulatorConfig, EventEmulator, log_intensity
from evstream.kernels.events import EVENT_DTYPE


def reference(frames, times, cfg: EmulatorConfig):
    """One pixel at a time, one crossing at a time: the definition in the module docstring."""
    h, w = frames[0].shape
    ref = log_intensity(frames[0]).astype(np.float64)
    prev = ref.copy()
    last = np.full((h, w), -(10**18), np.int64)
    out = []
    for grey, t0, t1 in zip(frames[1:], times[:-1], times[1:], strict=True):
        cur = log_intensity(grey).astype(np.float64)
        for y in range(h):
            for x in range(w):
                d = cur[y, x] - ref[y, x]
                if d >= cfg.c_on:
                    sign, step = 1, cfg.c_on
                elif d <= -cfg.c_off:
                    sign, step = -1, cfg.c_off
                else:
                    continue
                n = int(math.floor(abs(d) / step))
                for k in range(1, n + 1):
                    level = ref[y, x] + sign * step * k
                    slope = cur[y, x] - prev[y, x]
                    s = (level - prev[y, x]) / slope if slope != 0 else 1.0
                    t = min(max(math.ceil(t0 + min(max(s, 0.0), 1.0) * (t1 - t0)), t0 + 1), t1)
                    if t - last[y, x] >= cfg.refractory_us:
                        out.append((x, y, t, int(sign > 0)))
                        last[y, x] = t
                ref[y, x] += sign * step * n
        prev = cur
    out.sort(key=lambda e: (e[2], e[1], e[0]))
    return out


def _frames(rng, n, h=12, w=16):
    base = rng.integers(0, 256, (h, w)).astype(np.float64)
    frames = [base]
    for _ in range(n - 1):
        frames.append(np.clip(frames[-1] * rng.uniform(0.3, 3.0, (h, w)), 0, 255))
    return [f.astype(np.uint8) for f in frames]


@pytest.mark.parametrize("refractory", [0, 100, 20_000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emulator_matches_reference(seed, refractory):
    rng = np.random.default_rng(seed)
    frames = _frames(rng, 6)
    times = [0, 33_333, 66_666, 100_000, 133_333, 166_666]
    cfg = EmulatorConfig(0.25, 0.3, refractory)
    emu = EventEmulator(16, 12, cfg)
    got = [emu.frame(f, t) for f, t in zip(frames, times, strict=True)]
    ev = np.concatenate(got)
    assert np.all(np.diff(ev["t"]) >= 0)
    mine = sorted(
        zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist(), strict=True),
        key=lambda e: (e[2], e[1], e[0]),
    )
    assert mine == reference(frames, times, cfg)


def test_static_scene_makes_no_events_and_noise_is_counted():
    frame = np.full((10, 10), 100, np.uint8)
    emu = EventEmulator(10, 10)
    assert len(emu.frame(frame, 0)) == 0 and len(emu.frame(frame, 1000)) == 0
    noisy = EventEmulator(10, 10, EmulatorConfig(noise_hz=1.0, seed=3))
    noisy.frame(frame, 0)
    ev = noisy.frame(frame, 1_000_000)
    assert 60 < len(ev) < 140  # Poisson with mean 100 pixels x 1 Hz x 1 s
    assert ev.dtype == EVENT_DTYPE and np.all(np.diff(ev["t"]) >= 0)


@pytest.fixture
def moving_bar_video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "bar.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    assert out.isOpened()
    for i in range(20):
        frame = np.full((48, 64, 3), 40, np.uint8)
        frame[:, 3 * i : 3 * i + 8] = 220
        out.write(frame)
    out.release()
    return path


def test_video_source_turns_frames_into_events(moving_bar_video):
    from evstream.runtime.sources import open_source

    src = open_source(f"video:{moving_bar_video}", speed=None)
    assert (src.width, src.height) == (64, 48) and not src.live
    ev = np.concatenate([b.view(np.uint8) for b in src.batches()]).view(EVENT_DTYPE)
    assert len(ev) > 500 and np.all(np.diff(ev["t"]) >= 0)
    assert ev["x"].max() < 64 and ev["y"].max() < 48 and set(np.unique(ev["p"])) == {0, 1}
    assert src.stats()["frames"] == 20


def test_run_cli_on_a_video(moving_bar_video, tmp_path):
    import json

    from evstream.runtime.cli import main

    out = tmp_path / "s.json"
    assert (
        main(
            [
                "run",
                "--source",
                f"video:{moving_bar_video}",
                "--speed",
                "max",
                "--summary-json",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["events_processed"] > 500


def test_unopenable_camera_and_video_give_clear_errors(tmp_path, capsys):
    pytest.importorskip("cv2")
    from evstream.runtime.cli import main

    assert main(["run", "--source", "camera:57", "-q"]) == 1
    assert "cannot open or read this camera" in capsys.readouterr().err
    bad = tmp_path / "not_a_video.avi"
    bad.write_bytes(b"garbage" * 100)
    assert main(["run", "--source", f"video:{bad}", "-q"]) == 1
    assert "cannot open or read this video" in capsys.readouterr().err
