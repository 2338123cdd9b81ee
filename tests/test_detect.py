"""Format detection from content: recordings are recognised whatever their file name says."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA, random_events
from evstream.replay import EventFileError, UnknownFormatError, detect_format, read_events, write_events
from evstream.replay.formats import WRITERS

CONTENT_DETECTED = sorted(set(WRITERS) - {"bin"})  # .bin records carry no signature


@pytest.mark.parametrize("fmt", CONTENT_DETECTED)
@pytest.mark.parametrize("name", ["recording", "recording.bin", "recording.dat.tmp"])
def test_detected_from_content_not_name(tmp_path, fmt, name):
    ev = random_events(np.random.default_rng(2), 500, 64, 48, t0=10, max_dt=30)
    src = tmp_path / "src"
    src.mkdir()
    from evstream.replay.formats import WRITE_EXTENSIONS

    ext = ".raw" if fmt == "evt2" else next(e for e, f in WRITE_EXTENSIONS.items() if f == fmt)
    write_events(src / f"a{ext}", ev, 64, 48, format=fmt)
    path = tmp_path / name
    path.write_bytes((src / f"a{ext}").read_bytes())
    assert detect_format(path) == fmt
    assert np.array_equal(read_events(path), ev)


def test_bin_needs_its_extension(tmp_path):
    ev = random_events(np.random.default_rng(3), 50, 34, 34)
    write_events(tmp_path / "a.bs2", ev, 34, 34)
    assert detect_format(tmp_path / "a.bs2") == "bin"
    (tmp_path / "a").write_bytes((tmp_path / "a.bs2").read_bytes())
    with pytest.raises(UnknownFormatError):
        detect_format(tmp_path / "a")
    assert np.array_equal(read_events(tmp_path / "a", format="bin"), ev)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "file is empty"),
        (b"\x00\x01\x02\x03" * 100, "unrecognised event file format"),
        (b"% date 2020-01-01\n% camera foo\n", None),
    ],
)
def test_unknown_content(tmp_path, content, message):
    path = tmp_path / "mystery.raw"
    path.write_bytes(content)
    with pytest.raises(EventFileError, match=message or "names no event encoding"):
        detect_format(path)


def test_every_shared_recording_is_detected():
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data absent")
    expected = {
        "aedat4": "aedat4",
        "bin": "bin",
        "dat": "dat",
        "es": "es",
        "hdf5": "hdf5",
        "raw_evt2": "evt2",
        "raw_evt3": "evt3",
        "txt": "txt",
    }
    for folder, fmt in expected.items():
        for path in sorted((SHARED_DATA / folder).iterdir()):
            assert detect_format(path) == fmt, path
