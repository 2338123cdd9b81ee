"""HDF5 reader (DSEC and plain layouts) and DSEC writer: real sample, round trips, layout details, damage."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_events, shared_file
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.replay import EventFileError, detect_format, open_events, read_events, write_events
from evstream.replay import hdf5 as hdf5_mod
from evstream.replay.hdf5 import DsecWriter, Hdf5Reader

# event-vision-library sample: 17 events, t in float seconds; x/y swapped relative to the text twin.
SAMPLE_T_US = [
    0,
    780,
    1706,
    1724,
    1930,
    1956,
    3264,
    3533,
    3743,
    3889,
    4276,
    4667,
    4687,
    5059,
    5163,
    5539,
    5748,
]
SAMPLE_X = [134, 59, 25, 24, 145, 102, 22, 26, 9, 20, 100, 115, 13, 88, 116, 31, 74]
SAMPLE_Y = [30, 158, 84, 143, 38, 130, 88, 146, 86, 86, 132, 100, 87, 144, 100, 68, 181]


def brute_ms_to_idx(t_rel: np.ndarray) -> list[int]:
    if not len(t_rel):
        return []
    return [int(np.flatnonzero(t_rel >= ms * 1000)[0]) for ms in range(int(t_rel[-1]) // 1000 + 1)]


# -- the real sample ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_event_vision_library_sample():
    path = shared_file("hdf5/event-vision-library_event.hdf5")
    assert detect_format(path) == "hdf5"
    r = open_events(path)
    assert isinstance(r, Hdf5Reader)
    assert (r.layout, r.group, r.time_unit, r.geometry_source) == ("plain", "/raw_events", "s", "max+1")
    assert (r.width, r.height) == (146, 182)
    ev = r.read_all()
    assert ev["t"].tolist() == SAMPLE_T_US
    assert ev["x"].tolist() == SAMPLE_X
    assert ev["y"].tolist() == SAMPLE_Y
    assert ev["p"].tolist() == [0] * 17
    assert r.counters == {}


@pytest.mark.shared_data
def test_sample_matches_text_twin_with_x_y_swapped():
    h5 = read_events(shared_file("hdf5/event-vision-library_event.hdf5"))
    txt = read_events(shared_file("txt/event-vision-library_event.txt"))
    np.testing.assert_array_equal(h5["x"], txt["y"])
    np.testing.assert_array_equal(h5["y"], txt["x"])
    np.testing.assert_array_equal(h5["t"], txt["t"])
    np.testing.assert_array_equal(h5["p"], txt["p"])


# -- DSEC writer round trips --------------------------------------------------------------------


@st.composite
def sorted_events(draw, width=640, height=480, max_n=40):
    n = draw(st.integers(0, max_n))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    t0 = draw(st.integers(0, 2**62))
    steps = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    t = t0 + np.cumsum(np.asarray(steps, np.int64)) if n else np.zeros(0, np.int64)
    return make_events(xs, ys, t, ps)


@settings(max_examples=40, deadline=None)
@given(ev=sorted_events(), compression=st.sampled_from(["gzip", "lzf", None]), split=st.integers(0, 40))
def test_dsec_round_trip_property(ev, compression, split):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "events.h5")
        with DsecWriter(path, 640, 480, compression=compression, chunk_events=16) as w:
            w.write(ev[:split])
            w.write(ev[split:])
        r = Hdf5Reader(path)
        assert r.layout == "dsec" and r.geometry_source == "attributes"
        back = r.read_all()
        assert back.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(back, ev)
        with h5py.File(path, "r") as f:
            t_rel = f["events/t"][:].astype(np.int64)
            assert f["t_offset"][()] == (int(ev["t"][0]) // 1000 * 1000 if len(ev) else 0)
            assert f["ms_to_idx"][:].tolist() == brute_ms_to_idx(t_rel)


@pytest.mark.parametrize("n", [0, 1])
def test_dsec_empty_and_single(tmp_path, n):
    ev = make_events([7] * n, [9] * n, [123_456_789] * n, [1] * n)
    write_events(tmp_path / "e.h5", ev, 640, 480)
    np.testing.assert_array_equal(read_events(tmp_path / "e.h5"), ev)


def test_dsec_layout_is_exact(tmp_path):
    t = np.array([0, 500, 2100, 5000, 5000, 7100, 7200, 7200, 8100, 9000]) + 1_000_000
    ev = make_events(np.arange(10), np.arange(10) * 2, t, [0, 1] * 5)
    path = tmp_path / "events.h5"
    with DsecWriter(path, 640, 480) as w:
        w.write(ev[:3])
        w.write(ev[3:7])
        w.write(ev[7:])
    with h5py.File(path, "r") as f:
        assert set(f) == {"events", "ms_to_idx", "t_offset"}
        assert set(f["events"]) == {"x", "y", "t", "p"}
        dtypes = {k: f["events"][k].dtype for k in "xytp"}
        assert dtypes == {"x": np.uint16, "y": np.uint16, "t": np.uint32, "p": np.uint8}
        assert f["ms_to_idx"].dtype == np.uint64 and f["t_offset"].dtype == np.int64
        assert f["t_offset"][()] == 1_000_000
        # the example from DSEC's eventslicer documentation
        assert f["ms_to_idx"][:].tolist() == [0, 2, 2, 3, 3, 3, 5, 5, 8, 9]
        assert f["events/x"].maxshape == (None,) and f["events/x"].chunks is not None
        assert f["events/x"].compression == "gzip"
        assert (int(f.attrs["width"]), int(f.attrs["height"])) == (640, 480)
    np.testing.assert_array_equal(read_events(path), ev)


def test_dsec_large_multi_chunk(tmp_path, rng, monkeypatch):
    ev = random_events(rng, 50_000, 640, 480, t0=10**12 + 777, max_dt=100)
    path = tmp_path / "big.h5"
    with DsecWriter(path, 640, 480, chunk_events=1000) as w:
        for i in range(0, len(ev), 7777):
            w.write(ev[i : i + 7777])
    monkeypatch.setattr(hdf5_mod, "_STEP", 4096)
    r = Hdf5Reader(path)
    parts = list(r._raw_chunks())
    assert len(parts) > 10
    np.testing.assert_array_equal(np.concatenate(parts), ev)
    with h5py.File(path, "r") as f:
        t_rel = f["events/t"][:].astype(np.int64)
        ms = f["ms_to_idx"][:]
    # spot-check the index definition: t[ms_to_idx[ms]] >= ms*1000 > t[ms_to_idx[ms] - 1]
    for k in rng.integers(1, len(ms), 200):
        i = int(ms[k])
        assert t_rel[i] >= k * 1000 > t_rel[i - 1]


def test_dsec_writer_rejects(tmp_path):
    with DsecWriter(tmp_path / "r.h5", 640, 480) as w:
        with pytest.raises(ValueError, match="decrease"):
            w.write(make_events([1, 2], [1, 2], [10, 5], [0, 1]))
        w.write(make_events([1], [1], [100], [1]))
        with pytest.raises(ValueError, match="decrease"):
            w.write(make_events([1], [1], [99], [1]))
        with pytest.raises(ValueError, match="uint32"):
            w.write(make_events([1], [1], [2**32 + 100], [1]))
        with pytest.raises(ValueError):
            w.write(make_events([640], [0], [200], [1]))
    with pytest.raises(ValueError, match="compression"):
        DsecWriter(tmp_path / "c.h5", 640, 480, compression="blosc")
    np.testing.assert_array_equal(read_events(tmp_path / "r.h5"), make_events([1], [1], [100], [1]))


# -- files written by other tools ---------------------------------------------------------------


def test_dsec_file_without_attributes_defaults_to_640x480(tmp_path):
    path = tmp_path / "dsec.h5"
    with h5py.File(path, "w") as f:
        f["events/x"] = np.array([0, 639, 700], "u2")
        f["events/y"] = np.array([0, 479, 5], "u2")
        f["events/t"] = np.array([0, 10, 20], "u4")
        f["events/p"] = np.array([1, 0, 1], "u1")
        f["t_offset"] = np.int64(5_000_000_000)
        f["ms_to_idx"] = np.array([0], "u8")
    r = Hdf5Reader(path)
    assert (r.width, r.height, r.geometry_source, r.t_offset) == (640, 480, "dsec-default", 5_000_000_000)
    assert r.read_all().tolist() == [(0, 0, 5_000_000_000, 1), (639, 479, 5_000_000_010, 0)]
    assert r.counters == {"out_of_bounds": 1}
    assert Hdf5Reader(path, sensor_size=(1000, 1000)).n_events == 3


def test_plain_layout_root_integer_microseconds_and_attributes(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.array([1, 2], "i4")
        f["y"] = np.array([3, 4], "i4")
        f["ts"] = np.array([10, 2**40], "i8")
        f["polarity"] = np.array([-1, 1], "i1")
        f.attrs["sensor_size"] = np.array([346, 260, 2])
    r = Hdf5Reader(path)
    assert (r.layout, r.group, r.time_unit, r.geometry_source) == ("plain", "/", "us", "attributes")
    assert (r.width, r.height) == (346, 260)
    assert r.read_all().tolist() == [(1, 3, 10, 0), (2, 4, 2**40, 1)]


@pytest.mark.parametrize(
    "unit, data, expected",
    [
        ("ms", np.array([1, 2500], "i8"), [1000, 2_500_000]),
        ("ns", np.array([1499, 1500], "i8"), [1, 2]),
        ("s", np.array([1.0000005, 2.25]), [1_000_001, 2_250_000]),
        ("us", np.array([1.4, 2.6]), [1, 3]),
    ],
)
def test_time_unit_override(tmp_path, unit, data, expected):
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as f:
        for k, v in (("x", [0, 1]), ("y", [0, 1]), ("p", [True, False])):
            f[f"ev/{k}"] = np.array(v)
        f["ev/t"] = data
    assert read_events_unit(path, unit)["t"].tolist() == expected


def read_events_unit(path, unit):
    return Hdf5Reader(path, time_unit=unit, sensor_size=(10, 10)).read_all()


def test_ambiguous_groups_need_group_argument(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        for g, t0 in (("left", 0), ("right", 1000)):
            for k in "xyp":
                f[f"{g}/{k}"] = np.array([1, 0], "u1")
            f[f"{g}/t"] = np.array([t0, t0 + 1], "i8")
    with pytest.raises(EventFileError, match="group="):
        Hdf5Reader(path)
    assert Hdf5Reader(path, group="right", sensor_size=(2, 2)).read_all()["t"].tolist() == [1000, 1001]
    with pytest.raises(EventFileError, match="no group"):
        Hdf5Reader(path, group="middle")


def test_missing_compression_filter_asks_for_hdf5plugin(tmp_path):
    path = tmp_path / "blosc.h5"
    with h5py.File(path, "w") as f:
        for k, dt in (("x", "u2"), ("y", "u2"), ("p", "u1"), ("t", "u4")):
            d = f.create_dataset(
                f"events/{k}", (4,), dtype=dt, chunks=(4,), compression=32001, allow_unknown_filter=True
            )
            d.id.write_direct_chunk((0,), b"not really blosc data")
        f["t_offset"] = np.int64(0)
    if h5py.h5z.filter_avail(32001):
        pytest.skip("a Blosc filter is registered here (hdf5plugin installed)")
    with pytest.raises(EventFileError, match="pip install hdf5plugin"):
        Hdf5Reader(path)


# -- bad input ----------------------------------------------------------------------------------


def test_garbage_and_truncated_files(tmp_path, rng):
    (tmp_path / "g.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(5000))
    with pytest.raises(EventFileError):
        Hdf5Reader(tmp_path / "g.h5")
    ev = random_events(rng, 20_000, 640, 480)
    write_events(tmp_path / "full.h5", ev, 640, 480)
    data = (tmp_path / "full.h5").read_bytes()
    for frac in (0.1, 0.5, 0.9, 0.99):
        (tmp_path / "cut.h5").write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(EventFileError):
            Hdf5Reader(tmp_path / "cut.h5").read_all()


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda f: f.create_dataset("nothing", data=[1, 2]), "no x, y, t, p"),
        (
            lambda f: (
                [f.create_dataset(k, data=np.zeros(3, "u2")) for k in "xyp"]
                + [f.create_dataset("t", data=np.array([b"a", b"b", b"c"]))]
            ),
            "dtype",
        ),
        (
            lambda f: (
                [f.create_dataset(k, data=np.zeros(3, "u2")) for k in "xyp"]
                + [f.create_dataset("t", data=np.zeros(4, "u4"))]
            ),
            "lengths",
        ),
        (lambda f: [f.create_dataset(k, data=np.zeros((3, 2), "u2")) for k in "xytp"], "1-D"),
        (
            lambda f: (
                [f.create_dataset(k, data=np.zeros(3, "u2")) for k in "xyp"]
                + [f.create_dataset("t", data=np.array([0.0, np.nan, 1.0]))]
            ),
            "invalid timestamp",
        ),
        (
            lambda f: (
                [f.create_dataset(k, data=np.array([0.5, 1, 2])) for k in "xy"]
                + [f.create_dataset(k, data=np.zeros(3, "u2")) for k in "tp"]
            ),
            "non-integer",
        ),
    ],
)
def test_wrong_contents(tmp_path, build, match):
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        build(f)
    with pytest.raises(EventFileError, match=match):
        Hdf5Reader(path, sensor_size=(10, 10)).read_all()


def test_empty_plain_file_without_geometry(tmp_path):
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        for k in "xytp":
            f[k] = np.zeros(0, "u2")
    with pytest.raises(EventFileError, match="sensor_size"):
        Hdf5Reader(path)
    assert len(Hdf5Reader(path, sensor_size=(4, 4)).read_all()) == 0


def test_max_plus_one_geometry_scans_in_slices(tmp_path, rng, monkeypatch):
    ev = random_events(rng, 10_000, 300, 200)
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["data/x"] = ev["x"]
        f["data/y"] = ev["y"]
        f["data/t"] = ev["t"]
        f["data/p"] = ev["p"]
    monkeypatch.setattr(hdf5_mod, "_STEP", 999)
    r = Hdf5Reader(Path(path))
    assert (r.width, r.height) == (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    np.testing.assert_array_equal(r.read_all(), ev)
