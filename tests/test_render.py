"""evstream render: per-window .npy files equal the representation of the right events, PNG
previews, render.json, argument errors and --help."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import random_events, shared_file
from evstream.kernels.representations import compute
from evstream.kernels.representations.geometry import rescale_events
from evstream.replay import read_events, write_events
from evstream.runtime.cli import build_parser, main
from evstream.runtime.render import (
    OutputDirError,
    RenderArgumentError,
    RenderConfig,
    WindowLength,
    parse_size_hw,
    parse_window_length,
    preview_image,
    render,
    resolve_kernel,
    window_spec,
    write_png,
)
from evstream.runtime.windows import CountWindowSpec, TimeWindowSpec

W, H = 64, 48


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """3000 events on a 64x48 sensor over about 30 ms, as an EVT 3.0 file."""
    ev = random_events(np.random.default_rng(7), 3000, W, H, t0=5000, max_dt=20)
    path = tmp_path_factory.mktemp("rec") / "rec.raw"
    write_events(path, ev, W, H)
    return path, ev


def _load_all(out: Path) -> tuple[dict, list[np.ndarray]]:
    manifest = json.loads((out / "render.json").read_text())
    arrays = [np.load(out / w["npy"]) for w in manifest["per_window"]]
    return manifest, arrays


def _time_slices(ev, duration, stride):
    """Events of each time window [t0 + k*stride, +duration) for every window starting by t_last."""
    t = ev["t"]
    t0, out = int(t[0]), []
    k = 0
    while t0 + k * stride <= int(t[-1]):
        start = t0 + k * stride
        out.append((start, start + duration, ev[(t >= start) & (t < start + duration)]))
        k += 1
    return out


# --------------------------------------------------------------------------------------------
# Outputs equal an independent recomputation


def test_whole_recording_is_one_window(recording, tmp_path, capsys):
    path, ev = recording
    out = tmp_path / "out"
    assert main(["render", str(path), "-r", "event_histogram", "--out", str(out)]) == 0
    assert "wrote 1 window of event_histogram (2 x 48 x 64, float32)" in capsys.readouterr().out
    manifest, arrays = _load_all(out)
    assert sorted(p.name for p in out.iterdir()) == ["render.json", "window_000000.npy"]
    assert arrays[0].dtype == np.float32 and arrays[0].shape == (2, H, W)
    assert np.array_equal(arrays[0], compute("event_histogram", ev, W, H))
    assert manifest["windows"] == 1 and manifest["window"] == {"kind": "all"}
    assert manifest["per_window"][0] == {
        "index": 0,
        "npy": "window_000000.npy",
        "png": None,
        "t_start_us": int(ev["t"][0]),
        "t_end_us": int(ev["t"][-1]) + 1,
        "events": len(ev),
    }
    assert manifest["sensor"] == {"width": W, "height": H} and manifest["size"] == {"height": H, "width": W}
    assert manifest["format"] == "evt3" and manifest["rescaled"] is False and manifest["channels"] == 2


@pytest.mark.parametrize("size, stride", [(500, None), (700, 300), (400, 900)])
def test_count_windows(recording, tmp_path, size, stride):
    path, ev = recording
    out = tmp_path / "out"
    spec = CountWindowSpec(size, stride)
    cfg = RenderConfig(str(path), "event_image", str(out), window=spec, chunk_events=257)
    manifest = render(cfg)
    step = stride or size
    starts = list(range(0, len(ev) - size + 1, step))  # an incomplete last window is not rendered
    _, arrays = _load_all(out)
    assert manifest["windows"] == len(starts) == len(arrays)
    for k, (a, w) in enumerate(zip(arrays, manifest["per_window"], strict=True)):
        part = ev[starts[k] : starts[k] + size]
        assert np.array_equal(a, compute("event_image", part, W, H))
        assert (w["index"], w["events"], w["t_start_us"], w["t_end_us"]) == (
            k,
            size,
            int(part["t"][0]),
            int(part["t"][-1]) + 1,
        )
    assert manifest["window"] == {"kind": "events", "size": size, "stride": step}


@pytest.mark.parametrize(
    "window, stride, duration, step",
    [("5ms", None, 5000, 5000), ("4000us", "1.5ms", 4000, 1500), ("0.002s", "0.007s", 2000, 7000)],
)
def test_time_windows(recording, tmp_path, window, stride, duration, step):
    path, ev = recording
    out = tmp_path / "out"
    args = ["render", str(path), "-r", "timestamp_image", "--window", window, "--out", str(out), "-q"]
    if stride:
        args += ["--stride", stride]
    assert main(args) == 0
    manifest, arrays = _load_all(out)
    want = _time_slices(ev, duration, step)
    assert manifest["windows"] == len(want) == len(arrays)
    for a, w, (start, end, part) in zip(arrays, manifest["per_window"], want, strict=True):
        assert (w["t_start_us"], w["t_end_us"], w["events"]) == (start, end, len(part))
        assert np.array_equal(a, compute("timestamp_image", part, W, H))
    assert manifest["window"] == {"kind": "time", "duration_us": duration, "stride_us": step}


def test_size_rescales_events_nimagenet_style(recording, tmp_path, capsys):
    path, ev = recording
    out = tmp_path / "out"
    # HxW: 24 rows of 32 pixels.
    assert (
        main(
            [
                "render",
                str(path),
                "-r",
                "time_surface",
                "--size",
                "24x32",
                "--window",
                "1000ev",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "rescaled from 64x48" in capsys.readouterr().out
    manifest, arrays = _load_all(out)
    assert manifest["size"] == {"height": 24, "width": 32} and manifest["rescaled"] is True
    assert len(arrays) == 3
    for k, a in enumerate(arrays):
        part = rescale_events(ev[k * 1000 : (k + 1) * 1000], W, H, 32, 24)
        assert a.shape == (2, 24, 32)
        assert np.array_equal(a, compute("time_surface", part, 32, 24))


def test_reference_backend_and_params(recording, tmp_path):
    path, ev = recording
    out = tmp_path / "out"
    args = ["render", str(path), "-r", "voxel_grid", "--backend", "reference", "--window", "1500ev"]
    args += ["--param", "num_bins=3", "--param", "measurement=polarity", "--out", str(out), "-q"]
    assert main(args) == 0
    manifest, arrays = _load_all(out)
    assert (
        manifest["params"] == {"num_bins": 3, "measurement": "polarity"}
        and manifest["backend"] == "reference"
    )
    for k, a in enumerate(arrays):
        want = compute(
            "voxel_grid",
            ev[k * 1500 : (k + 1) * 1500],
            W,
            H,
            backend="reference",
            num_bins=3,
            measurement="polarity",
        )
        assert a.shape == (6, H, W) and np.array_equal(a, want)


def test_fewer_events_than_a_window_renders_nothing(recording, tmp_path):
    path, _ = recording
    manifest = render(
        RenderConfig(str(path), "event_histogram", str(tmp_path / "o"), window=CountWindowSpec(10**6))
    )
    assert manifest["windows"] == 0 and manifest["channels"] is None
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["render.json"]


def test_progress_is_reported(recording, tmp_path):
    path, ev = recording
    calls = []
    render(
        RenderConfig(
            str(path),
            "event_histogram",
            str(tmp_path / "o"),
            window=TimeWindowSpec(10_000),
            chunk_events=1000,
        ),
        progress=lambda b, n: calls.append((b, n)),
    )
    assert [n for _, n in calls] == [1000, 2000, 3000] and calls[-1][0] == path.stat().st_size


@pytest.mark.shared_data
def test_real_nmnist_recording(tmp_path):
    path = shared_file("bin/tonic_sample_nmnist.bin")
    ev = read_events(path)
    out = tmp_path / "nmnist"
    assert (
        main(
            [
                "render",
                str(path),
                "-r",
                "event_histogram",
                "--window",
                "50ms",
                "--png",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    manifest, arrays = _load_all(out)
    want = _time_slices(ev, 50_000, 50_000)
    assert manifest["sensor"] == {"width": 34, "height": 34} and manifest["format"] == "bin"
    assert manifest["windows"] == len(want) == 7
    assert sum(w["events"] for w in manifest["per_window"]) == len(ev) == 4325
    for a, (_, _, part) in zip(arrays, want, strict=True):
        assert np.array_equal(a, compute("event_histogram", part, 34, 34))
    assert _png_info((out / "window_000000.png").read_bytes())[:3] == (34, 34, 2)


# --------------------------------------------------------------------------------------------
# PNG previews


def _png_info(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """(width, height, colour type, pixels) of an 8-bit unfiltered PNG, checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, ctype, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, -1)
    assert np.all(rows[:, 0] == 0)  # filter "none" on every row
    pixels = rows[:, 1:].reshape(h, w, 3) if ctype == 2 else rows[:, 1:]
    return w, h, ctype, pixels


def test_png_previews(recording, tmp_path):
    path, ev = recording
    out = tmp_path / "out"
    assert (
        main(
            ["render", str(path), "-r", "event_image", "--window", "1000ev", "--png", "--out", str(out), "-q"]
        )
        == 0
    )
    manifest, arrays = _load_all(out)
    for w, a in zip(manifest["per_window"], arrays, strict=True):
        width, height, ctype, pixels = _png_info((out / w["png"]).read_bytes())
        assert (width, height, ctype) == (4 * W, H, 0)  # four grey tiles side by side
        assert np.array_equal(pixels, preview_image(a))
        for c in range(4):  # each channel normalised on its own: its maximum is white
            assert pixels[:, c * W : (c + 1) * W].max() == 255
    out2 = tmp_path / "hist"
    assert main(["render", str(path), "-r", "event_histogram", "--png", "--out", str(out2), "-q"]) == 0
    hist = np.load(out2 / "window_000000.npy")
    width, height, ctype, pixels = _png_info((out2 / "window_000000.png").read_bytes())
    assert (width, height, ctype) == (W, H, 2)
    peak = np.percentile(hist[0][hist[0] > 0], 99)  # robust to hot pixels
    assert np.array_equal(pixels[..., 0], np.round(np.minimum(hist[0] / peak, 1) * 255))  # ON: red
    peak = np.percentile(hist[1][hist[1] > 0], 99)
    assert np.array_equal(pixels[..., 2], np.round(np.minimum(hist[1] / peak, 1) * 255))  # OFF: blue
    assert not pixels[..., 1].any()


def test_png_readable_by_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    write_png(str(tmp_path / "g.png"), grey)
    write_png(str(tmp_path / "c.png"), rgb)
    assert np.array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), grey)
    assert np.array_equal(cv2.imread(str(tmp_path / "c.png"))[..., ::-1], rgb)  # OpenCV is BGR
    with pytest.raises(ValueError, match="uint8"):
        write_png(str(tmp_path / "x.png"), grey.astype(np.float32))


def test_preview_image_mapping():
    rep = np.zeros((2, 2, 3), np.float32)
    rep[0, 0, 0], rep[0, 1, 1], rep[1, 0, 2] = 2.0, 1.0, 4.0
    img = preview_image(rep)
    assert img.shape == (2, 3, 3)
    assert (
        img[0, 0].tolist() == [255, 0, 0]
        and img[1, 1].tolist() == [128, 0, 0]
        and img[0, 2].tolist() == [0, 0, 255]
    )
    assert preview_image(rep, on_off=(1, 0))[0, 2].tolist() == [255, 0, 0]  # voxel grids put OFF first
    signed = np.array([[[-2.0, 0.0, 2.0]]], np.float32)  # one signed channel: zero is mid-grey
    assert preview_image(signed).tolist() == [[0, 128, 255]]
    assert preview_image(np.zeros((3, 1, 1), np.float32)).shape == (1, 3)


# --------------------------------------------------------------------------------------------
# Arguments


def test_parse_window_lengths():
    assert parse_window_length("20000ev") == WindowLength("events", 20000)
    assert parse_window_length("50ms") == WindowLength("us", 50_000)
    assert parse_window_length("0.5ms") == WindowLength("us", 500)
    assert parse_window_length("2 s") == WindowLength("us", 2_000_000)
    assert parse_window_length("125us") == parse_window_length("125µs") == WindowLength("us", 125)
    for bad in ["10", "ms", "0ms", "1.5ev", "0.5us", "-3ms", "5 min", "1e3ev"]:
        with pytest.raises(RenderArgumentError):
            parse_window_length(bad)
    assert window_spec("all") is None and window_spec(None) is None
    assert window_spec("100ev", "10ev") == CountWindowSpec(100, 10)
    assert window_spec("10ms") == TimeWindowSpec(10_000)
    with pytest.raises(RenderArgumentError, match="needs a window") as exc:
        window_spec("all", "5ms")
    assert exc.value.argument == "stride"
    with pytest.raises(RenderArgumentError, match="events"):
        window_spec("100ev", "5ms")


def test_parse_size_is_height_first():
    assert parse_size_hw("191x255") == (191, 255)
    for bad in ["224", "0x5", "1x70000", "axb", "1x2x3"]:
        with pytest.raises(RenderArgumentError) as exc:
            parse_size_hw(bad)
        assert exc.value.argument == "size"


@pytest.mark.parametrize(
    "extra, flag, message",
    [
        (["-r", "nope"], "--representation", "invalid choice"),
        (["-r", "event_histogram", "--window", "10"], "--window", "20000ev or 50ms"),
        (["-r", "event_histogram", "--window", "10ms", "--stride", "x"], "--stride", "20000ev or 50ms"),
        (["-r", "event_histogram", "--stride", "5ms"], "--stride", "needs a window"),
        (["-r", "event_histogram", "--window", "10ms", "--stride", "5ev"], "--stride", "like the window"),
        (["-r", "event_histogram", "--size", "224"], "--size", "HEIGHTxWIDTH"),
        (["-r", "event_histogram", "--size", "0x224"], "--size", "between 1x1"),
        (["-r", "voxel_grid", "--param", "bins=3"], "--param", "its parameters are num_bins, measurement"),
        (["-r", "voxel_grid", "--param", "num_bins=0"], "--param", "num_bins must be a positive integer"),
        (["-r", "time_surface", "--param", "tau_us=-1"], "--param", "tau_us must be positive"),
        (["-r", "event_histogram", "--param", "nonsense"], "--param", "NAME=VALUE"),
        (["-r", "event_histogram", "--backend", "gpu"], "--backend", "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(recording, tmp_path, capsys, extra, flag, message):
    path, _ = recording
    out = tmp_path / "out"
    try:
        code = main(["render", str(path), "--out", str(out), *extra])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert flag in err and message in err
    assert not out.exists()  # nothing written


def test_missing_cpu_kernel_is_an_argument_error(monkeypatch, tmp_path):
    from evstream.kernels.representations import cpu

    monkeypatch.delitem(cpu.KERNELS, "event_histogram")
    with pytest.raises(RenderArgumentError, match="use the reference backend") as exc:
        resolve_kernel(RenderConfig("x", "event_histogram", str(tmp_path)))
    assert exc.value.argument == "backend"


def test_output_directory_rules(recording, tmp_path, capsys):
    path, _ = recording
    out = tmp_path / "out"
    base = ["render", str(path), "-r", "binary_event_image", "--out", str(out), "-q"]
    assert main([*base, "--window", "300ev"]) == 0
    assert len(list(out.glob("window_*.npy"))) == 10
    (out / "notes.txt").write_text("keep me")
    assert main([*base, "--window", "1000ev"]) == 2
    err = capsys.readouterr().err
    assert "argument --out" in err and "not empty" in err and "--force" in err
    assert main([*base, "--window", "1000ev", "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt",
        "render.json",
        "window_000000.npy",
        "window_000001.npy",
        "window_000002.npy",
    ]
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["render", str(path), "-r", "binary_event_image", "--out", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(OutputDirError):
        render(RenderConfig(str(path), "event_histogram", str(out)))


def test_unreadable_input_exits_1(tmp_path, capsys):
    assert (
        main(["render", str(tmp_path / "missing.raw"), "-r", "event_histogram", "--out", str(tmp_path / "o")])
        == 1
    )
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "garbage.xyz"
    bad.write_bytes(bytes(range(256)))
    assert main(["render", str(bad), "-r", "event_histogram", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "unrecognised" in err


def test_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["render", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    render_parser = build_parser()._subparsers._group_actions[0].choices["render"]
    options = [s for action in render_parser._actions for s in action.option_strings]
    assert len(options) >= 14
    for option in options:
        assert option in out, option
    for text in ["HEIGHTxWIDTH", "224x224", "50ms", "ev", "render.json", "event_histogram", "examples:"]:
        assert text in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "render" in capsys.readouterr().out
