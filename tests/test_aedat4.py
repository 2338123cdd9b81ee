"""AEDAT 4.0: the real recordings, writer round trips checked by an independent parser, damage."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
import zstandard

from conftest import random_events, shared_file
from evstream.kernels.events import EVENT_DTYPE, make_events
from evstream.replay import EventFileError, aedat4, detect_format, open_events, read_events, write_events
from evstream.replay.aedat4 import Aedat4Reader, Aedat4Writer

MAGIC = b"#!AER-DAT4.0\r\n"
FILE_EVENT = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)


# --- An independent, minimal AEDAT4 parser (struct + the decompressors; no evstream code) --------


class Fb:
    """A size-prefixed FlatBuffer; positions are relative to the size prefix (alignment base)."""

    def __init__(self, data: bytes):
        self.d = data
        (size,) = struct.unpack_from("<I", data, 0)
        assert size == len(data) - 4, "size prefix must equal the bytes that follow"

    def u(self, fmt, pos):
        return struct.unpack_from(fmt, self.d, pos)[0]

    @property
    def ident(self):
        return self.d[8:12]

    @property
    def root(self):
        return 4 + self.u("<I", 4)

    def field(self, table, slot):
        vt = table - self.u("<i", table)
        assert vt % 2 == 0 and table % 4 == 0
        vt_size, tbl_size = self.u("<H", vt), self.u("<H", vt + 2)
        assert vt_size >= 4 and table + tbl_size <= len(self.d)
        if 4 + 2 * slot >= vt_size:
            return None
        off = self.u("<H", vt + 4 + 2 * slot)
        assert off < tbl_size
        return table + off if off else None

    def vector(self, table, slot):
        pos = self.field(table, slot)
        start = pos + self.u("<I", pos)
        assert start % 4 == 0
        return start + 4, self.u("<I", start)


def decompress(payload: bytes, compression: int) -> bytes:
    if compression in (1, 2):
        return lz4.frame.decompress(payload)
    if compression in (3, 4):
        return zstandard.ZstdDecompressor().decompress(payload)
    assert compression == 0
    return payload


def parse_aedat4(path):
    """Checks the structure of an AEDAT4 file; returns (compression, info root, packets, table)."""
    data = Path(path).read_bytes()
    assert data[:14] == MAGIC
    (n,) = struct.unpack_from("<I", data, 14)
    io = Fb(data[14 : 18 + n])
    assert io.ident == b"IOHE"
    comp_pos, table_pos, info_pos = (io.field(io.root, s) for s in range(3))
    compression = io.u("<i", comp_pos) if comp_pos else 0
    table_at = io.u("<q", table_pos) if table_pos else -1
    assert table_pos is None or table_pos % 8 == 0  # int64 aligned (from the size prefix)
    start = info_pos + io.u("<I", info_pos)
    length = io.u("<I", start)
    assert io.d[start + 4 + length] == 0  # FlatBuffers strings are NUL-terminated
    info = ET.fromstring(io.d[start + 4 : start + 4 + length].decode())
    packets = []
    pos = 18 + n
    end = table_at if table_at >= 0 else len(data)
    while pos < end:
        sid, size = struct.unpack_from("<ii", data, pos)
        assert size > 0 and pos + 8 + size <= end
        fb = Fb(decompress(data[pos + 8 : pos + 8 + size], compression))
        events = None
        if fb.ident == b"EVTS":
            first, count = fb.vector(fb.root, 0)
            assert first % 8 == 0  # Event structs hold an int64
            events = np.frombuffer(fb.d, FILE_EVENT, count=count, offset=first)
        packets.append((pos, sid, size, fb.ident, events))
        pos += 8 + size
    assert pos == end
    table = None
    if table_at >= 0:
        fb = Fb(decompress(data[table_at:], compression))
        assert fb.ident == b"FTAB"
        first, count = fb.vector(fb.root, 0)
        table = []
        for k in range(count):
            entry = first + 4 * k + fb.u("<I", first + 4 * k)
            vals = []
            for slot, fmt in enumerate(("<q", "<ii", "<q", "<q", "<q")):
                p = fb.field(entry, slot)
                assert p % struct.calcsize(fmt[1]) == 0
                vals.append(struct.unpack_from(fmt, fb.d, p) if slot == 1 else fb.u(fmt, p))
            table.append(vals)
    return compression, info, packets, table


def reference_events(path, stream=0):
    _, _, packets, _ = parse_aedat4(path)
    parts = [ev for _, sid, _, ident, ev in packets if ident == b"EVTS" and sid == stream]
    raw = np.concatenate(parts) if parts else np.empty(0, FILE_EVENT)
    return make_events(raw["x"], raw["y"], raw["t"], raw["p"])


def stream_sizes(info):
    out = {}
    for node in info.iter("node"):
        attrs = {a.get("key"): a.text for a in node.findall("attr")}
        if attrs.get("typeIdentifier"):
            sub = {a.get("key"): a.text for n in node.findall("node") for a in n.findall("attr")}
            out[int(node.get("name"))] = (attrs["typeIdentifier"], sub.get("sizeX"), sub.get("sizeY"))
    return out


# --- Real recordings ----------------------------------------------------------------------------

REAL = {
    "aedat4/tonic_sample.aedat4": dict(
        n=111954,
        size=(320, 240),
        t=(1605537493718345, 1605537494308262),
        skipped={"skipped_packets_imus": 59},
    ),
    "aedat4/aestream_davis.aedat4": dict(
        n=117667,
        size=(346, 260),
        t=(1633953690975950, 1633953691105949),
        skipped={"skipped_packets_imus": 13, "skipped_packets_frme": 3, "skipped_packets_trig": 11},
    ),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_matches_reference(name):
    path = shared_file(name)
    want = REAL[name]
    assert detect_format(path) == "aedat4"
    with open_events(path) as reader:
        assert (reader.width, reader.height) == want["size"]
        assert reader.compression == "lz4" and reader.stream_id == 0
        ev = reader.read_all()
        assert reader.counters == want["skipped"]
    assert ev.dtype == EVENT_DTYPE and len(ev) == want["n"]
    assert (int(ev["t"][0]), int(ev["t"][-1])) == want["t"]
    assert np.all(np.diff(ev["t"]) >= 0)
    assert int(ev["x"].max()) == want["size"][0] - 1 and int(ev["y"].max()) == want["size"][1] - 1
    ref = reference_events(path)
    for field in "xytp":
        np.testing.assert_array_equal(ev[field], ref[field])


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_table_and_chunking(name):
    path = shared_file(name)
    _, info, packets, table = parse_aedat4(path)
    # The file's own FileDataTable agrees with its packets: payload offsets, sizes, counts.
    assert [(e[0], e[1]) for e in table] == [(pos + 8, (sid, size)) for pos, sid, size, _, _ in packets]
    assert sum(e[2] for e in table if e[1][0] == 0) == REAL[name]["n"]
    assert stream_sizes(info)[0] == ("EVTS", *map(str, REAL[name]["size"]))
    reader = Aedat4Reader(path)
    assert list(reader.packets()) == [(pos, sid, size) for pos, sid, size, _, _ in packets]
    whole = reader.read_all()
    parts = list(reader.chunks(10_000))
    assert all(len(p) == 10_000 for p in parts[:-1])
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    windows = list(reader.time_windows(10_000))
    assert sum(len(w) for w in windows) == len(whole)


# --- Writer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "lz4_high", "zstd", "zstd_high", "none"])
def test_writer_round_trip_and_structure(tmp_path, rng, compression):
    width, height = 346, 260
    ev = random_events(rng, 5000, width, height, t0=1_633_953_690_975_950)
    path = tmp_path / "out.aedat4"
    with Aedat4Writer(path, width, height, compression=compression, packet_events=700) as w:
        w.write(ev[:10])
        w.write(ev[10:3000])
        w.write(ev[3000:])
    code, info, packets, table = parse_aedat4(path)
    assert code == aedat4.COMPRESSION_CODES[compression]
    assert stream_sizes(info) == {0: ("EVTS", str(width), str(height))}
    # one packet per write() call, big writes split into packets of at most 700 events
    counts = [len(p[4]) for p in packets]
    assert counts == [10] + [700] * 4 + [190] + [700] * 2 + [600]
    assert all(sid == 0 and ident == b"EVTS" for _, sid, _, ident, _ in packets)
    # the FileDataTable indexes every packet exactly
    expect, i = [], 0
    for (pos, sid, size, _, _), n in zip(packets, counts, strict=True):
        expect.append([pos + 8, (sid, size), n, int(ev["t"][i]), int(ev["t"][i + n - 1])])
        i += n
    assert table == expect
    ref = reference_events(path)
    np.testing.assert_array_equal(ref, ev)
    with Aedat4Reader(path) as r:
        assert (r.width, r.height, r.compression, r.counters) == (width, height, compression, {})
        got = r.read_all()
    for field in "xytp":
        np.testing.assert_array_equal(got[field], ev[field])


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_large_packets_round_trip(tmp_path, rng, compression):
    ev = random_events(rng, 50_000, 640, 480, t0=10**15)
    path = tmp_path / "big.aedat4"
    with Aedat4Writer(path, 640, 480, compression=compression) as w:  # default: 16384-event packets
        w.write(ev)
    assert [len(p[4]) for p in parse_aedat4(path)[2]] == [16384, 16384, 16384, 848]
    reader = Aedat4Reader(path)
    np.testing.assert_array_equal(reader.read_all(), ev)
    np.testing.assert_array_equal(np.concatenate(list(reader.blocks())), ev)
    assert reader.counters == {}


def test_writer_timestamps_exact_and_registry(tmp_path):
    t = np.array([0, 1, 2**40 + 3, 2**53 + 1, 2**62 + 5, 2**63 - 1], np.int64)
    ev = make_events(x=[0, 1, 2, 32767, 5, 6], y=[0, 32767, 1, 2, 3, 4], t=t, p=[0, 1, 1, 0, 1, 0])
    path = tmp_path / "big.aedat4"
    write_events(path, ev, 32768, 32768)  # format from the extension
    assert detect_format(path) == "aedat4"
    got = read_events(path)
    np.testing.assert_array_equal(got["t"], t)
    for field in "xyp":
        np.testing.assert_array_equal(got[field], ev[field])


def test_writer_empty_file(tmp_path):
    path = tmp_path / "empty.aedat4"
    Aedat4Writer(path, 64, 48).close()
    _, _, packets, table = parse_aedat4(path)
    assert packets == [] and table == []
    reader = Aedat4Reader(path)
    assert (reader.width, reader.height) == (64, 48) and len(reader.read_all()) == 0


def test_writer_rejects_bad_input(tmp_path, rng):
    with pytest.raises(ValueError, match="compression"):
        Aedat4Writer(tmp_path / "a.aedat4", 10, 10, compression="gzip")
    with pytest.raises(ValueError, match="32768"):
        Aedat4Writer(tmp_path / "a.aedat4", 40000, 10)
    ev = random_events(rng, 100, 10, 10)
    with Aedat4Writer(tmp_path / "a.aedat4", 10, 10) as w:
        w.write(ev[50:])
        with pytest.raises(ValueError, match="must not decrease"):
            w.write(ev[:50])
        with pytest.raises(ValueError, match="decrease at event"):
            w.write(ev[::-1].copy())
        bad = ev.copy()
        bad["x"][3] = 10
        with pytest.raises(ValueError, match="outside"):
            w.write(bad)


def test_dv_processing_reads_our_file(tmp_path, rng):
    dv = pytest.importorskip("dv_processing")
    ev = random_events(rng, 3000, 346, 260, t0=1_600_000_000_000_000)
    path = tmp_path / "dv.aedat4"
    write_events(path, ev, 346, 260)
    rec = dv.io.MonoCameraRecording(str(path))
    assert tuple(rec.getEventResolution()) == (346, 260)
    got = []
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        got.append(batch.numpy())
    got = np.concatenate(got)
    np.testing.assert_array_equal(got["timestamp"], ev["t"])
    np.testing.assert_array_equal(got["x"], ev["x"])
    np.testing.assert_array_equal(got["y"], ev["y"])
    np.testing.assert_array_equal(got["polarity"], ev["p"])


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH"])
def test_reads_files_written_by_dv_processing(tmp_path, rng, compression):
    dv = pytest.importorskip("dv_processing")
    ev = random_events(rng, 2500, 640, 480, t0=1_700_000_000_000_000)
    path = tmp_path / "dv.aedat4"
    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_test", (640, 480))
    config.compression = getattr(dv.CompressionType, compression)
    writer = dv.io.MonoCameraWriter(str(path), config)
    for part in (ev[:1000], ev[1000:]):
        store = dv.EventStore()
        for e in part:
            store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
        writer.writeEvents(store)
    del writer
    with Aedat4Reader(path) as r:
        assert (r.width, r.height, r.compression) == (640, 480, compression.lower())
        assert r.streams[r.stream_id]["source"] == "DVXplorer_test"
        got = r.read_all()
        assert r.counters == {}
    np.testing.assert_array_equal(got, ev)


# --- Hand-built files: streams, geometry, damage ------------------------------------------------


def raw_packet(t, x, y, p) -> bytes:
    """An uncompressed EVTS FlatBuffer with arbitrary (even invalid) field values."""
    n = len(t)
    structs = np.zeros(n, FILE_EVENT)
    structs["t"], structs["x"], structs["y"], structs["p"] = t, x, y, p
    head = struct.pack("<II4s3HxxiII", 28 + 16 * n, 16, b"EVTS", 6, 8, 4, 8, 4, n)
    return head + structs.tobytes()


def other_packet(ident: bytes) -> bytes:
    return struct.pack("<II4s3Hxxi", 20, 16, ident, 4, 4, 0, 8)  # a table with no fields


def xml_for(streams) -> str:
    nodes = "".join(
        f'<node name="{sid}"><attr key="typeIdentifier" type="string">{kind}</attr>'
        + (
            f'<node name="info"><attr key="sizeX" type="int">{size[0]}</attr>'
            f'<attr key="sizeY" type="int">{size[1]}</attr></node>'
            if size
            else ""
        )
        + "</node>"
        for sid, kind, size in streams
    )
    return f'<dv version="2.0"><node name="outInfo">{nodes}</node></dv>'


def build(path, packets, xml, compression="none", table=False, counts=None):
    """Writes an AEDAT4 file from (stream id, payload) pairs, compressing payloads as asked.

    With ``table``, a FileDataTable follows; ``counts`` overrides its per-packet event counts,
    and ``table=b"..."`` writes those bytes in its place."""
    code = aedat4.COMPRESSION_CODES[compression]
    header, table_field = aedat4.io_header(code, xml)
    out = bytearray(MAGIC + header)
    comp = Aedat4Writer._compressor(compression)
    entries = []
    for k, (sid, payload) in enumerate(packets):
        body = comp(payload)
        n = (len(payload) - 32) // 16 if counts is None else counts[k]
        entries.append((len(out) + 8, sid, len(body), n, 0, 0))
        out += struct.pack("<ii", sid, len(body)) + body
    if table:
        struct.pack_into("<q", out, len(MAGIC) + table_field, len(out))
        out += table if isinstance(table, bytes) else comp(aedat4.file_data_table(entries))
    path.write_bytes(bytes(out))
    return path


def test_multiple_event_streams(tmp_path):
    a = raw_packet([10, 20], [1, 2], [3, 4], [1, 0])
    b = raw_packet([15, 16, 17], [5, 6, 7], [1, 1, 1], [0, 0, 1])
    xml = xml_for([(0, "EVTS", (8, 8)), (5, "EVTS", (16, 16)), (2, "IMUS", None)])
    path = build(tmp_path / "two.aedat4", [(0, a), (5, b), (2, other_packet(b"IMUS")), (0, a)], xml, "lz4")
    r = Aedat4Reader(path)
    assert (r.stream_id, r.width, r.height) == (0, 8, 8)
    ev = r.read_all()
    assert ev["x"].tolist() == [1, 2, 1, 2] and ev["t"].tolist() == [10, 20, 10, 20]
    assert r.counters == {"skipped_packets_evts": 1, "skipped_events": 3, "skipped_packets_imus": 1}
    r5 = Aedat4Reader(path, stream_id=5)
    assert (r5.width, r5.height) == (16, 16)
    assert r5.read_all()["x"].tolist() == [5, 6, 7]
    assert r5.counters["skipped_events"] == 4
    with pytest.raises(EventFileError, match="not an event"):
        Aedat4Reader(path, stream_id=2)


def test_undeclared_streams_and_geometry(tmp_path):
    packets = [
        (3, other_packet(b"FRME")),
        (7, raw_packet([5], [1], [1], [1])),
        (9, raw_packet([6], [2], [2], [0])),
    ]
    path = build(tmp_path / "noxml.aedat4", packets, "", "zstd")
    with pytest.raises(EventFileError, match="sensor_size"):
        Aedat4Reader(path)
    r = Aedat4Reader(path, sensor_size=(4, 4))
    assert r.read_all()["t"].tolist() == [5]
    assert r.stream_id == 7
    assert r.counters == {"skipped_packets_frme": 1, "skipped_packets_evts": 1, "skipped_events": 1}


def test_out_of_bounds_and_polarity_are_counted(tmp_path):
    pkt = raw_packet([1, 2, 3, 4, 5], [0, 8, -1, 3, 7], [0, 0, 0, 8, 7], [1, 0, 1, 1, 2])
    path = build(tmp_path / "oob.aedat4", [(0, pkt)], xml_for([(0, "EVTS", (8, 8))]))
    r = Aedat4Reader(path)
    ev = r.read_all()
    assert ev["t"].tolist() == [1, 5] and ev["p"].tolist() == [1, 1]
    assert r.counters == {"out_of_bounds": 3, "bad_polarity": 1}


def test_data_table_and_eof_termination(tmp_path):
    pkt = raw_packet([1, 2], [0, 1], [0, 1], [0, 1])
    xml = xml_for([(0, "EVTS", (4, 4))])
    with_table = build(tmp_path / "t.aedat4", [(0, pkt)] * 3, xml, "lz4", table=True)
    without = build(tmp_path / "n.aedat4", [(0, pkt)] * 3, xml, "lz4")
    assert Aedat4Reader(with_table).data_table_position > 0
    assert Aedat4Reader(without).data_table_position == -1
    np.testing.assert_array_equal(read_events(with_table), read_events(without))


@pytest.mark.parametrize(
    "table, counts, hint",
    [
        (True, None, 6),  # exact
        (True, [1, 1, 1, 0], 3),  # too few: the rest is still read
        (True, [10, 10, 10, 0], 30),  # too many
        (True, [2**40, 2, 2, 0], None),  # implausible: ignored
        (b"garbage table", None, None),  # damaged: ignored
        (False, None, None),  # no table
    ],
)
def test_read_all_uses_the_data_table_only_as_a_hint(tmp_path, table, counts, hint):
    xml = xml_for([(0, "EVTS", (8, 8)), (1, "EVTS", (8, 8))])
    pkts = [(0, raw_packet([k, k + 1], [k, 9], [1, 1], [0, 1])) for k in range(3)]
    pkts.append((1, raw_packet([7], [7], [7], [1])))
    path = build(tmp_path / "h.aedat4", pkts, xml, "lz4", table=table, counts=counts)
    reader = Aedat4Reader(path)
    assert reader._table_event_count() == hint
    streamed = np.concatenate(list(reader.blocks()))
    counters = dict(reader.counters)
    whole = reader.read_all()
    np.testing.assert_array_equal(whole, streamed)
    assert whole["t"].tolist() == [0, 1, 2] and reader.counters == counters
    assert counters == {"out_of_bounds": 3, "skipped_packets_evts": 1, "skipped_events": 1}


def expect_damage(path, offset=None, match=None):
    with pytest.raises(EventFileError, match=match) as info:
        Aedat4Reader(path).read_all()
    if offset is not None:
        assert info.value.offset == offset
    return info.value


def test_header_damage(tmp_path):
    good = build(tmp_path / "g.aedat4", [(0, raw_packet([1], [1], [1], [1]))], xml_for([(0, "EVTS", (4, 4))]))
    data = good.read_bytes()
    bad = tmp_path / "bad.aedat4"
    bad.write_bytes(b"#!AER-DAT3.1\r\n" + data[14:])
    expect_damage(bad, 0, "not an AEDAT 4.0")
    bad.write_bytes(data[:9])
    expect_damage(bad, 9, "magic")
    bad.write_bytes(data[:16])
    expect_damage(bad, 14)
    bad.write_bytes(data[:14] + struct.pack("<I", 1 << 30) + data[18:])
    expect_damage(bad, 14, "exceeds")
    bad.write_bytes(data[:14] + struct.pack("<I", len(data)) + data[18:])
    expect_damage(bad, 14, "file ends")
    # vtable offset pointing outside the IOHeader
    hdr = bytearray(data)
    struct.pack_into("<i", hdr, 18 + 20, -5000)
    bad.write_bytes(bytes(hdr))
    expect_damage(bad, 18, "IOHeader")
    # unknown compression
    hdr = bytearray(data)
    struct.pack_into("<i", hdr, 14 + 28, 9)
    bad.write_bytes(bytes(hdr))
    expect_damage(bad, 18, "compression")
    # DTD in the info XML
    doctype = build(tmp_path / "x.aedat4", [], '<!DOCTYPE dv [<!ENTITY a "b">]><dv>&a;</dv>')
    expect_damage(doctype, 18, "DTD")
    malformed = build(tmp_path / "m.aedat4", [], "<dv><node></dv>")
    expect_damage(malformed, 18, "malformed")


def test_packet_damage_reports_offsets(tmp_path):
    xml = xml_for([(0, "EVTS", (4, 4))])
    pkt = raw_packet([1, 2], [1, 2], [1, 2], [0, 1])
    path = build(tmp_path / "p.aedat4", [(0, pkt), (0, pkt)], xml)
    data = path.read_bytes()
    first = Aedat4Reader(path).data_offset
    second = first + 8 + len(pkt)
    bad = tmp_path / "bad.aedat4"

    def variant(pos, fmt, value):
        out = bytearray(data)
        struct.pack_into(fmt, out, pos, value)
        bad.write_bytes(bytes(out))
        return bad

    expect_damage(variant(second + 4, "<i", -1), second, "impossible size")
    expect_damage(variant(second + 4, "<i", 1 << 29), second, "impossible size")
    expect_damage(variant(second + 4, "<i", len(pkt) + 9), second, "past the end")
    # size prefix larger than the payload; vector length past the buffer; bad root offset:
    # reported at the packet's payload, with the FlatBuffer position in the message
    expect_damage(variant(first + 8, "<I", 1000), first + 8, "size prefix")
    expect_damage(variant(first + 8 + 28, "<I", 3), first + 8, "vector of 3 x 16 bytes at FlatBuffer byte 28")
    expect_damage(variant(first + 8 + 4, "<I", 999), first + 8, "table at FlatBuffer byte 999")
    expect_damage(variant(first + 8 + 20, "<i", 30000), first + 8, "vtable")
    bad.write_bytes(data[: second + 5])
    expect_damage(bad, second, "truncated packet header")
    # DV's packet layout, cut before the vector length / with too long a vector
    dv_head = bytes.fromhex("10000000 45565453 0000 0600 0800 0400 06000000 04000000")
    short = build(tmp_path / "s.aedat4", [(0, struct.pack("<I", 24) + dv_head)], xml)
    expect_damage(short, first + 8, "vector length")
    long = build(
        tmp_path / "l.aedat4", [(0, struct.pack("<I", 44) + dv_head + struct.pack("<I", 2) + bytes(16))], xml
    )
    expect_damage(long, first + 8, "vector of 2 x 16 bytes")
    # a stream declared as events that holds something else
    path2 = build(tmp_path / "f.aedat4", [(0, pkt), (0, other_packet(b"FRME"))], xml)
    r = Aedat4Reader(path2)
    chunks = r._raw_chunks()
    with pytest.raises(EventFileError, match="FRME") as info:
        list(chunks)
    assert info.value.offset == r.data_offset + 8 + len(pkt) + 8


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_corrupt_and_oversized_compressed_packets(tmp_path, monkeypatch, compression):
    xml = xml_for([(0, "EVTS", (4, 4))])
    pkt = raw_packet(list(range(200)), [1] * 200, [2] * 200, [1] * 200)
    path = build(tmp_path / "c.aedat4", [(0, pkt)], xml, compression)
    data = bytearray(path.read_bytes())
    payload_at = Aedat4Reader(path).data_offset + 8
    data[payload_at : payload_at + 4] = b"JUNK"  # frame magic
    path.write_bytes(bytes(data))
    expect_damage(path, payload_at, "not an LZ4 frame" if compression == "lz4" else "not a Zstandard frame")
    # a frame cut short inside a well-formed packet
    comp = Aedat4Writer._compressor(compression)(pkt)
    cut = comp[: len(comp) // 2]
    xml_bytes = build(tmp_path / "h.aedat4", [], xml, compression).read_bytes()
    path.write_bytes(xml_bytes + struct.pack("<ii", 0, len(cut)) + cut)
    expect_damage(path, payload_at, "truncated")
    # decompressing past the limit, with and without the size in the frame header
    from evstream.replay import aedat4_format

    monkeypatch.setattr(aedat4, "MAX_PACKET", 1 << 20)
    monkeypatch.setattr(aedat4_format, "MAX_PACKET", 1 << 20)
    big = struct.pack("<I", (2 << 20) - 4) + bytes((2 << 20) - 4)
    build(path, [(0, big)], xml, compression)
    expect_damage(path, payload_at, "declares|limit")
    if compression == "lz4":
        frame = lz4.frame.compress(big, store_size=False)
    else:
        frame = zstandard.ZstdCompressor(write_content_size=False).compress(big)
    path.write_bytes(xml_bytes + struct.pack("<ii", 0, len(frame)) + frame)
    expect_damage(path, payload_at, "limit|above")


def test_lz4_packets_without_a_declared_size(rng):
    # A frame that compresses far better than the first output buffer guess grows it; bytes
    # after the frame are ignored; a damaged packet header is reported.
    ev = random_events(rng, 300, 64, 64, t0=10**12)
    packet = bytes(aedat4.event_packet(ev)) + bytes(1 << 20)
    frame = lz4.frame.compress(packet, store_size=False)
    assert lz4.frame.get_frame_info(frame)["content_size"] == 0 and 8 * len(frame) < len(packet)
    assert aedat4._decompress_lz4(frame + b"trailing", lz4.frame) == packet
    ident, data, off, n = aedat4._decode_packet(lambda payload: payload, packet)
    assert (ident, off, n) == ("EVTS", 32, len(ev))
    raw = np.frombuffer(data, np.uint64, count=2 * n, offset=off)
    np.testing.assert_array_equal(raw[0::2], ev["t"])
    with pytest.raises(aedat4._Damage, match="vector of 301"):
        aedat4._decode_packet(lambda payload: payload, packet[:28] + struct.pack("<I", 301) + packet[32:])
    with pytest.raises(aedat4._Damage, match="size prefix"):
        aedat4._decode_packet(lambda payload: payload, packet[: 32 + 16 * len(ev) - 1])


@pytest.fixture
def threaded(monkeypatch):
    """Decompresses every compressed file on the worker thread, a few packets per batch."""
    monkeypatch.setattr(aedat4, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(aedat4, "_BATCH_BYTES", 300)
    monkeypatch.setattr(aedat4, "_IN_FLIGHT", 2)
    monkeypatch.setattr(aedat4, "BATCH_EVENTS", 1)  # yield every packet at once


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_worker_thread_decompression(tmp_path, rng, threaded, compression):
    import threading

    ev = random_events(rng, 3000, 32, 24, t0=10**15)
    path = tmp_path / "w.aedat4"
    with Aedat4Writer(path, 32, 24, compression=compression, packet_events=100) as w:
        w.write(ev)
    np.testing.assert_array_equal(read_events(path), ev)
    reader = Aedat4Reader(path)
    np.testing.assert_array_equal(np.concatenate(list(reader.blocks())), ev)
    # stopping early shuts the worker down
    chunks = reader.chunks(500)
    assert len(next(chunks)) == 500
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("evstream-aedat4")]
    # damage is reported after the events before it, at the damaged packet
    data = bytearray(path.read_bytes())
    starts = [pos for pos, _, _ in reader.packets()]
    bad = tmp_path / "bad.aedat4"
    for at, offset, match in [
        (starts[17] + 8, starts[17] + 8, "frame"),
        (starts[23] + 4, starts[23], "size"),
    ]:
        mutated = bytearray(data)
        mutated[at : at + 4] = b"\xff\xff\xff\x7f"
        bad.write_bytes(bytes(mutated))
        got = []
        with pytest.raises(EventFileError, match=match) as info:
            for block in Aedat4Reader(bad).blocks():
                got.append(block)
        assert info.value.offset == offset
        n = 100 * starts.index(offset if offset in starts else offset - 8)
        np.testing.assert_array_equal(np.concatenate(got), ev[:n])
    assert not [t for t in threading.enumerate() if t.name.startswith("evstream-aedat4")]


def test_zstd_frame_declaring_a_huge_size(tmp_path):
    xml = xml_for([(0, "EVTS", (4, 4))])
    frame = bytearray(zstandard.ZstdCompressor().compress(raw_packet([1], [1], [1], [1])))
    assert frame[4] >> 6 == 0 and frame[4] & 0x20  # single segment, 1-byte content size
    # rewrite the frame header: 8-byte content size of 2^40
    frame = frame[:4] + bytes([(frame[4] & 0x3F) | 0xC0]) + struct.pack("<Q", 1 << 40) + frame[6:]
    path = tmp_path / "z.aedat4"
    header = build(tmp_path / "h.aedat4", [], xml, "zstd").read_bytes()
    path.write_bytes(header + struct.pack("<ii", 0, len(frame)) + bytes(frame))
    expect_damage(path, len(header) + 8, "declares")


def test_truncations_and_mutations_never_crash(tmp_path, rng):
    ev = random_events(rng, 600, 32, 24, t0=10**15)
    path = tmp_path / "src.aedat4"
    with Aedat4Writer(path, 32, 24, packet_events=100) as w:
        w.write(ev)
    data = path.read_bytes()
    table_at = Aedat4Reader(path).data_table_position
    probe = tmp_path / "probe.aedat4"
    for cut in list(range(0, 200, 7)) + list(range(200, len(data), 53)):
        probe.write_bytes(data[:cut])
        got = []
        try:
            for chunk in Aedat4Reader(probe)._raw_chunks():
                got.append(chunk)
        except EventFileError:
            pass
        got = np.concatenate(got) if got else ev[:0]
        np.testing.assert_array_equal(got, ev[: len(got)])  # what came out before the damage is right
        if cut >= table_at:
            assert len(got) == len(ev)  # the table is not needed to read the events
    for _ in range(150):
        mutated = bytearray(data)
        for pos in rng.integers(14, len(data), rng.integers(1, 4)):
            mutated[pos] = int(rng.integers(0, 256))
        probe.write_bytes(bytes(mutated))
        try:
            with open_events(probe) as r:
                out = r.read_all()
        except EventFileError:
            continue
        assert np.all(out["x"] < r.width) and np.all(out["y"] < r.height) and np.all(out["p"] <= 1)
