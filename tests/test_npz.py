"""N-ImageNet .npz reader and writer: round trips, both layouts, N-ImageNet loader semantics, damage."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_events
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.replay import EventFileError, detect_format, open_events, read_events, write_events
from evstream.replay import npz as npz_mod
from evstream.replay.npz import NPZ_EVENT_DTYPE, NpzReader, NpzWriter

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def make_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def nimagenet_load_event(path, compressed=True) -> np.ndarray:
    """The official N-ImageNet loader's arithmetic (t / TIME_SCALE, 0 polarity -> -1), written out."""
    event = np.load(path)
    if compressed:
        event = event["event_data"]
        event = np.vstack([event["x"], event["y"], event["t"], event["p"].astype(np.uint8)]).T
    else:
        event = np.vstack(
            [event["x_pos"], event["y_pos"], event["timestamp"], event["polarity"].astype(np.uint8)]
        ).T
    event = event.astype(float)
    event[:, 2] /= 1_000_000
    if event[:, 3].min() >= -0.5:
        event[:, 3][event[:, 3] <= 0.5] = -1
    return event


@st.composite
def event_arrays(draw, width=640, height=480, max_n=40):
    n = draw(st.integers(0, max_n))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(xs, ys, ts, ps)


# -- round trips --------------------------------------------------------------------------------


@PROPS
@given(ev=event_arrays(), compress=st.booleans(), split=st.integers(0, 40))
def test_round_trip_property(ev, compress, split):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "rec.npz")
        with NpzWriter(path, 640, 480, compress=compress) as w:
            w.write(ev[:split])
            w.write(ev[split:])
        reader = NpzReader(path)
        back = reader.read_all()
        assert back.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(back, ev)
        assert reader.counters.get("out_of_bounds", 0) == 0
        assert os.listdir(d) == ["rec.npz"]  # temporary spool file removed


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(tmp_path, n):
    ev = make_events([3] * n, [4] * n, [2**62] * n, [1] * n)
    path = tmp_path / "e.npz"
    write_events(path, ev, 640, 480)
    np.testing.assert_array_equal(read_events(path), ev)
    assert np.load(path)["event_data"].shape == (n,)


def test_multi_chunk_read(tmp_path, rng, monkeypatch):
    ev = random_events(rng, 5000, 640, 480, t0=10**9)
    path = tmp_path / "m.npz"
    write_events(path, ev, 640, 480)
    monkeypatch.setattr(npz_mod, "READ_BLOCK", 13 * 97)
    reader = NpzReader(path)
    parts = list(reader._raw_chunks())
    assert len(parts) > 10
    np.testing.assert_array_equal(np.concatenate(parts), ev)
    np.testing.assert_array_equal(np.concatenate(list(reader.chunks(777))), ev)


def test_written_file_matches_nimagenet_loader(tmp_path, rng):
    ev = random_events(rng, 1000, 640, 480, t0=123_456)
    path = tmp_path / "n.npz"
    write_events(path, ev, 640, 480)
    assert detect_format(path) == "npz"
    with np.load(path, allow_pickle=False) as z:
        assert z["event_data"].dtype == NPZ_EVENT_DTYPE
        assert z["event_data"].dtype.names == ("x", "y", "t", "p")
        assert z["sensor_size"].tolist() == [640, 480]
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("event_data.npy").compress_type == zipfile.ZIP_DEFLATED
    loaded = nimagenet_load_event(path)
    np.testing.assert_array_equal(loaded[:, 0], ev["x"])
    np.testing.assert_array_equal(loaded[:, 1], ev["y"])
    np.testing.assert_allclose(loaded[:, 2], ev["t"] / 1e6, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(loaded[:, 3], np.where(ev["p"] == 1, 1.0, -1.0))


def test_geometry_written_and_overridden(tmp_path, rng):
    ev = random_events(rng, 200, 1280, 720)
    path = tmp_path / "g.npz"
    write_events(path, ev, 1280, 720)
    r = NpzReader(path)
    assert (r.width, r.height) == (1280, 720)
    np.testing.assert_array_equal(r.read_all(), ev)
    small = NpzReader(path, sensor_size=(640, 480))
    kept = small.read_all()
    inside = (ev["x"] < 640) & (ev["y"] < 480)
    np.testing.assert_array_equal(kept, ev[inside])
    assert small.counters["out_of_bounds"] == int((~inside).sum())


# -- N-ImageNet layouts written by numpy itself -------------------------------------------------


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed])
@pytest.mark.parametrize(
    "dtypes",
    [
        [("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "?")],
        [("x", "<i4"), ("y", "<i4"), ("t", "<u4"), ("p", "u1")],
        [("p", "i1"), ("t", ">u8"), ("y", "<i2"), ("x", "<u2")],  # other field order, big-endian t
    ],
)
def test_event_data_layout_any_dtypes(tmp_path, rng, saver, dtypes):
    ev = random_events(rng, 300, 640, 480, t0=5_000_000)
    data = np.empty(len(ev), dtypes)
    for k in "xytp":
        data[k] = ev[k]
    path = tmp_path / "a.npz"
    saver(path, event_data=data)
    r = open_events(path)
    assert isinstance(r, NpzReader) and r.layout == "event_data"
    assert (r.width, r.height) == (640, 480)
    np.testing.assert_array_equal(r.read_all(), ev)


def test_float_timestamps_round_to_microseconds(tmp_path):
    data = np.zeros(3, [("x", "<u2"), ("y", "<u2"), ("t", "<f8"), ("p", "?")])
    data["t"] = [0.4, 1.5, 2_000_000.6]
    np.savez(tmp_path / "f.npz", event_data=data)
    assert read_events(tmp_path / "f.npz")["t"].tolist() == [0, 2, 2_000_001]


@pytest.mark.parametrize(
    "pol", [np.array([-1, 1, 1, -1], "i1"), np.array([0, 1, 1, 0], "u1"), np.array([0, 1, 1, 0], "?")]
)
def test_separate_layout_polarity_encodings(tmp_path, pol):
    path = tmp_path / "b.npz"
    np.savez_compressed(
        path,
        x_pos=np.array([0, 639, 5, 6], "<u2"),
        y_pos=np.array([479, 0, 7, 8], "<u2"),
        timestamp=np.array([10, 20, 30, 25], "<i8"),
        polarity=pol,
    )
    r = NpzReader(path)
    assert r.layout == "separate"
    ev = r.read_all()
    assert ev.tolist() == [(0, 479, 10, 0), (639, 0, 20, 1), (5, 7, 30, 1), (6, 8, 25, 0)]
    assert r.counters == {"t_backwards": 1}  # counted, not corrected (as N-ImageNet's loader)


def test_separate_layout_multi_chunk(tmp_path, rng, monkeypatch):
    ev = random_events(rng, 3000, 640, 480)
    path = tmp_path / "b.npz"
    np.savez(
        path,
        x_pos=ev["x"].astype("<i2"),
        y_pos=ev["y"].astype("<f4"),
        timestamp=ev["t"],
        polarity=np.where(ev["p"] == 1, 1, -1).astype("i1"),
    )
    monkeypatch.setattr(npz_mod, "READ_BLOCK", 100)
    np.testing.assert_array_equal(read_events(path), ev)


# -- bad input ----------------------------------------------------------------------------------


def test_garbage_and_empty_files(tmp_path):
    (tmp_path / "g.npz").write_bytes(os.urandom(4096))
    with pytest.raises(EventFileError):
        NpzReader(tmp_path / "g.npz")
    (tmp_path / "z.npz").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # empty zip: no members
    with pytest.raises(EventFileError, match="event_data"):
        NpzReader(tmp_path / "z.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    obj = np.empty(1, object)
    obj[0] = Boom()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, obj, allow_pickle=True)
    make_zip(tmp_path / "o.npz", {"event_data.npy": buf.getvalue()})
    with pytest.raises(EventFileError, match="object"):
        NpzReader(tmp_path / "o.npz").read_all()
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "members, match",
    [
        ({"event_data.npy": npy_bytes(np.zeros(3, [("x", "u2"), ("y", "u2"), ("t", "i8")]))}, "x, y, t, p"),
        (
            {"event_data.npy": npy_bytes(np.zeros(3, [("x", "u2"), ("y", "u2"), ("t", "S8"), ("p", "u1")]))},
            "dtype",
        ),
        ({"event_data.npy": npy_bytes(np.zeros((3, 4), "i8"))}, "1-D|x, y, t, p"),
        ({"event_data.npy": b"not an npy header at all"}, "header"),
        (
            {
                "x_pos.npy": npy_bytes(np.zeros(3, "u2")),
                "y_pos.npy": npy_bytes(np.zeros(3, "u2")),
                "timestamp.npy": npy_bytes(np.zeros(2, "i8")),
                "polarity.npy": npy_bytes(np.zeros(3, "u1")),
            },
            "lengths",
        ),
        (
            {
                "x_pos.npy": npy_bytes(np.zeros(3, "U2")),
                "y_pos.npy": npy_bytes(np.zeros(3, "u2")),
                "timestamp.npy": npy_bytes(np.zeros(3, "i8")),
                "polarity.npy": npy_bytes(np.zeros(3, "u1")),
            },
            "dtype",
        ),
        ({"other.npy": npy_bytes(np.zeros(3))}, "event_data"),
    ],
)
def test_wrong_contents(tmp_path, members, match):
    make_zip(tmp_path / "w.npz", members)
    with pytest.raises(EventFileError, match=match):
        NpzReader(tmp_path / "w.npz").read_all()


def test_member_shorter_than_declared_shape(tmp_path):
    data = np.zeros(100, NPZ_EVENT_DTYPE)
    raw = npy_bytes(data)
    make_zip(tmp_path / "s.npz", {"event_data.npy": raw[: len(raw) - 13 * 60 - 5]})
    with pytest.raises(EventFileError, match="event_data.npy is truncated") as info:
        NpzReader(tmp_path / "s.npz")
    assert info.value.index == 39


def test_corrupt_deflate_stream(tmp_path, rng):
    ev = random_events(rng, 20000, 640, 480)
    path = tmp_path / "c.npz"
    write_events(path, ev, 640, 480)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("event_data.npy")
    mid = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    for i in range(mid, mid + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="event_data.npy"):
        NpzReader(path).read_all()


def _read_or_error(path):
    try:
        return NpzReader(path).read_all()
    except EventFileError:
        return None


@settings(max_examples=40, deadline=None)
@given(
    cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 10**6), mode=st.sampled_from(["cut", "flip"])
)
def test_damaged_archives_raise_eventfileerror_only(cut, flip, mode):
    rng = np.random.default_rng(7)
    ev = random_events(rng, 2000, 640, 480)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "d.npz")
        write_events(path, ev, 640, 480)
        data = bytearray(Path(path).read_bytes())
        if mode == "cut":
            data = data[: int(cut * len(data))]
        else:
            data[flip % len(data)] ^= 0xFF
        Path(path).write_bytes(bytes(data))
        back = _read_or_error(path)
        if back is not None and mode == "cut":
            raise AssertionError("a truncated archive must not read cleanly")


def test_writer_rejects_bad_events(tmp_path):
    with NpzWriter(tmp_path / "r.npz", 10, 10) as w:
        with pytest.raises(ValueError):
            w.write(make_events([10], [0], [0], [0]))
        with pytest.raises(ValueError):
            w.write(np.zeros(2, "i8"))
    assert len(read_events(tmp_path / "r.npz")) == 0


def test_uint16_timestamps_are_unwrapped(tmp_path):
    """N-ImageNet stores t as uint16; the 16-bit counter wrap is undone across chunks."""
    t_true = np.arange(0, 300_000, 7, dtype=np.int64)
    ev = np.zeros(len(t_true), [("x", "<u2"), ("y", "<u2"), ("t", "<u2"), ("p", "?")])
    ev["t"] = t_true % 65536
    ev["x"] = np.arange(len(t_true)) % 640
    np.savez_compressed(tmp_path / "a.npz", event_data=ev)
    with open_events(tmp_path / "a.npz") as r:
        back = np.concatenate(list(r.chunks(1000)))
        assert r.counters["time_loops"] == 300_000 // 65536
    assert np.array_equal(back["t"], t_true)
