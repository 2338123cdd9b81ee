"""The evstream command line: info, convert, errors and --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import random_events, shared_file
from evstream.replay import read_events, write_events
from evstream.runtime.cli import main


@pytest.fixture
def sample(tmp_path, rng):
    ev = random_events(rng, 5000, 640, 480, t0=1000, max_dt=20)
    path = tmp_path / "sample.raw"
    write_events(path, ev, 640, 480)
    return path, ev


def test_info_json(sample, capsys):
    path, ev = sample
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "evt3"
    assert (info["width"], info["height"], info["events"]) == (640, 480, 5000)
    assert (info["t_first_us"], info["t_last_us"]) == (int(ev["t"][0]), int(ev["t"][-1]))
    assert info["on_events"] == int(ev["p"].sum())
    assert info["duration_us"] == int(ev["t"][-1] - ev["t"][0])
    assert info["mean_rate_hz"] == pytest.approx(5000 / (info["duration_us"] * 1e-6))


def test_info_text(sample, capsys):
    path, _ = sample
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "evt3 (Prophesee RAW, EVT 3.0)" in out and "640 x 480 px" in out and "5,000" in out


@pytest.mark.shared_data
def test_info_on_real_evt3_json():
    path = shared_file("raw_evt3/expelliarmus_evt3_sample.raw")
    out = subprocess.run(
        [sys.executable, "-m", "evstream.runtime.cli", "info", "--json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)
    assert (info["events"], info["t_first_us"], info["t_last_us"]) == (219596, 11718656, 11727457)


@pytest.mark.parametrize("ext", ["dat", "raw", "bin"])
def test_convert_roundtrip(tmp_path, rng, ext, capsys):
    ev = random_events(rng, 3000, 34, 34, max_dt=20)
    src = tmp_path / "in.dat"
    write_events(src, ev, 34, 34)
    dst = tmp_path / f"out.{ext}"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "wrote 3,000 events" in capsys.readouterr().out
    assert np.array_equal(read_events(dst), ev)


def test_convert_refuses_to_overwrite(sample, tmp_path, capsys):
    path, _ = sample
    dst = tmp_path / "x.dat"
    dst.write_bytes(b"keep")
    assert main(["convert", str(path), str(dst)]) == 2
    assert "exists" in capsys.readouterr().err
    assert dst.read_bytes() == b"keep"
    assert main(["convert", str(path), str(dst), "--force", "-q"]) == 0


def test_convert_explicit_format_and_unknown_extension(sample, tmp_path, capsys):
    path, ev = sample
    assert main(["convert", str(path), str(tmp_path / "o.raw"), "--to", "evt2", "-q"]) == 0
    assert np.array_equal(read_events(tmp_path / "o.raw"), ev)
    assert main(["convert", str(path), str(tmp_path / "o.xyz")]) == 1
    assert "cannot tell the output format" in capsys.readouterr().err
    assert not (tmp_path / "o.xyz").exists()


def test_convert_failure_removes_partial_output(sample, tmp_path, capsys):
    path, _ = sample  # 640x480 does not fit the .bin format's 8-bit coordinates
    assert main(["convert", str(path), str(tmp_path / "o.bin")]) == 1
    assert not (tmp_path / "o.bin").exists()


def test_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "garbage.xyz"
    bad.write_bytes(bytes(range(256)))
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "unrecognised" in err
    assert main(["info", str(tmp_path / "missing.raw")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "x.raw", "--sensor", "12"])
    assert exc.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


@pytest.mark.parametrize("command", [[], ["info"], ["convert"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: evstream" in out
    if command == ["info"]:
        assert "--json" in out and "--sensor" in out
    if command == ["convert"]:
        assert "--to" in out and ".aedat4=aedat4" in out


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("evstream")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("evstream ")
