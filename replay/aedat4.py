"""iniVation AEDAT 4.0 (``.aedat4``, written by DV / dv-processing): streaming reader and writer.

Layout (every integer little-endian):

1. Magic, 14 bytes: ``#!AER-DAT4.0\\r\\n``.
2. ``uint32 N`` then an N-byte FlatBuffer ``IOHeader`` (identifier ``IOHE``)::

       enum CompressionType : int32 { NONE = 0, LZ4 = 1, LZ4_HIGH = 2, ZSTD = 3, ZSTD_HIGH = 4 }
       table IOHeader { compression: CompressionType = NONE;   // slot 0
                        dataTablePosition: int64 = -1;         // slot 1, file offset of the FileDataTable
                        infoNode: string; }                    // slot 2, XML stream description

3. Packets until ``dataTablePosition`` (or the end of the file when it is -1): a header
   ``int32 streamId, int32 size`` and ``size`` bytes of payload. The payload is one LZ4 frame
   (LZ4, LZ4_HIGH), one Zstandard frame (ZSTD, ZSTD_HIGH) or raw bytes (NONE) and decompresses
   to a size-prefixed FlatBuffer whose 4-character identifier names the packet type: ``EVTS``
   polarity events, ``FRME`` frames, ``IMUS`` IMU samples, ``TRIG`` triggers, ...
4. Optionally, at ``dataTablePosition``, a ``FileDataTable`` (identifier ``FTAB``), compressed
   like the packets but without a packet header: one entry per packet with the payload's file
   offset, the packet header, the element count and the first/last timestamps.

An ``EVTS`` packet is ``table EventPacket { elements: [Event]; }`` where ``Event`` is a 16-byte
struct: ``int64 timestamp`` (µs, absolute Unix time) at 0, ``int16 x`` at 8, ``int16 y`` at 10,
``bool polarity`` (1 = ON) at 12, 3 bytes of padding. The origin is the top-left pixel.

The info XML (``<dv><node name="outInfo">``) has one ``<node name="<streamId>">`` per stream with
an attribute ``typeIdentifier`` (``EVTS``, ...) and a child ``<node name="info">`` holding the
``sizeX``/``sizeY`` of the sensor. The reader takes events from the first ``EVTS`` stream of the
XML (lowest id, or the one passed as ``stream_id``); packets of other streams are skipped and
counted (``skipped_packets_<type>``; events of other event streams also in ``skipped_events``).
Packets of streams the XML declares as non-event are skipped without being decompressed.

Damage raises :class:`EventFileError`: wrong magic, an IOHeader or packet that runs past the end
of the file (or into the data table), a size that is negative or absurd (more than 16 MiB for the
IOHeader, 256 MiB for a packet, compressed or decompressed), a corrupt or truncated compressed
frame, or a FlatBuffer whose offsets point outside its buffer (every offset is bounds-checked
before it is followed). The error's ``offset`` is the file offset of the magic, the IOHeader, the
packet header or the packet payload concerned; a position inside a (decompressed) FlatBuffer is
given in the message. Events decoded before the damage have already been yielded (up to the
last batch of :data:`BATCH_EVENTS`). Events outside the sensor are dropped and counted
(``out_of_bounds``). Only the first compressed frame of a packet is read (DV writes one); bytes
after it are ignored.

Decoding is vectorised: an ``Event`` struct becomes an ``EVENT_DTYPE`` record by swapping its two
8-byte halves (two numpy operations per packet). Each packet is decompressed in one call (in
files with more than 4 MiB of packets, in batches on a worker thread, a bounded number of
batches ahead, while this thread converts earlier packets); :meth:`read_all` sizes its output
from the FileDataTable when there is one (as a hint, checked).

The writer (:class:`Aedat4Writer`) produces what DV writes: LZ4 by default, one event stream
``0`` named ``events``, packets of at most 16384 events, and a FileDataTable; dv-processing
reads its files (checked in the tests when it is installed).
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from collections import deque
from xml.sax.saxutils import escape

import numpy as np

from ..kernels.events import EVENT_DTYPE, concat_events
from .base import EventReader, EventWriter
from .errors import EventFileError

MAGIC = b"#!AER-DAT4.0\r\n"

#: The IOHeader (and so the info XML) may be at most this long.
MAX_IO_HEADER = 16 << 20
#: A packet may be at most this long, compressed or decompressed.
MAX_PACKET = 256 << 20

COMPRESSION_NAMES = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}
COMPRESSION_CODES = {name: code for code, name in COMPRESSION_NAMES.items()}

#: The 16-byte ``Event`` struct of an ``EVTS`` packet.
AEDAT4_EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

# EVENT_DTYPE holds x, y in bytes 0-3 and p in byte 4 -- the layout of bytes 8-12 of the file's
# struct -- and t in bytes 8-15, so an event is converted by swapping the two 8-byte halves of
# the struct (``_RAW_PAIR`` fields ``a`` = t, ``b`` = x | y << 16 | p << 32 | padding) and
# clearing the padding bytes.
_XYP_MASK = np.uint64(0xFF_FFFF_FFFF)
_RAW_PAIR = np.dtype([("a", "<u8"), ("b", "<u8")])

_U16 = struct.Struct("<H").unpack_from
_VTABLE_HEAD = struct.Struct("<HH").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_PACKET_HEADER = struct.Struct("<ii")


_LZ4_MAGIC = b"\x04\x22\x4d\x18"
#: Smallest first output buffer when an LZ4 frame does not declare its size.
_CHUNK = 1 << 16
#: Compressed files with more packet data than this are decompressed on a worker thread.
_THREAD_MIN_BYTES = 4 << 20
#: They are decompressed in batches of this many payload bytes (or _BATCH_PACKETS packets), so
#: that threads hand over work rarely ...
_BATCH_BYTES = 1 << 17
_BATCH_PACKETS = 64
#: ... and at most this many batches are read ahead of the consumer (bounded memory).
_IN_FLIGHT = 4

#: Events are converted and yielded in batches of about this many: fewer numpy calls than one
#: batch per packet, and arrays small enough (128 KiB) for malloc to recycle without page faults.
BATCH_EVENTS = 1 << 13

# The first 24 bytes of EVTS packets as DV / dv-processing and this module's writer lay them out
# (size prefix excluded): root offset, "EVTS", vtable, table; the vector length follows. Such
# packets skip the general FlatBuffer walk (their vector still gets its bounds checked).
_EVTS_LAYOUTS = (
    bytes.fromhex("10000000 45565453 0000 0600 0800 0400 06000000 04000000"),  # DV
    bytes.fromhex("10000000 45565453 0600 0800 0400 0000 08000000 04000000"),  # evstream
)


class _Damage(Exception):
    """Internal: a structural problem inside one packet or header (message only, no offset)."""


class _FlatBuffer:
    """Bounds-checked reader for one FlatBuffer: tables, scalars, strings and vectors.

    ``buf[base:base + size]`` is the FlatBuffer (after its size prefix). Every offset is checked
    against ``size`` before it is followed; a bad one raises :class:`_Damage`.
    """

    __slots__ = ("buf", "base", "size")

    def __init__(self, buf, base: int, size: int):
        self.buf, self.base, self.size = buf, base, size

    def need(self, pos: int, n: int, what: str) -> None:
        if pos < 0 or n < 0 or pos + n > self.size:
            raise _Damage(f"{what} at FlatBuffer byte {pos} (+{n}) lies outside its {self.size} bytes")

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return _U32(self.buf, self.base + pos)[0]

    def identifier(self) -> bytes:
        self.need(0, 8, "root offset and identifier")
        return bytes(self.buf[self.base + 4 : self.base + 8])

    def root(self) -> int:
        return self.u32(0, "root offset")

    def field(self, table: int, slot: int) -> int | None:
        """Position of field ``slot`` of the table at ``table``, or None when it is absent."""
        self.need(table, 4, "table")
        vtable = table - _I32(self.buf, self.base + table)[0]
        self.need(vtable, 4, "vtable")
        vt_size, table_size = _VTABLE_HEAD(self.buf, self.base + vtable)
        if vt_size < 4 or vt_size % 2:
            raise _Damage(f"vtable at FlatBuffer byte {vtable} has an invalid size {vt_size}")
        self.need(vtable, vt_size, "vtable")
        self.need(table, table_size, "table")
        entry = 4 + 2 * slot
        if entry + 2 > vt_size:
            return None
        offset = _U16(self.buf, self.base + vtable + entry)[0]
        if offset == 0:
            return None
        if offset >= table_size:
            raise _Damage(f"field {slot} at table byte {offset} lies outside the {table_size}-byte table")
        return table + offset

    def scalar(self, table: int, slot: int, fmt: str, default):
        pos = self.field(table, slot)
        if pos is None:
            return default
        self.need(pos, struct.calcsize(fmt), f"field {slot}")
        return struct.unpack_from(fmt, self.buf, self.base + pos)[0]

    def vector(self, table: int, slot: int, item_size: int) -> tuple[int, int] | None:
        """(position of the first element, element count) of a vector field, or None if absent."""
        pos = self.field(table, slot)
        if pos is None:
            return None
        start = pos + self.u32(pos, f"field {slot} offset")
        count = self.u32(start, "vector length")
        self.need(start + 4, count * item_size, f"vector of {count} x {item_size} bytes")
        return start + 4, count

    def string(self, table: int, slot: int) -> bytes | None:
        vec = self.vector(table, slot, 1)
        if vec is None:
            return None
        start, n = vec
        return bytes(self.buf[self.base + start : self.base + start + n])


def parse_info_xml(text: str, path: str = "", offset: int | None = None) -> dict[int, dict]:
    """Streams declared by an AEDAT4 info XML: ``{stream id: {"type", "name", "size", "source"}}``.

    ``size`` is ``(sizeX, sizeY)`` or None. DTDs and entities are refused (DV never writes them).
    """
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise EventFileError(path, "info XML declares a DTD or entities; refusing to parse it", offset=offset)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise EventFileError(path, f"info XML is malformed ({e})", offset=offset) from None
    streams: dict[int, dict] = {}
    for node in root.iter("node"):
        name = node.get("name", "")
        if not name.isdigit():
            continue
        attrs = {a.get("key"): (a.text or "").strip() for a in node.findall("attr")}
        if "typeIdentifier" not in attrs:
            continue
        info = {}
        for child in node.findall("node"):
            if child.get("name") == "info":
                info = {a.get("key"): (a.text or "").strip() for a in child.findall("attr")}
        size = None
        try:
            size = (int(info["sizeX"]), int(info["sizeY"]))
        except (KeyError, ValueError):
            pass
        streams[int(name)] = {
            "type": attrs["typeIdentifier"],
            "name": attrs.get("originalOutputName", ""),
            "size": size,
            "source": info.get("source", ""),
        }
    return streams


def _decompress_lz4(payload, lz4_frame) -> bytes:
    """The decompressed bytes of the LZ4 frame at the start of ``payload`` (bytes after it are
    ignored), at most :data:`MAX_PACKET` of them.

    One call when the frame declares its size (checked against the limit first); otherwise an
    output buffer guessed from the payload size, grown (in more calls) up to the limit.
    """
    if bytes(payload[:4]) != _LZ4_MAGIC:
        raise _Damage("not an LZ4 frame")
    try:
        declared = lz4_frame.get_frame_info(payload)["content_size"]
    except RuntimeError as e:
        raise _Damage(f"corrupt or truncated LZ4 frame ({e})") from None
    if declared > MAX_PACKET:
        raise _Damage(f"LZ4 frame declares {declared} bytes, more than the {MAX_PACKET}-byte limit")
    step = declared + 1 if declared else max(_CHUNK, 4 * len(payload))
    dec = lz4_frame.LZ4FrameDecompressor()
    parts, total, data = [], 0, payload
    try:
        while not dec.eof:
            part = dec.decompress(data, max_length=min(step, MAX_PACKET + 1 - total))
            data = b""
            if not part and not dec.eof:
                raise _Damage("LZ4 frame is truncated")
            total += len(part)
            if total > MAX_PACKET:
                raise _Damage(f"LZ4 frame decompresses to more than the {MAX_PACKET}-byte limit")
            parts.append(part)
            step = max(step, total)
    except RuntimeError as e:
        raise _Damage(f"corrupt or truncated LZ4 frame ({e})") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _decompress_zstd(payload, zstandard, dctx) -> bytes:
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as e:
        raise _Damage(f"not a Zstandard frame ({e})") from None
    if declared > MAX_PACKET:
        raise _Damage(f"Zstandard frame declares {declared} bytes, more than the {MAX_PACKET}-byte limit")
    try:
        if declared >= 0:
            return dctx.decompress(payload)
        # No size in the frame header: try a modest output buffer, grow it up to the limit.
        limit = min(MAX_PACKET, max(1 << 20, 32 * len(payload)))
        while True:
            try:
                return dctx.decompress(payload, max_output_size=limit)
            except zstandard.ZstdError:
                if limit >= MAX_PACKET:
                    raise
                limit = min(MAX_PACKET, limit * 8)
    except zstandard.ZstdError as e:
        raise _Damage(
            f"corrupt or truncated Zstandard frame, or one above {MAX_PACKET} bytes ({e})"
        ) from None


def _packet_flatbuffer(data) -> _FlatBuffer:
    """The FlatBuffer of a decompressed packet, after checking its size prefix."""
    if len(data) > MAX_PACKET:
        raise _Damage(f"decompresses to {len(data)} bytes, more than the {MAX_PACKET}-byte limit")
    if len(data) < 8:
        raise _Damage(f"payload of {len(data)} bytes is too short for a FlatBuffer")
    (size,) = _U32(data, 0)
    if size > len(data) - 4:
        raise _Damage(f"FlatBuffer size prefix {size} exceeds the {len(data) - 4} bytes that follow it")
    return _FlatBuffer(data, 4, size)


def _decode_packet(decompress, payload) -> tuple[str, bytes | None, int, int]:
    """Decompresses and parses one packet: ``(identifier, data, byte offset of the first Event in
    data, event count)``; ``data`` is None for a packet that is not ``EVTS``. Runs on a worker
    thread for large files (it touches no reader state)."""
    data = decompress(payload)
    if len(data) >= 32 and data[4:28] in _EVTS_LAYOUTS:
        # DV's (or our) layout: the events follow the 32-byte header.
        size, n = _U32(data, 0)[0], _U32(data, 28)[0]
        if 28 + 16 * n > size:
            raise _Damage(f"vector of {n} x 16 bytes at FlatBuffer byte 28 lies outside its {size} bytes")
        if size > len(data) - 4:
            raise _Damage(f"FlatBuffer size prefix {size} exceeds the {len(data) - 4} bytes that follow it")
        return "EVTS", data, 32, n
    fb = _packet_flatbuffer(data)
    ident = fb.identifier().decode("latin-1")
    if ident != "EVTS":
        return ident, None, 0, 0
    start, n = fb.vector(fb.root(), 0, 16) or (0, 0)
    return ident, data, 4 + start, n


def _decode_batch(decompress, payloads) -> list:
    """:func:`_decode_packet` of each payload (None stays None), on a worker thread; stops at
    the first damaged packet, whose :class:`_Damage` ends the list."""
    out = []
    for payload in payloads:
        if payload is None:
            out.append(None)
            continue
        try:
            out.append(_decode_packet(decompress, payload))
        except _Damage as e:
            out.append(e)
            break
    return out


class Aedat4Reader(EventReader):
    """AEDAT 4.0 reader: streams the polarity events of one event stream, packet by packet.

    Args:
        path: the ``.aedat4`` recording.
        sensor_size: ``(width, height)`` in pixels, overriding the info XML's ``sizeX``/``sizeY``.
        stream_id: the event stream to read; default the first ``EVTS`` stream of the info XML
            (or, if the XML declares none, the stream of the first ``EVTS`` packet).

    Attributes:
        compression: ``"none"``, ``"lz4"``, ``"lz4_high"``, ``"zstd"`` or ``"zstd_high"``.
        data_offset: file offset of the first packet.
        data_table_position: file offset of the FileDataTable, or -1.
        info_xml: the IOHeader's XML text.
        streams: ``{stream id: {"type", "name", "size", "source"}}`` from the info XML.
        stream_id: the stream events are read from.

    Timestamps are the file's int64 microseconds (absolute Unix time in DV recordings), unchanged;
    ``x``/``y`` count columns/rows from the top-left pixel; ``p`` 1 = ON. Counters:
    ``skipped_packets_<type>`` (``imus``, ``frme``, ``trig``, ``evts`` of other streams, ...),
    ``skipped_events`` (events of other event streams), ``out_of_bounds``, ``bad_polarity``
    (a polarity byte other than 0/1, read as ON).
    """

    format = "aedat4"

    def __init__(self, path, sensor_size=None, stream_id: int | None = None):
        super().__init__(path, sensor_size)
        self.file_size = os.path.getsize(self.path)
        start = len(MAGIC) + 4
        with open(self.path, "rb") as f:
            head = f.read(start)
            if not head.startswith(MAGIC):
                if MAGIC.startswith(head):
                    raise EventFileError(self.path, "file ends inside the AEDAT 4.0 magic", offset=len(head))
                raise EventFileError(
                    self.path, f"not an AEDAT 4.0 file (starts with {head[:14]!r})", offset=0
                )
            if len(head) < start:
                raise EventFileError(self.path, "file ends inside the IOHeader size", offset=len(MAGIC))
            (n,) = _U32(head, len(MAGIC))
            if n > MAX_IO_HEADER:
                raise EventFileError(
                    self.path, f"IOHeader size {n} exceeds the {MAX_IO_HEADER}-byte limit", offset=len(MAGIC)
                )
            if start + n > self.file_size:
                raise EventFileError(
                    self.path,
                    f"IOHeader declares {n} bytes but the file ends at byte {self.file_size}",
                    offset=len(MAGIC),
                )
            header = f.read(n)
        fb = _FlatBuffer(header, 0, n)
        try:
            ident = fb.identifier()
            if ident != b"IOHE":
                raise _Damage(f"identifier is {ident!r}, expected b'IOHE'")
            root = fb.root()
            code = fb.scalar(root, 0, "<i", 0)
            self.data_table_position = fb.scalar(root, 1, "<q", -1)
            info = fb.string(root, 2) or b""
        except _Damage as e:
            raise EventFileError(self.path, f"IOHeader: {e}", offset=start) from None
        if code not in COMPRESSION_NAMES:
            raise EventFileError(self.path, f"IOHeader: unknown compression type {code}", offset=start)
        self.compression = COMPRESSION_NAMES[code]
        self.data_offset = start + n
        if 0 <= self.data_table_position < self.data_offset or self.data_table_position < -1:
            raise EventFileError(
                self.path,
                f"IOHeader: dataTablePosition {self.data_table_position} points before the first packet",
                offset=start,
            )
        self.info_xml = info.decode("utf-8", errors="replace").rstrip("\x00")
        self.streams = parse_info_xml(self.info_xml, self.path, start) if self.info_xml.strip() else {}
        event_streams = sorted(sid for sid, s in self.streams.items() if s["type"] == "EVTS")
        if stream_id is not None:
            if self.streams and stream_id not in event_streams:
                raise EventFileError(
                    self.path,
                    f"stream {stream_id} is not an event (EVTS) stream; event streams: {event_streams}",
                )
            self.stream_id = int(stream_id)
        else:
            self.stream_id = event_streams[0] if event_streams else None
        size = self.streams[self.stream_id]["size"] if self.stream_id in self.streams else None
        self._set_geometry(*(size or (None, None)))

    def _decompressor(self):
        """A function from a packet payload to its decompressed bytes."""
        if self.compression in ("lz4", "lz4_high"):
            import lz4.frame

            return lambda payload: _decompress_lz4(payload, lz4.frame)
        if self.compression in ("zstd", "zstd_high"):
            import zstandard

            dctx = zstandard.ZstdDecompressor()
            return lambda payload: _decompress_zstd(payload, zstandard, dctx)
        return lambda payload: payload

    def packets(self):
        """Yields ``(file offset of the packet header, stream id, payload size)`` without decoding."""
        for pos, sid, size, _ in self._packets(read=False):
            yield pos, sid, size

    def _packets(self, read=True, skip=()):
        """Yields (header offset, stream id, size, payload); ``skip`` streams get payload None, unread."""
        table = self.data_table_position
        end = table if table >= 0 else self.file_size
        pos = self.data_offset
        with open(self.path, "rb", buffering=1 << 20) as f:
            f.seek(pos)
            while pos < end:
                head = f.read(8)
                if len(head) < 8 or pos + 8 > end:
                    before = f"the data table at byte {table}" if table >= 0 else "the end of the file"
                    raise EventFileError(self.path, f"truncated packet header before {before}", offset=pos)
                sid, size = _PACKET_HEADER.unpack(head)
                if size < 0 or size > MAX_PACKET:
                    raise EventFileError(
                        self.path, f"packet of stream {sid} declares an impossible size {size}", offset=pos
                    )
                stop = pos + 8 + size
                if stop > end or stop > self.file_size:
                    limit = "the data table" if stop > end and table >= 0 else "the end of the file"
                    raise EventFileError(
                        self.path,
                        f"packet of stream {sid} declares {size} bytes, past {limit} at byte "
                        f"{min(end, self.file_size)} (truncated file or corrupt header)",
                        offset=pos,
                    )
                if read and sid not in skip:
                    payload = f.read(size)
                    if len(payload) < size:
                        raise EventFileError(self.path, "packet payload truncated", offset=pos + 8)
                else:
                    payload = None
                    f.seek(stop)
                yield pos, sid, size, payload
                pos = stop

    def _raw_chunks(self):
        pending: list[tuple[bytes, int, int]] = []
        have = 0
        for part in self._raw_parts():
            pending.append(part)
            have += part[2]
            if have >= BATCH_EVENTS:
                yield self._to_events(pending, have)
                pending, have = [], 0
        if pending:
            yield self._to_events(pending, have)

    def read_all(self) -> np.ndarray:
        """Reads every event into one array.

        When the FileDataTable says how many events the stream holds, the array is allocated
        once and each packet is converted into its place as soon as it is decompressed (the
        table is only a hint: events beyond it are still read, a damaged table is ignored).
        """
        hint = self._table_event_count()
        if not hint:
            parts = list(self._raw_parts())
            return self._to_events(parts, sum(n for _, _, n in parts))
        conv = _Converter(self, hint)
        rest: list[tuple[bytes, int, int]] = []
        have = 0
        for part in self._raw_parts():
            if rest or conv.filled + part[2] > hint:
                rest.append(part)
                have += part[2]
            else:
                conv.add(*part)
        head = conv.finish()
        return concat_events([head, self._to_events(rest, have)]) if rest else head

    def _table_event_count(self) -> int | None:
        """Events of the selected stream that the FileDataTable lists, or None if unknown/implausible."""
        table = self.data_table_position
        if table < 0 or self.stream_id is None or table >= self.file_size:
            return None
        with open(self.path, "rb") as f:
            f.seek(table)
            raw = f.read(min(self.file_size - table, MAX_PACKET))
        try:
            data = self._decompressor()(raw)
            fb = _packet_flatbuffer(data)
            if fb.identifier() != b"FTAB":
                return None
            vec = fb.vector(fb.root(), 0, 4)
            if vec is None:
                return 0
            first, n = vec
            u8 = np.frombuffer(data, np.uint8)  # FlatBuffer byte k is data[4 + k]
            slots = first + 4 * np.arange(n, dtype=np.int64)
            tables = slots + _gather(u8, 4 + slots, 4)
            vtables = tables - _gather(u8, 4 + tables, 4, signed=True)
            streams = np.empty(n, np.int64)
            counts = np.empty(n, np.int64)
            for vt in np.unique(vtables):  # entries share a few vtables
                rows = vtables == vt
                t0 = int(tables[rows][0])
                info, count = fb.field(t0, 1), fb.field(t0, 2)
                if info is None or count is None:
                    return None
                streams[rows] = _gather(u8, 4 + tables[rows] + (info - t0), 4, signed=True)
                counts[rows] = _gather(u8, 4 + tables[rows] + (count - t0), 8, signed=True)
        except _Damage:
            return None
        total = int(counts[streams == self.stream_id].sum())
        # Only a hint: refuse one that would mean over 8x compression of the whole file.
        return total if 0 <= total <= self.file_size // 2 else None

    def _raw_parts(self):
        """Yields the selected stream's events packet by packet, as ``(decompressed packet,
        byte offset of its first Event struct, event count)``."""
        self.counters = {}
        stream_id = self.stream_id
        # Streams the XML declares as something other than events are skipped unread.
        other = {
            sid: s["type"] for sid, s in self.streams.items() if s["type"] != "EVTS" and sid != stream_id
        }
        for pos, sid, decoded in self._decoded_packets(other):
            if decoded is None:
                self._count(f"skipped_packets_{other[sid].lower()}")
                continue
            ident, data, off, n = decoded
            if data is None:
                if sid == stream_id and sid in self.streams:
                    raise self._packet_error(
                        pos, sid, f"stream is declared as events (EVTS) but the packet holds {ident!r}"
                    )
                self._count(f"skipped_packets_{ident.lower()}")
                continue
            if stream_id is None:
                stream_id = self.stream_id = sid
            if sid != stream_id:
                self._count("skipped_packets_evts")
                self._count("skipped_events", n)
                continue
            if n:
                yield data, off, n

    def _packet_error(self, pos: int, sid: int, message) -> EventFileError:
        inner = "" if self.compression == "none" else " (in the decompressed payload)"
        return EventFileError(self.path, f"packet of stream {sid}{inner}: {message}", offset=pos + 8)

    def _decoded_packets(self, skip):
        """Yields ``(header offset, stream id, _decode_packet result or None for skipped streams)``
        in file order.

        In large compressed files, packets are decompressed on a worker thread, at most
        :data:`_IN_FLIGHT` ahead of the consumer (so memory stays bounded) while this thread
        converts earlier ones. Damage is raised in file order: a packet's events are yielded
        before the damage that follows them is reported.
        """
        decompress = self._decompressor()
        packets = self._packets(skip=skip)
        end = self.data_table_position if self.data_table_position >= 0 else self.file_size
        if self.compression == "none" or end - self.data_offset < _THREAD_MIN_BYTES:
            for pos, sid, _, payload in packets:
                if payload is None:
                    yield pos, sid, None
                    continue
                try:
                    decoded = _decode_packet(decompress, payload)
                except _Damage as e:
                    raise self._packet_error(pos, sid, e) from None
                yield pos, sid, decoded
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="evstream-aedat4")
        queue: deque = deque()  # (packets of a batch, its job); packets as (offset, stream id)
        try:
            failure = None
            more = True
            while True:
                while more and len(queue) < _IN_FLIGHT:
                    batch, payloads, size = [], [], 0
                    while size < _BATCH_BYTES and len(batch) < _BATCH_PACKETS:
                        try:
                            item = next(packets, None)
                        except EventFileError as e:  # reported after the packets before it
                            failure, item = e, None
                        if item is None:
                            more = False
                            break
                        pos, sid, n, payload = item
                        batch.append((pos, sid))
                        payloads.append(payload)
                        size += 64 if payload is None else n
                    if batch:
                        queue.append((batch, pool.submit(_decode_batch, decompress, payloads)))
                if not queue:
                    break
                batch, job = queue.popleft()
                for (pos, sid), decoded in zip(batch, job.result(), strict=False):
                    if isinstance(decoded, _Damage):
                        raise self._packet_error(pos, sid, decoded)
                    yield pos, sid, decoded
            if failure is not None:
                raise failure
        finally:
            for _, job in queue:
                job.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            packets.close()

    def _to_events(self, parts: list[tuple[bytes, int, int]], n: int) -> np.ndarray:
        """Raw Event structs (see :meth:`_raw_parts`) to checked EVENT_DTYPE."""
        conv = _Converter(self, n)
        for part in parts:
            conv.add(*part)
        return conv.finish()


def _gather(u8: np.ndarray, pos: np.ndarray, width: int, signed: bool = False) -> np.ndarray:
    """Little-endian integers of ``width`` (4 or 8) bytes at byte positions ``pos`` of ``u8``
    (bounds-checked), as int64."""
    if len(pos) and (int(pos.min()) < 0 or int(pos.max()) + width > len(u8)):
        raise _Damage("offset outside the buffer")
    raw = u8[pos[:, None] + np.arange(width)]  # (n, width) bytes, contiguous
    return raw.view(f"<{'i' if signed or width == 8 else 'u'}{width}").reshape(-1).astype(np.int64)


class _Converter:
    """Fills an EVENT_DTYPE array from raw Event structs and checks the value ranges.

    An event is converted by swapping the two 8-byte halves of the file's struct and clearing the
    padding. Ranges are checked every ~512 KiB, while the data is still in cache.
    """

    def __init__(self, reader: Aedat4Reader, n: int):
        self.reader = reader
        self.out = np.empty(n, EVENT_DTYPE)
        self.words = self.out.view(np.uint64).reshape(n, 2)
        self.filled = self.checked = 0
        self.top_x = self.top_y = self.top_p = 0

    def add(self, data, off: int, n: int) -> None:
        i, j = self.filled, self.filled + n
        src = np.frombuffer(data, np.uint64, count=2 * n, offset=off).reshape(n, 2)
        dst = self.words[i:j]
        np.bitwise_and(src[:, 1], _XYP_MASK, out=dst[:, 0])
        dst[:, 1] = src[:, 0]
        self.filled = j
        if j - self.checked >= 1 << 15:
            self._check()

    def _check(self) -> None:
        seg = self.out[self.checked : self.filled]
        if len(seg):
            self.top_x = max(self.top_x, int(seg["x"].max()))
            self.top_y = max(self.top_y, int(seg["y"].max()))
            self.top_p = max(self.top_p, int(seg["p"].max()))
        self.checked = self.filled

    def finish(self) -> np.ndarray:
        self._check()
        out, reader = self.out[: self.filled], self.reader
        if self.filled < len(self.out) // 2:
            out = out.copy()
        if self.top_p > 1:
            reader._count("bad_polarity", int(np.count_nonzero(out["p"] > 1)))
            out["p"] = out["p"] != 0
        # x/y are int16 in the file: negative values read as uint16 >= 32768 and fail this test.
        if self.top_x >= reader.width or self.top_y >= reader.height:
            keep = (out["x"] < reader.width) & (out["y"] < reader.height)
            reader._count("out_of_bounds", len(out) - int(np.count_nonzero(keep)))
            out = out[keep]
        return out


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def io_header(compression: int, info_xml: str) -> tuple[bytes, int]:
    """A size-prefixed IOHeader FlatBuffer with dataTablePosition -1.

    Returns the bytes and the offset (from their start) of the int64 dataTablePosition, which
    the writer patches when it closes. Offsets below are from the size prefix, which is where
    FlatBuffers alignment is measured from.
    """
    text = info_xml.encode("utf-8")
    total = _pad8(44 + 4 + len(text) + 1)
    buf = bytearray(total)
    struct.pack_into("<II4s", buf, 0, total - 4, 20, b"IOHE")  # size prefix, root table at fb 20
    struct.pack_into("<5H", buf, 12, 10, 20, 4, 8, 16)  # vtable: 3 fields, 20-byte table
    struct.pack_into("<iiqI", buf, 24, 12, compression, -1, 4)  # soffset to vtable; fields
    struct.pack_into("<I", buf, 44, len(text))  # the string (NUL and padding already zero)
    buf[48 : 48 + len(text)] = text
    return bytes(buf), 32


def event_packet(events: np.ndarray) -> np.ndarray:
    """A size-prefixed ``EVTS`` FlatBuffer (uint8 array) holding ``events`` (EVENT_DTYPE)."""
    n = len(events)
    buf = np.zeros(32 + 16 * n, np.uint8)
    struct.pack_into("<II4s3H", buf, 0, 28 + 16 * n, 16, b"EVTS", 6, 8, 4)
    struct.pack_into("<iII", buf, 20, 8, 4, n)  # table: soffset to vtable, offset to vector; length
    words = buf[32:].view(np.uint64).reshape(n, 2)
    src = np.ascontiguousarray(events).view(np.uint64).reshape(n, 2)
    words[:, 0] = src[:, 1]
    np.bitwise_and(src[:, 0], _XYP_MASK, out=words[:, 1])
    return buf


_FTAB_ENTRY = np.dtype(
    {
        "names": ["soffset", "byte_offset", "stream_id", "size", "count", "t_start", "t_end"],
        "formats": ["<i4", "<i8", "<i4", "<i4", "<i8", "<i8", "<i8"],
        "offsets": [0, 8, 16, 20, 24, 32, 40],
        "itemsize": 48,
    }
)


def file_data_table(entries: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """A size-prefixed ``FTAB`` FlatBuffer from ``(payload offset, stream id, size, count, t0, t1)``."""
    n = len(entries)
    first = _pad8(44 + 4 * n)
    buf = np.zeros(first + 48 * n, np.uint8)
    struct.pack_into("<II4s3H", buf, 0, len(buf) - 4, 28, b"FTAB", 6, 8, 4)  # root vtable at 12
    struct.pack_into("<7H", buf, 18, 14, 48, 8, 16, 24, 32, 40)  # entry vtable at 18
    struct.pack_into("<iII", buf, 32, 20, 4, n)  # root table at 32; vector at 40
    at = first + 48 * np.arange(n, dtype=np.int64)
    buf[44 : 44 + 4 * n].view("<u4")[:] = at - (44 + 4 * np.arange(n, dtype=np.int64))
    if n:
        table = buf[first:].view(_FTAB_ENTRY)
        table["soffset"] = at - 18
        cols = np.array(entries, dtype=np.int64).reshape(n, 6)
        for i, name in enumerate(("byte_offset", "stream_id", "size", "count", "t_start", "t_end")):
            table[name] = cols[:, i]
    return buf.tobytes()


def info_xml(width: int, height: int, compression: str, source: str = "evstream") -> str:
    """The info XML for one event stream (id 0, named ``events``) of a ``width`` x ``height`` sensor."""
    src = escape(source)
    comp = {"none": "NONE", "lz4": "LZ4", "lz4_high": "LZ4_HIGH", "zstd": "ZSTD", "zstd_high": "ZSTD_HIGH"}[
        compression
    ]
    base = "/mainloop/Recorder/outInfo/"
    return (
        '<dv version="2.0">\n'
        f'    <node name="outInfo" path="{base}">\n'
        f'        <node name="0" path="{base}0/">\n'
        f'            <attr key="compression" type="string">{comp}</attr>\n'
        '            <attr key="originalModuleName" type="string">evstream</attr>\n'
        '            <attr key="originalOutputName" type="string">events</attr>\n'
        '            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>\n'
        '            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
        f'            <node name="info" path="{base}0/info/">\n'
        f'                <attr key="sizeX" type="int">{int(width)}</attr>\n'
        f'                <attr key="sizeY" type="int">{int(height)}</attr>\n'
        f'                <attr key="source" type="string">{src}</attr>\n'
        '                <attr key="tsOffset" type="long">0</attr>\n'
        "            </node>\n"
        "        </node>\n"
        "    </node>\n"
        "</dv>\n"
    )


class Aedat4Writer(EventWriter):
    """AEDAT 4.0 writer: one event stream (id 0, ``events``), a FileDataTable on close.

    Each :meth:`write` call becomes one or more ``EVTS`` packets of at most ``packet_events``
    events. Timestamps (int64 µs) are stored unchanged and must not decrease (DV's readers
    assume time order). Coordinates are int16 in the format, so at most 32768 pixels a side.
    :meth:`close` appends the FileDataTable and sets ``dataTablePosition``; a file that is never
    closed still reads (its ``dataTablePosition`` stays -1).

    Args:
        path: the output file.
        width, height: sensor size in pixels (stored as ``sizeX``/``sizeY`` in the info XML).
        compression: ``"lz4"`` (default, as DV), ``"lz4_high"``, ``"zstd"``, ``"zstd_high"`` or ``"none"``.
        packet_events: largest packet, in events (default 16384, i.e. 256 KiB uncompressed: packets that
            stay in cache decode faster than bigger ones, and DV itself writes ~10000-event packets).
        source: camera name written to the info XML.
    """

    format = "aedat4"
    max_coordinate = 32767

    def __init__(
        self,
        path,
        width,
        height,
        compression: str = "lz4",
        packet_events: int = 1 << 14,
        source: str = "evstream",
    ):
        if compression not in COMPRESSION_CODES:
            raise ValueError(
                f"compression must be one of {', '.join(COMPRESSION_CODES)}, got {compression!r}"
            )
        if not 0 < packet_events <= MAX_PACKET // 16 - 8:
            raise ValueError(f"packet_events must be in 1..{MAX_PACKET // 16 - 8}, got {packet_events}")
        super().__init__(path, width, height)
        self.compression = compression
        self.packet_events = int(packet_events)
        self._compress = self._compressor(compression)
        self._entries: list[tuple[int, int, int, int, int, int]] = []
        header, self._table_field = io_header(
            COMPRESSION_CODES[compression], info_xml(width, height, compression, source)
        )
        self._f = open(self.path, "wb")
        self._f.write(MAGIC)
        self._f.write(header)
        self._table_field += len(MAGIC)
        self._pos = len(MAGIC) + len(header)

    @staticmethod
    def _compressor(name: str):
        if name.startswith("lz4"):
            import lz4.frame

            level = 9 if name == "lz4_high" else 0
            return lambda data: lz4.frame.compress(data, compression_level=level)
        if name.startswith("zstd"):
            import zstandard

            cctx = zstandard.ZstdCompressor(level=15 if name == "zstd_high" else 3)
            return cctx.compress
        return lambda data: data

    def _write(self, events):
        t = events["t"]
        if self._last_t is not None and int(t[0]) < self._last_t:
            raise ValueError(
                f"{self.path}: timestamps must not decrease between chunks (event {self.events_written})"
            )
        back = np.flatnonzero(t[1:] < t[:-1])
        if len(back):
            at = self.events_written + int(back[0]) + 1
            raise ValueError(f"{self.path}: timestamps decrease at event {at}; sort first")
        for i in range(0, len(events), self.packet_events):
            part = events[i : i + self.packet_events]
            payload = self._compress(event_packet(part))
            self._f.write(_PACKET_HEADER.pack(0, len(payload)))
            self._f.write(payload)
            self._entries.append(
                (self._pos + 8, 0, len(payload), len(part), int(part["t"][0]), int(part["t"][-1]))
            )
            self._pos += 8 + len(payload)

    def _finish(self):
        try:
            self._f.write(self._compress(file_data_table(self._entries)))
            self._f.seek(self._table_field)
            self._f.write(struct.pack("<q", self._pos))
        finally:
            self._f.close()
