"""AEDAT 1.0 / 2.0 (jAER) and 3.0 / 3.1 (cAER): fixtures built by independent encoders that follow
the format documentation and jAER's extractors, decoded exactly; truncation and garbage."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import random_events
from evstream.kernels.events import make_events
from evstream.replay import EventFileError, aedat_legacy, detect_format, open_events
from evstream.replay.aedat_legacy import Aedat2Reader, Aedat31Reader

CRLF = "\r\n"


# --- AEDAT 2.0 encoder ------------------------------------------------------------------------------


def jaer_header(*extra: str, version: str = "2.0") -> bytes:
    lines = [
        f"#!AER-DAT{version}",
        "# This is a raw AE data file - do not edit",
        "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
        "# Timestamps tick is 1 us",
        "# created Thu Dec 03 14:47:00 CET 2015",
        *extra,
    ]
    return "".join(line + CRLF for line in lines).encode()


def dvs128_address(x, y, p):
    """jAER DVS128: x flipped (127 - x), y as is, raw polarity 0 = ON."""
    return (
        (np.asarray(y, np.uint32) << 8)
        | ((127 - np.asarray(x, np.uint32)) << 1)
        | (1 - np.asarray(p, np.uint32))
    )


def davis_address(x, y, p, width):
    """jAER DAVIS DVS event: y bits 30..22, x = width-1-x in bits 21..12, polarity bit 11."""
    x, y, p = (np.asarray(v, np.uint32) for v in (x, y, p))
    return (y << 22) | ((width - 1 - x) << 12) | (p << 11)


def records(addresses, timestamps, address_type=">u4") -> bytes:
    rec = np.empty(len(addresses), [("a", address_type), ("t", ">u4")])
    rec["a"] = np.asarray(addresses, np.uint64) & (0xFFFF if address_type == ">u2" else 0xFFFFFFFF)
    rec["t"] = np.asarray(timestamps, np.uint64) & 0xFFFFFFFF
    return rec.tobytes()


def read(path, **kwargs):
    reader = Aedat2Reader(path, **kwargs)
    return reader, reader.read_all()


def test_dvs128_exact(tmp_path, rng):
    ev = random_events(rng, 3000, 128, 128)
    addr = dvs128_address(ev["x"], ev["y"], ev["p"]).astype(np.uint64)
    t = ev["t"].astype(np.uint64)
    # external/sync events (bit 15) interleaved
    sync_at = [0, 17, 2999]
    addr = np.insert(addr, sync_at, [0x8000, 0x8000 | 5, 0x8000])
    t = np.insert(t, sync_at, [t[0], t[17], t[-1]])
    path = tmp_path / "dvs.aedat"
    path.write_bytes(jaer_header("# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128") + records(addr, t))
    assert detect_format(path) == "aedat2"
    reader, got = read(path)
    assert (reader.camera, reader.width, reader.height, reader.version) == ("dvs128", 128, 128, "2.0")
    np.testing.assert_array_equal(got, ev)
    assert reader.counters == {"special_events": 3}
    with open_events(path) as r:  # through the registry
        np.testing.assert_array_equal(r.read_all(), ev)


@pytest.mark.parametrize(
    "chip, size",
    [
        ("eu.seebetter.ini.chips.davis.Davis346B", (346, 260)),
        ("eu.seebetter.ini.chips.davis.DAVIS240C", (240, 180)),
        ("eu.seebetter.ini.chips.davis.Davis640", (640, 480)),
    ],
)
@pytest.mark.parametrize("flip_y", [False, True])
def test_davis_exact_with_aps_imu_and_triggers(tmp_path, rng, chip, size, flip_y):
    width, height = size
    ev = random_events(rng, 4000, width, height, t0=1000)
    addr = davis_address(ev["x"], ev["y"], ev["p"], width).astype(np.uint64)
    t = ev["t"].astype(np.uint64)
    aps = 0x80000000 | (5 << 22) | (7 << 12) | (1 << 10) | 513  # signal read, ADC 513
    imu = 0x80000C00 | (4 << 28) | (1234 << 12)  # gyro x sample
    trigger = (1 << 10) | 3  # rising edge
    extra_at = [0, 10, 10, 500, 3999]
    addr = np.insert(addr, extra_at, [aps, aps, imu, trigger, imu])
    t = np.insert(t, extra_at, t[extra_at])
    path = tmp_path / "davis.aedat"
    path.write_bytes(
        jaer_header("# HardwareInterface: DAVIS FX3 0002-INI", f"# AEChip: {chip}") + records(addr, t)
    )
    reader, got = read(path, flip_y=flip_y)
    assert (reader.width, reader.height) == size
    want = ev.copy()
    if flip_y:
        want["y"] = height - 1 - want["y"]
    np.testing.assert_array_equal(got, want)
    assert reader.counters == {"aps_samples": 2, "imu_samples": 2, "special_events": 1}


def test_camera_detection_and_overrides(tmp_path, rng):
    ev = random_events(rng, 200, 346, 260)
    data = records(davis_address(ev["x"], ev["y"], ev["p"], 346), ev["t"])
    path = tmp_path / "a.aedat"
    # only the hardware interface: a DAVIS, but which one?
    path.write_bytes(jaer_header("# HardwareInterface: DAVIS FX3 0002-INI") + data)
    with pytest.raises(EventFileError, match="camera"):
        Aedat2Reader(path)
    np.testing.assert_array_equal(read(path, camera="davis346")[1], ev)
    np.testing.assert_array_equal(read(path, camera="davis", sensor_size=(346, 260))[1], ev)
    with pytest.raises(ValueError, match="camera must be"):
        Aedat2Reader(path, camera="atis")
    # no chip line at all: addresses above 16 bits cannot be a DVS128
    path.write_bytes(jaer_header() + data)
    with pytest.raises(EventFileError, match="cannot tell the camera"):
        Aedat2Reader(path)
    small = random_events(rng, 50, 128, 128)
    path.write_bytes(jaer_header() + records(dvs128_address(small["x"], small["y"], small["p"]), small["t"]))
    reader, got = read(path)
    assert reader.camera == "dvs128"
    np.testing.assert_array_equal(got, small)
    # a smaller sensor_size than the camera: events outside are dropped and counted
    reader, got = read(path, sensor_size=(128, 64))
    assert len(got) == int(np.count_nonzero(small["y"] < 64))
    assert reader.counters["out_of_bounds"] == len(small) - len(got)


def test_timestamp_wraps_across_blocks(tmp_path, monkeypatch):
    # 32-bit wraps between records 2-3 and 6-7 (uint32 values 2^32-2 -> 1 and 2^31+7 -> 4);
    # 2^32+10 -> 2^32+8 is a small backwards step, kept as it is
    t64 = np.array(
        [
            2**31 - 5,
            2**31 + 3,
            2**32 - 2,
            2**32 + 1,
            2**32 + 10,
            2**32 + 8,
            2**32 + 2**31 + 7,
            2**33 + 4,
            2**33 + 9,
        ]
    )
    x = np.arange(9)
    ev = make_events(x=x, y=x, t=t64, p=x % 2)
    path = tmp_path / "wrap.aedat"
    path.write_bytes(jaer_header("# AEChip: DVS128") + records(dvs128_address(x, x, x % 2), t64))
    monkeypatch.setattr(aedat_legacy, "READ_BLOCK", 24)  # three records per read
    reader, got = read(path)
    np.testing.assert_array_equal(got, ev)
    assert reader.counters == {"time_loops": 2, "t_backwards": 1}


@pytest.mark.parametrize("block", [24, 4096])  # three records per read, or all at once
@pytest.mark.parametrize("bad", [2**31 + 7, 0xC000_0000, 3])
def test_damaged_timestamp_is_no_wrap(tmp_path, monkeypatch, block, bad):
    # One damaged timestamp (up and back, or down and up, by half the range or more) leaves no
    # 2^32 µs wrap behind; a genuine wrap later is still unwrapped.
    t64 = np.array([2**31 + 10 * k for k in range(6)] + [2**32 - 20 + 10 * k for k in range(6)])
    raw = t64 % 2**32
    raw[3] = bad
    x = np.arange(12)
    path = tmp_path / "bad.aedat"
    path.write_bytes(jaer_header("# AEChip: DVS128") + records(dvs128_address(x, x, x % 2), raw))
    monkeypatch.setattr(aedat_legacy, "READ_BLOCK", block)
    reader, got = read(path)
    assert np.array_equal(np.delete(got["t"], 3), np.delete(t64, 3))
    assert reader.counters == {"time_loops": 1, "t_backwards": 1}


def test_truncated_record_and_hash_first_byte(tmp_path):
    # The first event's address starts with 0x23 ('#'); it must not be taken for a header line.
    x, y, p = np.array([3, 4]), np.array([0x23 << 2, 7]), np.array([1, 0])
    addr = davis_address(x, y, p, 346)
    assert addr[0] >> 24 == 0x23
    data = jaer_header("# AEChip: eu.seebetter.ini.chips.davis.Davis346Red") + records(addr, [16, 20])
    path = tmp_path / "t.aedat"
    path.write_bytes(data + b"\x00\x01\x02\x03\x04")
    reader, got = read(path)
    assert reader.data_offset == len(data) - 16
    np.testing.assert_array_equal(got, make_events(x, y, [16, 20], p))
    assert reader.counters == {"truncated_bytes": 5}


def test_long_headers(tmp_path, rng):
    prefs = [f'# <entry key="DAVIS346.Bias{i}" value="{i * 7}"/>' for i in range(4000)]
    prefs.append("# " + "x" * 100_000)  # one line longer than a read step
    ev = random_events(rng, 100, 346, 260)
    path = tmp_path / "long.aedat"
    head = jaer_header(*prefs, "# AEChip: eu.seebetter.ini.chips.davis.Davis346B")
    path.write_bytes(head + records(davis_address(ev["x"], ev["y"], ev["p"], 346), ev["t"]))
    reader, got = read(path)
    assert reader.data_offset == len(head) > 200_000
    np.testing.assert_array_equal(got, ev)
    head31 = cAER_header("DVS128").replace(b"#!END-HEADER", "\r\n".join(prefs).encode() + b"\r\n#!END-HEADER")
    ev31 = random_events(rng, 100, 128, 128)
    path.write_bytes(head31 + polarity_packet(ev31))
    reader = Aedat31Reader(path)
    assert reader.data_offset == len(head31)
    np.testing.assert_array_equal(reader.read_all(), ev31)


def test_aedat1_16_bit_records(tmp_path, rng):
    ev = random_events(rng, 500, 128, 128)
    body = records(dvs128_address(ev["x"], ev["y"], ev["p"]), ev["t"], address_type=">u2")
    path = tmp_path / "old.dat"
    path.write_bytes(body)  # AEDAT 1.0 needs no header
    reader, got = read(path)
    assert (reader.version, reader.record_size, reader.camera) == ("1.0", 6, "dvs128")
    np.testing.assert_array_equal(got, ev)
    path.write_bytes(jaer_header(version="1.0") + body)
    np.testing.assert_array_equal(read(path)[1], ev)
    with pytest.raises(EventFileError, match="16-bit"):
        Aedat2Reader(path, camera="davis346")


def test_aedat2_garbage_never_crashes(tmp_path, rng):
    path = tmp_path / "g.aedat"
    for chip in ("DVS128", "eu.seebetter.ini.chips.davis.Davis346B"):
        for n in (0, 1, 7, 8, 1001, 4096):
            path.write_bytes(
                jaer_header(f"# AEChip: {chip}") + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            )
            reader, got = read(path)
            assert np.all(got["x"] < reader.width) and np.all(got["y"] < reader.height)
            assert np.all(got["p"] <= 1)
            assert reader.counters.get("truncated_bytes", 0) == n % 8


# --- AEDAT 3.1 encoder ------------------------------------------------------------------------------


def cAER_header(*sources: str, version: str = "3.1", end: bool = True) -> bytes:
    lines = [f"#!AER-DAT{version}", "#Format: RAW"]
    lines += [f"#Source {i + 1}: {name}" for i, name in enumerate(sources)]
    lines += ["#-Source 0: DVS128", "#Start-Time: 2017-03-07 12:50:48 (TZ-0800)"]
    if end:
        lines.append("#!END-HEADER")
    return "".join(line + CRLF for line in lines).encode()


def packet(kind, source, size, ts_offset, overflow, capacity, number, valid, body: bytes) -> bytes:
    return struct.pack("<hhiiiiii", kind, source, size, ts_offset, overflow, capacity, number, valid) + body


def polarity_packet(ev, source=1, overflow=0, invalid=(), slack=0) -> bytes:
    """A polarity packet (type 1); events at indices ``invalid`` lack the valid bit; ``slack``
    extra capacity is filled with junk that must be ignored."""
    n = len(ev)
    data = (
        (ev["x"].astype(np.uint32) << 17)
        | (ev["y"].astype(np.uint32) << 2)
        | (ev["p"].astype(np.uint32) << 1)
        | 1
    )
    data[list(invalid)] &= ~np.uint32(1)
    rec = np.empty(n + slack, [("d", "<u4"), ("t", "<i4")])
    rec["d"][:n] = data
    rec["t"][:n] = ev["t"] - (overflow << 31)
    rec["d"][n:] = 0xFFFFFFFF
    rec["t"][n:] = 7
    valid = n - len(invalid)
    return packet(1, source, 8, 4, overflow, n + slack, n, valid, rec.tobytes())


def special_packet(source=1) -> bytes:
    body = struct.pack("<ii", (1 << 1) | 1, 100) * 2  # two TIMESTAMP_WRAP-like special events
    return packet(0, source, 8, 4, 0, 2, 2, 2, body)


def imu_packet(source=1) -> bytes:
    return packet(3, source, 36, 4, 0, 1, 1, 1, bytes(36))


def test_aedat31_exact(tmp_path, rng):
    a = random_events(rng, 300, 346, 260, t0=100)
    b = random_events(rng, 200, 346, 260, t0=2**31 + 50)  # needs the overflow counter
    c = random_events(rng, 50, 346, 260)
    body = (
        special_packet()
        + polarity_packet(a, invalid=[0, 5, 299], slack=3)
        + imu_packet()
        + polarity_packet(c, source=2)
        + polarity_packet(b, overflow=1)
    )
    path = tmp_path / "x.aedat"
    path.write_bytes(cAER_header("DAVIS346B", "DVS128") + body)
    assert detect_format(path) == "aedat3"
    with open_events(path) as reader:
        assert (reader.width, reader.height, reader.version, reader.source) == (346, 260, "3.1", 1)
        assert reader.sources == {1: "DAVIS346B", 2: "DVS128"}
        got = reader.read_all()
        assert reader.counters == {
            "skipped_packets_type0": 1,
            "invalid_events": 3,
            "skipped_packets_type3": 1,
            "skipped_packets_type1": 1,
            "skipped_events": 50,
        }
    want = np.concatenate([np.delete(a, [0, 5, 299]), b])
    np.testing.assert_array_equal(got, want)
    # the other source, with its own geometry
    other = Aedat31Reader(path, source=2)
    assert (other.width, other.height) == (128, 128)
    got2 = other.read_all()
    keep = (c["x"] < 128) & (c["y"] < 128)
    np.testing.assert_array_equal(got2, c[keep])
    assert other.counters["out_of_bounds"] == int(np.count_nonzero(~keep))
    assert other.counters["skipped_events"] == 297 + 200


def test_aedat31_truncated_tail_is_counted(tmp_path, rng):
    a = random_events(rng, 40, 128, 128)
    b = random_events(rng, 30, 128, 128, t0=int(a["t"][-1]))
    full = cAER_header("DVS128") + polarity_packet(a) + polarity_packet(b)
    path = tmp_path / "t.aedat"
    path.write_bytes(full[: -8 * 10 - 3])  # b loses its last 10 events and 3 bytes of one more
    reader = Aedat31Reader(path)
    np.testing.assert_array_equal(reader.read_all(), np.concatenate([a, b[:19]]))
    assert reader.counters == {"truncated_packets": 1, "truncated_bytes": 5}
    cut = len(cAER_header("DVS128")) + len(polarity_packet(a)) + 11
    path.write_bytes(full[:cut])  # inside the second packet's header
    reader = Aedat31Reader(path)
    np.testing.assert_array_equal(reader.read_all(), a)
    assert reader.counters == {"truncated_packets": 1, "truncated_bytes": 11}
    path.write_bytes(cAER_header("DVS128") + imu_packet()[:40])  # inside a skipped packet
    reader = Aedat31Reader(path)
    assert len(reader.read_all()) == 0 and reader.counters["truncated_packets"] == 1


@pytest.mark.parametrize(
    "fields, match",
    [
        ((1, 1, 0, 4, 0, 1, 1, 1), "event size"),
        ((1, 1, 8, 4, 0, 2, 3, 1), "inconsistent"),
        ((1, 1, 8, 4, 0, 2, 1, 2), "inconsistent"),
        ((1, 1, 16, 4, 0, 1, 1, 1), "polarity events of 16 bytes"),
        ((2, 1, 1 << 20, 4, 0, 1 << 10, 1, 1), "limit"),
        ((1, 1, 8, 4, -3, 1, 1, 1), "overflow"),
        ((-1, 1, 8, 4, 0, 1, 1, 1), "negative event type"),
    ],
)
def test_aedat31_corrupt_packet_header(tmp_path, rng, fields, match):
    ev = random_events(rng, 10, 128, 128)
    good = polarity_packet(ev)
    head = cAER_header("DVS128") + good
    path = tmp_path / "c.aedat"
    path.write_bytes(head + packet(*fields, b"\x00" * 64))
    reader = Aedat31Reader(path)
    chunks = reader._raw_chunks()
    np.testing.assert_array_equal(next(chunks), ev)
    with pytest.raises(EventFileError, match=match) as info:
        next(chunks)
    assert info.value.offset == len(head)


def test_aedat31_header_problems(tmp_path, rng):
    ev = random_events(rng, 10, 100, 100)
    path = tmp_path / "h.aedat"
    path.write_bytes(cAER_header("DVS128", end=False) + polarity_packet(ev))
    with pytest.raises(EventFileError, match="END-HEADER|terminated"):
        Aedat31Reader(path)
    path.write_bytes(cAER_header("MysteryCam") + polarity_packet(ev))
    with pytest.raises(EventFileError, match="sensor_size"):
        Aedat31Reader(path)
    reader = Aedat31Reader(path, sensor_size=(100, 100))
    np.testing.assert_array_equal(reader.read_all(), ev)
    # AEDAT 3.0: no end-of-header line; y is read as stored
    path.write_bytes(cAER_header("DVS128", version="3.0", end=False) + polarity_packet(ev))
    reader = Aedat31Reader(path)
    assert reader.version == "3.0"
    np.testing.assert_array_equal(reader.read_all(), ev)
    path.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(EventFileError, match="not an AEDAT 3"):
        Aedat31Reader(path)


def test_aedat31_garbage_never_crashes(tmp_path, rng):
    path = tmp_path / "g.aedat"
    ev = random_events(rng, 100, 128, 128)
    valid = cAER_header("DVS128") + polarity_packet(ev) + special_packet() + polarity_packet(ev)
    for trial in range(200):
        if trial < 100:
            body = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
            data = cAER_header("DVS128") + body
        else:
            data = bytearray(valid)
            for pos in rng.integers(len(cAER_header("DVS128")), len(data), 3):
                data[pos] = int(rng.integers(0, 256))
            data = bytes(data[: int(rng.integers(len(cAER_header("DVS128")), len(data) + 1))])
        path.write_bytes(data)
        try:
            reader = Aedat31Reader(path)
            got = reader.read_all()
        except EventFileError:
            continue
        assert np.all(got["x"] < 128) and np.all(got["y"] < 128) and np.all(got["p"] <= 1)
