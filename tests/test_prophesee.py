"""Prophesee RAW (EVT 2.0 / 2.1 / 3.0) and DAT: C++ decoders against the slow reference decoders,
against the real recordings, and read(write(events)) == events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_decoders as ref
from conftest import random_events, shared_file
from evstream.kernels import _core
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.replay import EventFileError, open_events, read_events, write_events
from evstream.replay.prophesee import header_geometry, parse_header


def _data(path) -> bytes:
    return ref.split_header(path.read_bytes())


# --------------------------------------------------------------------------- real recordings
@pytest.mark.shared_data
def test_evt3_real_recording_matches_reference_and_spec():
    path = shared_file("raw_evt3/expelliarmus_evt3_sample.raw")
    with open_events(path) as r:
        ev = r.read_all()
        assert (r.format, r.width, r.height) == ("evt3", 1280, 720)
        assert r.counters.get("truncated_bytes", 0) == 0
    assert len(ev) == 219596
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (11718656, 11727457)
    assert np.array_equal(ev, ref.evt3(_data(path), 1280, 720))
    # expelliarmus's decoded file is right for x/y/p everywhere and for t before its known drift.
    theirs = np.load(shared_file("reference/expelliarmus_evt3_sample.decoded.npy"), allow_pickle=False)
    for name in ("x", "y", "p"):
        assert np.array_equal(ev[name], theirs[name])
    assert np.array_equal(ev["t"][:20121], theirs["t"][:20121])
    assert np.all(np.diff(ev["t"]) >= 0)


@pytest.mark.shared_data
def test_evt2_real_recording_matches_reference():
    path = shared_file("raw_evt2/expelliarmus_evt2_sample.raw")
    with open_events(path) as r:
        ev = r.read_all()
        assert (r.format, r.width, r.height) == ("evt2", 640, 480)
    assert len(ev) == 539481
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (1317888, 1367888)
    assert (int(ev["x"].max()), int(ev["y"].max())) == (599, 475)
    assert np.array_equal(ev, ref.evt2(_data(path), 640, 480))


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name,count,t_last",
    [("expelliarmus_NCARS_obj_004397_td.dat", 4407, 99937), ("tonic_sample_ncars.dat", 2009, 99952)],
)
def test_dat_real_recordings(name, count, t_last):
    path = shared_file(f"dat/{name}")
    ev = read_events(path)
    assert len(ev) == count and int(ev["t"][-1]) == t_last
    data = path.read_bytes()
    body = ref.split_header(data)[2:]  # event type and size bytes
    assert np.array_equal(ev, ref.dat(body, 304, 240))
    if name.startswith("expelliarmus"):
        theirs = np.load(
            shared_file("reference/expelliarmus_NCARS_obj_004397_td.decoded.npy"), allow_pickle=False
        )
        for f in ("x", "y", "t", "p"):
            assert np.array_equal(ev[f], theirs[f])


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "rel", ["raw_evt3/expelliarmus_evt3_sample.raw", "raw_evt2/expelliarmus_evt2_sample.raw"]
)
def test_any_chunk_split_gives_the_same_events(rel, rng):
    path = shared_file(rel)
    data = np.frombuffer(_data(path), np.uint8)
    cls = _core.Evt3Decoder if "evt3" in rel else _core.Evt2Decoder
    whole = cls(1280, 720).decode(data)
    dec = cls(1280, 720)
    cuts = np.sort(rng.choice(len(data), 50, replace=False))
    parts = [dec.decode(piece) for piece in np.split(data, cuts)]
    assert np.array_equal(np.concatenate(parts), whole)
    assert dec.pending_bytes == 0


# --------------------------------------------------------------------------- synthetic words
def _evt3_words(*words) -> np.ndarray:
    return np.array(words, "<u2").view(np.uint8)


def test_evt3_vectors_time_reset_and_wrap():
    words = _evt3_words(
        0x2005,  # ADDR_X before any TIME_HIGH: dropped
        0x8FFF,  # TIME_HIGH 4095
        0x6010,  # TIME_LOW 16
        0x0003,  # y = 3
        0x3800 | 100,  # vector base x = 100, ON
        0x4000 | 0b1000_0000_0101,  # VECT_12: x 100, 102, 111
        0x5000 | 0b1000_0001,  # VECT_8: x 112, 119
        0x8001,  # TIME_HIGH 1 after 4095: a 24-bit wrap; TIME_LOW resets to 0
        0x2000 | 7,  # ADDR_X x=7 OFF at t = 2^24 + 4096
        0xA001,  # EXT_TRIGGER: counted, not an event
        0x1234,  # reserved type
    )
    dec = _core.Evt3Decoder(1280, 720)
    ev = dec.decode(words)
    t0 = (4095 << 12) + 16
    assert ev["x"].tolist() == [100, 102, 111, 112, 119, 7]
    assert ev["t"].tolist() == [t0] * 5 + [(1 << 24) + 4096]
    assert ev["p"].tolist() == [1] * 5 + [0]
    c = dec.counters
    assert (c["before_time"], c["time_loops"], c["other_words"], c["unknown_words"]) == (1, 1, 1, 1)
    assert np.array_equal(ev, ref.evt3(words.tobytes(), 1280, 720))


def test_evt3_out_of_bounds_events_are_dropped_and_counted():
    words = _evt3_words(0x8000, 0x0000 | 10, 0x2000 | 5, 0x2000 | 50, 0x0000 | 700, 0x2000 | 1)
    dec = _core.Evt3Decoder(20, 100)
    ev = dec.decode(words)
    assert ev["x"].tolist() == [5]
    assert dec.counters["out_of_bounds"] == 2


def test_evt21_little_endian_words():
    w = []
    w.append((0x8 << 60) | (5 << 32))  # TIME_HIGH 5
    w.append((0x1 << 60) | (3 << 54) | (64 << 43) | (9 << 32) | 0x8000_0001)  # ON, x 64 and 95
    w.append((0x0 << 60) | (4 << 54) | (32 << 43) | (2 << 32) | 0b110)  # OFF, x 33, 34
    data = np.array(w, "<u8").view(np.uint8)
    ev = _core.Evt21Decoder(640, 480).decode(data)
    assert ev["x"].tolist() == [64, 95, 33, 34]
    assert ev["t"].tolist() == [323, 323, 324, 324]
    assert np.array_equal(ev, ref.evt21_little(data.tobytes(), 640, 480))


def test_evt21_reader_handles_both_byte_orders(tmp_path, rng):
    words = [(0x8 << 60) | (7 << 32)]
    for _ in range(200):
        words.append(
            (int(rng.integers(0, 2)) << 60)
            | (int(rng.integers(0, 64)) << 54)
            | (int(rng.integers(0, 20)) * 32 << 43)
            | (int(rng.integers(0, 480)) << 32)
            | int(rng.integers(0, 1 << 32))
        )
    little = np.array(words, "<u8")
    expected = ref.evt21_little(little.tobytes(), 640, 480)
    legacy = little.view("<u4").reshape(-1, 2)[:, ::-1].copy()
    for order, body in (("little", little.tobytes()), ("legacy", legacy.tobytes())):
        path = tmp_path / f"{order}.raw"
        path.write_bytes(
            f"% evt 2.1\n% format EVT21;width=640;height=480;endianness={order}\n% end\n".encode() + body
        )
        with open_events(path) as r:
            assert r.format == "evt21"
            assert np.array_equal(r.read_all(), expected), order


def test_evt2_two_thread_path_with_wrap_and_drops_in_the_first_half(rng):
    """Blocks over 1 MiB are decoded by two threads; the split must be invisible."""
    n = 400_000
    words = np.empty(n, np.uint32)
    kinds = rng.integers(0, 2, n).astype(np.uint32)
    x = rng.integers(0, 700, n).astype(np.uint32)  # some beyond the 640-wide sensor: dropped
    y = rng.integers(0, 480, n).astype(np.uint32)
    words[:] = (kinds << 28) | (rng.integers(0, 64, n).astype(np.uint32) << 22) | (x << 11) | y
    high = np.arange(0, n, 97)
    words[high] = (0x8 << 28) | (
        (np.arange(len(high), dtype=np.uint32) + 0x0FFFFC00) & 0x0FFFFFFF
    )  # wraps at word ~99k, in the first half
    words[: high[0] + 10] = words[: high[0] + 10] & ~np.uint32(0xF << 28)  # CD before the first TIME_HIGH
    data = words.view(np.uint8)
    dec = _core.Evt2Decoder(640, 480)
    ev = dec.decode(data)
    assert dec.counters["time_loops"] == 1 and dec.counters["out_of_bounds"] > 0
    assert np.array_equal(ev, ref.evt2(data.tobytes(), 640, 480))


def test_dat_two_thread_path_with_wrap_and_drops_in_the_first_half(rng):
    n = 200_000
    rec = np.empty((n, 2), "<u4")
    t = (np.arange(n, dtype=np.int64) * 50 + 2**32 - 3_000_000) % 2**32  # wraps early in the first half
    rec[:, 0] = t
    x = rng.integers(0, 330, n)  # some beyond 304: dropped
    rec[:, 1] = x | (rng.integers(0, 240, n) << 14) | (rng.integers(0, 2, n) << 28)
    data = rec.view(np.uint8).reshape(-1)
    dec = _core.DatDecoder(304, 240, 14, 14)
    ev = dec.decode(data)
    assert dec.counters["time_loops"] == 1
    assert np.array_equal(ev, ref.dat(data.tobytes(), 304, 240))


# --------------------------------------------------------------------------- writers
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3000),
    seed=st.integers(0, 2**32 - 1),
    max_dt=st.sampled_from([0, 1, 50, 5000, 3_000_000]),
    t0=st.integers(0, 2**36),
    encoding=st.sampled_from(["evt2", "evt3"]),
)
def test_raw_roundtrip(tmp_path_factory, n, seed, max_dt, t0, encoding):
    """Includes jumps over the EVT 3.0 24-bit and EVT 2.0 34-bit timestamp wraps."""
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n, 1280, 720, t0=t0, max_dt=max_dt)
    path = tmp_path_factory.mktemp("raw") / "rec.raw"
    write_events(path, ev, 1280, 720, format=encoding)
    with open_events(path) as r:
        assert (r.format, r.width, r.height) == (encoding, 1280, 720)
        back = r.read_all()
        assert not {k: v for k, v in r.counters.items() if v and k != "time_loops"}
    assert np.array_equal(back, ev)


def test_raw_writer_output_decodes_with_the_reference(tmp_path, rng):
    ev = random_events(rng, 5000, 640, 480, t0=123456, max_dt=3000)
    for enc, decoder in (("evt3", ref.evt3), ("evt2", ref.evt2)):
        path = tmp_path / f"{enc}.raw"
        write_events(path, ev, 640, 480, format=enc)
        assert np.array_equal(decoder(ref.split_header(path.read_bytes()), 640, 480), ev)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 2000), seed=st.integers(0, 2**32 - 1), t0=st.integers(0, 2**32 - 2**28))
def test_dat_roundtrip(tmp_path_factory, n, seed, t0):
    ev = random_events(np.random.default_rng(seed), n, 304, 240, t0=t0, max_dt=100)
    path = tmp_path_factory.mktemp("dat") / "rec.dat"
    write_events(path, ev, 304, 240)
    with open_events(path) as r:
        assert (r.format, r.width, r.height) == ("dat", 304, 240)
        assert np.array_equal(r.read_all(), ev)


def test_streaming_writes_equal_one_write(tmp_path, rng):
    ev = random_events(rng, 10000, 640, 480, max_dt=400)
    from evstream.replay import open_writer

    for ext in ("raw", "dat"):
        with open_writer(tmp_path / f"a.{ext}", 640, 480) as w:
            for part in np.array_split(ev, 7):
                w.write(part)
        assert np.array_equal(read_events(tmp_path / f"a.{ext}"), ev)


def test_writers_reject_bad_events(tmp_path):
    ev = np.zeros(3, EVENT_DTYPE)
    ev["x"] = [1, 2, 700]
    with pytest.raises(ValueError, match="event 2 has x=700 outside the 640x480 sensor"):
        write_events(tmp_path / "a.raw", ev, 640, 480)
    ev["x"] = 0
    ev["t"] = [5, 3, 9]
    with pytest.raises(ValueError, match="timestamps decrease at event 1"):
        write_events(tmp_path / "b.raw", ev, 640, 480)
    with pytest.raises(ValueError, match="cannot store a 4096x480 sensor"):
        write_events(tmp_path / "c.raw", ev, 4096, 480)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        write_events(tmp_path / "d.raw", np.zeros(3), 640, 480)


# --------------------------------------------------------------------------- headers and damage
@pytest.mark.parametrize(
    "lines,geometry",
    [
        (["% format EVT3;height=720;width=1280"], (1280, 720)),
        (["% geometry 640x480"], (640, 480)),
        (["% evt 3.0", "% system_ID 48"], (1280, 720)),
        (["% evt 2.0", "% plugin_name hal_plugin_gen3_fx3"], (640, 480)),
        (["% plugin_name hal_plugin_imx636_evk4"], (1280, 720)),
        (["% sensor_generation 3.1"], (640, 480)),
        (["% Width 304", "% Height 240"], (304, 240)),
        (["% evt 3.0"], None),
    ],
)
def test_header_geometry(lines, geometry):
    assert header_geometry(parse_header(lines)) == geometry


def test_raw_without_geometry_needs_sensor_size(tmp_path):
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 3.0\n" + _evt3_words(0x8000, 0x0005, 0x2003).tobytes())
    with pytest.raises(EventFileError, match="pass sensor_size"):
        open_events(path)
    ev = read_events(path, sensor_size=(10, 10))
    assert ev["x"].tolist() == [3] and ev["y"].tolist() == [5]


def test_truncated_raw_counts_the_partial_word(tmp_path):
    body = _evt3_words(0x8000, 0x0001, 0x2002).tobytes()
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 8x8\n" + body + b"\x02")
    with open_events(path) as r:
        assert len(r.read_all()) == 1
        assert r.counters["truncated_bytes"] == 1


def test_unterminated_header_is_an_error(tmp_path):
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 8x")
    with pytest.raises(EventFileError, match="header line is not terminated"):
        open_events(path)


def test_dat_with_wrong_event_size(tmp_path):
    path = tmp_path / "a.dat"
    path.write_bytes(b"% Version 2\n\x00\x10" + bytes(32))
    with pytest.raises(EventFileError, match="event size 16"):
        open_events(path)


@pytest.mark.parametrize("head", [b"", bytes(16), b"\x00\x08"])
def test_dat_without_header_is_an_error(tmp_path, head):
    # A zeroed or missing header must not decode as records (it gave made-up events before). (An
    # empty file is an empty recording when the format is given: tests/test_corpus.py.)
    rec = np.array([[10, 1], [20, 2]], "<u4")
    path = tmp_path / "a.dat"
    path.write_bytes(head + rec.tobytes())
    with pytest.raises(EventFileError, match="no '%' header lines"):
        open_events(path)


def test_dat_time_wrap_is_unwrapped(tmp_path):
    rec = np.array([[2**32 - 10, 1], [5, 2]], "<u4")
    path = tmp_path / "a.dat"
    path.write_bytes(b"% Version 2\n% Width 8\n% Height 8\n\x00\x08" + rec.tobytes())
    ev = read_events(path)
    assert ev["t"].tolist() == [2**32 - 10, 2**32 + 5]


def _evt2_stream(n_highs: int, per_high: int, first_high: int) -> np.ndarray:
    """EVT 2.0 words: consecutive TIME_HIGHs from `first_high` (wrapping at 2^28), each followed by
    `per_high` CD events."""
    words = []
    for k in range(n_highs):
        words.append((0x8 << 28) | ((first_high + k) & 0x0FFFFFFF))
        for j in range(per_high):
            words.append((1 << 28) | ((j % 64) << 22) | ((j % 640) << 11) | (k % 480))
    return np.array(words, "<u4")


@pytest.mark.parametrize("first_high", [1000, 200_000_000])  # counter in its lower / upper half
@pytest.mark.parametrize("flip", [1 << 27, 3 << 26, 0x0ABCDEF])
def test_evt2_damaged_time_high_is_no_wrap(first_high, flip):
    # One TIME_HIGH with flipped high bits: up and back (or down and up) by half the range or
    # more must not leave a 2^34 us wrap behind, which would shift every later time by 4.8 hours.
    clean = _evt2_stream(200, 3, first_high)
    words = clean.copy()
    words[np.flatnonzero(words >> 28 == 0x8)[100]] ^= np.uint32(flip)
    dec = _core.Evt2Decoder(640, 480)
    ev = dec.decode(words.view(np.uint8))
    want = _core.Evt2Decoder(640, 480).decode(clean.view(np.uint8))
    damaged = slice(100 * 3, 101 * 3)  # the events stamped with the damaged TIME_HIGH
    assert np.array_equal(np.delete(ev, damaged), np.delete(want, damaged))
    assert dec.counters.get("time_loops", 0) == 0 and dec.counters["t_backwards"] == 1
    assert np.array_equal(ev, ref.evt2(words.tobytes(), 640, 480))


def test_evt2_genuine_wrap_next_to_damaged_words():
    clean = _evt2_stream(300, 2, first_high=(1 << 28) - 150)  # wraps after 150 TIME_HIGHs
    words = clean.copy()
    highs = np.flatnonzero(words >> 28 == 0x8)
    words[highs[40]] ^= np.uint32(3 << 26)  # down, before the wrap
    words[highs[200]] ^= np.uint32(1 << 27)  # up, after it
    dec = _core.Evt2Decoder(640, 480)
    ev = dec.decode(words.view(np.uint8))
    assert dec.counters["time_loops"] == 1 and dec.counters["t_backwards"] == 2
    want = _core.Evt2Decoder(640, 480).decode(clean.view(np.uint8))
    assert int(want["t"][-1]) >> 6 == (1 << 28) - 150 + 299
    assert np.array_equal(np.delete(ev, [80, 81, 400, 401]), np.delete(want, [80, 81, 400, 401]))
    assert np.array_equal(ev, ref.evt2(words.tobytes(), 640, 480))


@pytest.mark.parametrize("flip", [1 << 27, 3 << 26])
def test_evt2_damaged_time_high_at_the_two_thread_split(flip):
    # Large enough for two threads; the damaged TIME_HIGH is one of the last before the middle
    # (the split moves past it), and a genuine wrap follows in the second half.
    words = _evt2_stream(40_000, 8, first_high=(1 << 28) - 30_000)
    assert words.nbytes >= 1 << 20
    highs = np.flatnonzero(words >> 28 == 0x8)
    before_mid = highs[highs < len(words) // 2]
    for where in (before_mid[-1], before_mid[-2], highs[len(before_mid)]):
        damaged = words.copy()
        damaged[where] ^= np.uint32(flip)
        dec = _core.Evt2Decoder(640, 480)
        ev = dec.decode(damaged.view(np.uint8))
        assert dec.counters["time_loops"] == 1 and dec.counters["t_backwards"] == 1, where
        assert np.array_equal(ev, ref.evt2(damaged.tobytes(), 640, 480))


def test_damaged_value_ending_a_two_thread_block_is_taken_back_in_the_next_chunk():
    # The last TIME_HIGH (DAT: record) of a block decoded by two threads looks like a wrap; the
    # next chunk's first value shows it was damaged. Chunked like that, the decode must equal one
    # in small (one-thread) chunks: the second half's last step must reach the next chunk.
    n = (4 << 20) // 8  # TIME_HIGH + CD pairs in a 4 MiB block
    words = np.empty(2 * (n + 100), "<u4")
    words[0::2] = 0x8000_0000 | ((1 << 27) + 1000 + np.arange(n + 100, dtype=np.uint32))
    words[1::2] = (1 << 28) | (5 << 11) | 5
    words[2 * (n - 1)] = 0x8000_0000 | 5  # a stray TIME_HIGH ends the first block
    rec = np.stack([3_000_000_000 + 10 * np.arange(n + 100), np.full(n + 100, 5)], axis=1).astype("<u4")
    rec[n - 1, 0] = 5  # DAT (8-byte records): a stray time ends the first block, down from 3e9
    for make, data in (
        (lambda: _core.Evt2Decoder(0, 0), words.view(np.uint8)),
        (lambda: _core.DatDecoder(304, 240, 14, 14), rec.view(np.uint8).reshape(-1)),
    ):
        results = []
        for chunk in (64 << 10, 4 << 20):
            dec = make()
            ev = np.concatenate([dec.decode(data[i : i + chunk]) for i in range(0, len(data), chunk)])
            results.append((ev, dec.counters.get("time_loops", 0)))
        (small, small_loops), (large, large_loops) = results
        assert np.array_equal(large, small) and small_loops == large_loops == 0


def test_evt21_damaged_time_high_is_no_wrap():
    w = []
    for k in range(50):
        high = 700 + k if k != 20 else (700 + k) ^ (1 << 27)  # one damaged TIME_HIGH
        w.append((0x8 << 60) | (high << 32))
        w.append((0x1 << 60) | (3 << 54) | (64 << 43) | (9 << 32) | 0x1)
    dec = _core.Evt21Decoder(640, 480)
    ev = dec.decode(np.array(w, "<u8").view(np.uint8))
    want = [((700 + k) << 6) + 3 for k in range(50)]
    assert ev["t"].tolist()[:20] == want[:20] and ev["t"].tolist()[21:] == want[21:]
    assert dec.counters.get("time_loops", 0) == 0 and dec.counters["t_backwards"] == 1


@pytest.mark.parametrize(
    ("t0", "bad"),
    [(0, 2**31 + 77), (0, 0xC000_0000), (0, 0xFFFF_FFFF), (3_000_000_000, 5), (3_000_000_000, 2**31 - 1)],
)
def test_dat_damaged_timestamp_is_no_wrap(tmp_path, t0, bad):
    t = t0 + np.arange(1000, dtype=np.int64) * 100
    rec = np.stack([t, np.arange(1000) % 8], axis=1).astype("<u4")
    rec[400, 0] = bad
    path = tmp_path / "a.dat"
    path.write_bytes(b"% Version 2\n% Width 8\n% Height 8\n\x00\x08" + rec.tobytes())
    with open_events(path) as r:
        ev = r.read_all()
        assert r.counters.get("time_loops", 0) == 0 and r.counters["t_backwards"] == 1
    assert np.array_equal(np.delete(ev["t"], 400), np.delete(t, 400))
    assert np.array_equal(ev, ref.dat(rec.tobytes(), 8, 8))


def test_dat_damaged_timestamp_at_the_two_thread_split(rng):
    n = 200_000
    t = (np.arange(n, dtype=np.int64) * 50 + 2**32 - 7_000_000) % 2**32  # wraps at record 140,000
    rec = np.stack([t, rng.integers(0, 304, n) | (rng.integers(0, 240, n) << 14)], axis=1).astype("<u4")
    for where in (n // 2 - 1, n // 2 - 2, n // 2):
        for bad in (0xC000_0000, 7):  # up and back, down and up
            damaged = rec.copy()
            damaged[where, 0] = bad
            data = damaged.view(np.uint8).reshape(-1)
            dec = _core.DatDecoder(304, 240, 14, 14)
            ev = dec.decode(data)
            assert dec.counters["time_loops"] == 1 and dec.counters["t_backwards"] == 1, (where, bad)
            assert np.array_equal(ev, ref.dat(data.tobytes(), 304, 240))


@pytest.mark.parametrize("terminator", [b"% end\n", b""])
def test_binary_data_starting_with_percent_is_not_header(tmp_path, terminator):
    """0x8025 (TIME_HIGH 0x025) stored little-endian begins with the byte '%'."""
    words = _evt3_words(0x8025, 0x0003, 0x2004)
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 8x8\n" + terminator + words.tobytes())
    with open_events(path) as r:
        ev = r.read_all()
        assert not r.counters
    assert ev.tolist() == [(4, 3, 0x025 << 12, 0)]


def _evt3_split_check(words: np.ndarray, width: int, height: int) -> None:
    data = words.astype("<u2").view(np.uint8)
    assert len(data) >= 1 << 20  # the two-thread path
    dec = _core.Evt3Decoder(width, height)
    ev = dec.decode(data)
    assert np.array_equal(ev, ref.evt3(data.tobytes(), width, height))
    serial = _core.Evt3Decoder(width, height)
    parts = [serial.decode(p) for p in np.array_split(data, 8)]  # blocks under 1 MiB: one thread
    assert np.array_equal(np.concatenate(parts), ev)
    assert serial.counters == dec.counters


@pytest.mark.shared_data
def test_evt3_two_thread_path_on_tiled_real_data_with_a_wrap():
    words = np.frombuffer(_data(shared_file("raw_evt3/expelliarmus_evt3_sample.raw")), "<u2")
    tiles = []
    for k in range(4):  # shift TIME_HIGH per tile: tile 1 wraps the 24-bit counter
        tile = words.copy()
        high = (tile >> 12) == 0x8
        tile[high] = 0x8000 | (((tile[high] & 0xFFF).astype(np.int64) + 1500 * k) & 0xFFF)
        tiles.append(tile)
    _evt3_split_check(np.concatenate(tiles), 1280, 720)


def test_evt3_two_thread_path_on_random_words(rng):
    n = 600_000
    kinds = rng.choice(
        [0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0xA, 0x1], n, p=[0.1, 0.4, 0.05, 0.1, 0.05, 0.1, 0.1, 0.05, 0.05]
    )
    payload = rng.integers(0, 1 << 12, n)
    words = (kinds << 12) | payload
    high = kinds == 0x8
    words[high] = 0x8000 | (np.cumsum(rng.integers(0, 3, int(high.sum()))) % 4096)  # slowly rising, wrapping
    _evt3_split_check(words, 1280, 720)


@pytest.mark.parametrize("cut", [0, 3, 8, 13])
def test_evt21_legacy_unaligned_and_truncated(tmp_path, cut):
    """Data starting at an odd offset (header length) and ending mid-word (found by fuzzing)."""
    words = np.array([(0x8 << 60) | (7 << 32), (0x1 << 60) | (64 << 43) | (9 << 32) | 0b101], "<u8")
    legacy = words.view("<u4").reshape(-1, 2)[:, ::-1].tobytes()
    path = tmp_path / "a.raw"
    path.write_bytes(b"% evt 2.1\n% geometry 640x480 \n% end\n" + legacy[: 16 - cut])
    with open_events(path) as r:
        ev = r.read_all()
        assert r.counters.get("truncated_bytes", 0) == (16 - cut) % 8
    assert ev["x"].tolist() == ([] if cut else [64, 66])


def test_evt3_writer_uses_vector_words_for_runs(tmp_path):
    """Bursts along a row (same t, y, p) are written as vectors, like a camera's output."""
    x = np.array([5, 6, 7, 9, 16, 17, 30, 36, 40, 41, 3, 3, 200], np.uint16)
    ev = make_events(x, [4] * 12 + [5], [1000] * 10 + [1000, 1001, 1001], [1] * 13)
    path = tmp_path / "v.raw"
    write_events(path, ev, 640, 480)
    words = np.frombuffer(ref.split_header(path.read_bytes()), "<u2")
    kinds = (words >> 12).tolist()
    assert 0x3 in kinds and 0x4 in kinds  # VECT_BASE_X and VECT_12 used
    assert np.array_equal(read_events(path), ev)
    assert np.array_equal(
        ref.evt3(path.read_bytes()[len(path.read_bytes()) - 2 * len(words) :], 640, 480), ev
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 2000))
def test_evt3_roundtrip_with_dense_bursts(tmp_path_factory, seed, n):
    rng = np.random.default_rng(seed)
    # many events share a timestamp and row: exercises vector runs, gaps, duplicates and breaks
    t = 500 + np.cumsum(rng.integers(0, 2, n))
    y = rng.integers(0, 3, n)
    x = np.sort(rng.integers(0, 120, n))
    ev = make_events(x, y, t, rng.integers(0, 2, n))
    path = tmp_path_factory.mktemp("v") / "a.raw"
    write_events(path, ev, 640, 480)
    assert np.array_equal(read_events(path), ev)
