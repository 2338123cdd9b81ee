"""Text 't x y p' reader and writer: real sample, syntax variants, exact time conversion, bad lines."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_events, shared_file
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.replay import EventFileError, detect_format, open_events, write_events
from evstream.replay import text as text_mod
from evstream.replay.text import TextReader, TextWriter, format_events

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
SAMPLE_X = [30, 158, 84, 143, 38, 130, 88, 146, 86, 86, 132, 100, 87, 144, 100, 68, 181]
SAMPLE_Y = [134, 59, 25, 24, 145, 102, 22, 26, 9, 20, 100, 115, 13, 88, 116, 31, 74]


def write_text(tmp_path, content: str | bytes, name="e.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# -- the real sample ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_event_vision_library_sample():
    path = shared_file("txt/event-vision-library_event.txt")
    assert detect_format(path) == "txt"
    r = open_events(path)
    assert isinstance(r, TextReader)
    assert (r.time_unit, r.geometry_source, r.width, r.height) == ("s", "max+1", 182, 146)
    ev = r.read_all()
    # 9-decimal seconds such as 0.000779999 round to the nearest microsecond (780), not down (779)
    assert ev["t"].tolist() == SAMPLE_T_US
    assert ev["x"].tolist() == SAMPLE_X
    assert ev["y"].tolist() == SAMPLE_Y
    assert ev["p"].tolist() == [0] * 17
    assert r.counters == {}


# -- round trips --------------------------------------------------------------------------------


@st.composite
def event_arrays(draw, width=1280, height=720, max_n=40):
    n = draw(st.integers(0, max_n))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 10**17), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(xs, ys, ts, ps)


@settings(max_examples=50, deadline=None)
@given(ev=event_arrays(), unit=st.sampled_from(["s", "us"]), split=st.integers(0, 40))
def test_round_trip_property(ev, unit, split):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "e.txt")
        with TextWriter(path, 1280, 720, time_unit=unit) as w:
            w.write(ev[:split])
            w.write(ev[split:])
        r = TextReader(path)
        assert (r.width, r.height, r.geometry_source) == (1280, 720, "comment")
        back = r.read_all()
        assert back.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(back, ev)


@settings(max_examples=50, deadline=None)
@given(ev=event_arrays(max_n=20))
def test_format_matches_python_formatting(ev):
    expected = "".join(
        f"{t // 10**6}.{t % 10**6:06d} {x} {y} {p}\n" for x, y, t, p in ev[["x", "y", "t", "p"]].tolist()
    )
    assert format_events(ev).decode() == expected
    expected_us = "".join(f"{t} {x} {y} {p}\n" for x, y, t, p in ev[["x", "y", "t", "p"]].tolist())
    assert format_events(ev, "us").decode() == expected_us


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(tmp_path, n):
    ev = make_events([5] * n, [6] * n, [10**15 + 1] * n, [1] * n)
    write_events(tmp_path / "e.txt", ev, 640, 480)
    r = TextReader(tmp_path / "e.txt")
    assert (r.width, r.height) == (640, 480)
    np.testing.assert_array_equal(r.read_all(), ev)


def test_writer_output_and_bare_mode(tmp_path):
    ev = make_events([1, 639], [2, 479], [3_811, 12_000_000_345], [1, 0])
    write_events(tmp_path / "a.txt", ev, 640, 480)
    assert (tmp_path / "a.txt").read_text() == (
        "# evstream events: t x y p (t in seconds)\n# width=640 height=480\n"
        "0.003811 1 2 1\n12000.000345 639 479 0\n"
    )
    with TextWriter(tmp_path / "b.txt", 640, 480, header=False) as w:
        w.write(ev)
    r = TextReader(tmp_path / "b.txt")
    assert (r.geometry_source, r.width, r.height) == ("max+1", 640, 480)
    np.testing.assert_array_equal(r.read_all(), ev)


def test_block_boundaries(tmp_path, rng, monkeypatch):
    ev = random_events(rng, 3000, 640, 480, t0=10**9)
    write_events(tmp_path / "b.txt", ev, 640, 480)
    monkeypatch.setattr(text_mod, "READ_BLOCK", 37)
    r = TextReader(tmp_path / "b.txt")
    parts = list(r._raw_chunks())
    assert len(parts) > 100
    np.testing.assert_array_equal(np.concatenate(parts), ev)


# -- syntax variants ----------------------------------------------------------------------------


def test_csv_header_comments_tabs_crlf(tmp_path):
    path = write_text(
        tmp_path,
        "# recorded somewhere\r\nt,x,y,p\r\n0.5,1,2,1\r\n\r\n  0.75\t3\t4\t0   # trailing comment\r\n1,5,6,1",
    )
    r = TextReader(path, sensor_size=(10, 10))
    assert r.time_unit == "s" and r.data_line == 3
    assert r.read_all().tolist() == [(1, 2, 500_000, 1), (3, 4, 750_000, 0), (5, 6, 1_000_000, 1)]


def test_integer_microseconds_and_minus_one_polarity(tmp_path):
    path = write_text(tmp_path, "100 1 1 -1\n200 2 2 1\n300 3 3 0\n")
    r = TextReader(path)
    assert r.time_unit == "us" and (r.width, r.height) == (4, 4)
    assert r.read_all().tolist() == [(1, 1, 100, 0), (2, 2, 200, 1), (3, 3, 300, 0)]


def test_time_unit_override(tmp_path):
    path = write_text(tmp_path, "1 1 1 1\n2 2 2 0\n")
    assert TextReader(path, time_unit="s").read_all()["t"].tolist() == [1_000_000, 2_000_000]
    path = write_text(tmp_path, "5.5 1 1 1\n", name="f.txt")
    with pytest.raises(EventFileError, match="line 1: timestamp is not an integer"):
        TextReader(path, time_unit="us", sensor_size=(2, 2)).read_all()
    with pytest.raises(ValueError):
        TextReader(path, time_unit="ms")


@pytest.mark.parametrize(
    "token, us",
    [
        ("0.000779999", 780),
        ("0.0000005", 1),
        ("0.00000049999999", 0),
        ("0.0000015", 2),
        ("3", 3_000_000),
        ("3.", 3_000_000),
        (".25", 250_000),
        ("+1.5", 1_500_000),
        ("-0.5", -500_000),
        ("1e-3", 1000),
        ("2.5E+2", 250_000_000),
        ("1234567.123456", 1_234_567_123_456),
        ("999999999999.999999", 999_999_999_999_999_999),
        ("1234567890123.5", 1_234_567_890_123_500_000),
        ("0.1234567890123456789012345", 123_457),
        ("00000000000000000012.5", 12_500_000),
    ],
)
def test_exact_seconds_conversion(tmp_path, token, us):
    path = write_text(tmp_path, f"0.0 0 0 0\n{token} 1 1 1\n")
    assert TextReader(path, sensor_size=(2, 2)).read_all()["t"].tolist() == [0, us]


def test_size_line(tmp_path):
    path = write_text(tmp_path, "240 180\n0.001 239 179 1\n")
    r = TextReader(path)
    assert (r.width, r.height, r.geometry_source) == (240, 180, "size-line")
    assert r.read_all().tolist() == [(239, 179, 1000, 1)]


def test_out_of_bounds_are_dropped_and_counted(tmp_path):
    path = write_text(tmp_path, "1 0 0 1\n2 10 0 1\n3 0 -1 1\n4 9 9 0\n")
    r = TextReader(path, sensor_size=(10, 10))
    assert r.read_all()["t"].tolist() == [1, 4]
    assert r.counters == {"out_of_bounds": 2}


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, line, match",
    [
        ("0.1 1 2 1\n0.2 1 2\n", 2, "3 fields"),
        ("0.1 1 2 1\n0.2 1 2 1 5\n", 2, "5 fields"),
        ("# c\n0.1 1 2 1\n0.2 a 2 1\n", 3, "unexpected character"),
        ("0.1 1 2 1\n0.2 1.5 2 1\n", 2, "x is not an integer"),
        ("0.1 1 2 1\n\n0.2 1 2 --1\n", 3, "p is not an integer"),
        ("0.1 1 2 1\n0.2.3 1 2 1\n", 2, "timestamp"),
        ("0.1 1 2 1\n1e400 1 2 1\n", 2, "timestamp"),
        ("0.1 1 2 1\n99999999999999.5 1 2 1\n", 2, "timestamp"),
        ("t x y p\nheader again\n", 2, "unexpected character"),
        ("0.1 1 2 1\n0.2 1 2 1\x00\n", 2, "unexpected character"),
    ],
)
def test_bad_lines_name_the_line(tmp_path, content, line, match):
    path = write_text(tmp_path, content)
    with pytest.raises(EventFileError, match=f"line {line}: .*{match}|line {line}: {match}") as info:
        TextReader(path, sensor_size=(10, 10)).read_all()
    start = content.encode().split(b"\n")
    assert info.value.offset == sum(len(s) + 1 for s in start[: line - 1])


def test_garbage_bytes(tmp_path):
    path = write_text(tmp_path, os.urandom(20000))
    with pytest.raises(EventFileError):
        TextReader(path).read_all()
    path = write_text(tmp_path, b"1" * (2 << 20), name="long.txt")
    with pytest.raises(EventFileError, match="longer than"):
        TextReader(path).read_all()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.txt")
        with open(path, "wb") as f:
            f.write(data)
        try:
            TextReader(path, sensor_size=(100, 100)).read_all()
        except EventFileError:
            pass


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.sampled_from(["1", "-2", "0.5", "3.", "+4", "1e2", "x", "", "5.5.5", "--1", "#c", ","]),
            min_size=0,
            max_size=6,
        ),
        max_size=8,
    )
)
def test_token_soup_never_crashes(rows):
    content = "\n".join(" ".join(r) for r in rows)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.txt")
        with open(path, "w") as f:
            f.write(content)
        try:
            TextReader(path, sensor_size=(100, 100)).read_all()
        except EventFileError:
            pass
