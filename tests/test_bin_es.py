"""N-MNIST .bin / .bs2 and Event Stream .es: C++ decoders against the slow reference decoders and
the real recordings; .bin round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_decoders as ref
from conftest import SHARED_DATA, random_events, shared_file
from evstream.kernels import _core
from evstream.replay import EventFileError, open_events, read_events, write_events


@pytest.mark.shared_data
def test_nmnist_bin_real_recording():
    path = shared_file("bin/tonic_sample_nmnist.bin")
    with open_events(path) as r:
        ev = r.read_all()
        assert (r.format, r.width, r.height) == ("bin", 34, 34)
    assert len(ev) == 4325
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (654, 311175)
    assert np.array_equal(ev, ref.atis_bin(path.read_bytes()))


@pytest.mark.shared_data
def test_nmnist_small_bs2_files_all_decode_exactly():
    folder = SHARED_DATA / "nmnist_small"
    if not folder.exists():
        pytest.skip("../shared/data/nmnist_small absent")
    files = sorted(folder.glob("*.bs2"))[:100]
    assert files
    for path in files:
        ev = read_events(path)
        assert np.array_equal(ev, ref.atis_bin(path.read_bytes())), path
        assert ev["x"].max() < 34 and ev["y"].max() < 34


def test_bin_overflow_markers_shift_later_timestamps():
    rec = bytes([1, 2, 0x80, 0, 10]) + bytes([0, 240, 0, 0, 0]) + bytes([3, 4, 0, 0, 20])
    dec = _core.AtisBinDecoder(0, 0)
    ev = dec.decode(np.frombuffer(rec, np.uint8))
    assert ev["t"].tolist() == [10, 20 + 8192]
    assert ev["p"].tolist() == [1, 0]
    assert dec.counters["other_words"] == 1


def test_bin_geometry_default_and_override(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(bytes([100, 50, 0, 0, 1]))
    with open_events(path) as r:
        assert (r.width, r.height) == (304, 240)
    with open_events(path, sensor_size=(128, 128)) as r:
        assert (r.width, r.height) == (128, 128)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1))
def test_bin_roundtrip(tmp_path_factory, n, seed):
    ev = random_events(np.random.default_rng(seed), n, 34, 34, max_dt=100)
    path = tmp_path_factory.mktemp("bin") / "a.bin"
    write_events(path, ev, 34, 34)
    assert np.array_equal(read_events(path), ev)


@pytest.mark.shared_data
def test_event_stream_real_recording():
    path = shared_file("es/faery_dvs.es")
    with open_events(path) as r:
        ev = r.read_all()
        assert (r.format, r.width, r.height) == ("es", 320, 240)
        assert not any(r.counters.values())
    assert len(ev) == 473225
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (0, 999000)
    assert int(np.count_nonzero(ev["p"])) == 270001
    assert np.array_equal(ev, ref.es_dvs(path.read_bytes()[20:]))


def test_event_stream_split_anywhere(rng):
    body = bytearray()
    for _ in range(300):
        if rng.random() < 0.1:
            body.append(0xFF)
        if rng.random() < 0.05:
            body.append(0xFE)
        body.append(int(rng.integers(0, 127)) << 1 | int(rng.integers(0, 2)))
        body += int(rng.integers(0, 320)).to_bytes(2, "little") + int(rng.integers(0, 240)).to_bytes(
            2, "little"
        )
    data = np.frombuffer(bytes(body), np.uint8)
    expected = ref.es_dvs(bytes(body))
    dec = _core.EsDvsDecoder(320, 240)
    parts = [dec.decode(p) for p in np.array_split(data, 37)]
    assert np.array_equal(np.concatenate(parts), expected)
    assert dec.pending_bytes == 0


def test_event_stream_bad_headers(tmp_path):
    path = tmp_path / "a.es"
    path.write_bytes(b"Event Stream\x01\x00\x00\x01\x40\x01\xf0\x00")
    with pytest.raises(EventFileError, match="version 1.0.0 is not supported"):
        open_events(path)
    path.write_bytes(b"Event Stream\x02\x00\x00\x00")
    with pytest.raises(EventFileError, match="holds no DVS events"):
        open_events(path)
    path.write_bytes(b"Event Stream\x02\x00\x00\x01\x40")
    with pytest.raises(EventFileError, match="ends inside the header"):
        open_events(path)


def test_event_stream_truncated_event_is_counted(tmp_path):
    path = tmp_path / "a.es"
    path.write_bytes(b"Event Stream\x02\x00\x00\x01\x40\x01\xf0\x00" + bytes([4, 1, 0, 2, 0]) + bytes([4, 1]))
    with open_events(path) as r:
        assert len(r.read_all()) == 1
        assert r.counters["truncated_bytes"] == 2
