"""AEDAT 4.0 building blocks: constants, a bounds-checked FlatBuffer reader, the info XML,
packet decompression and decoding, and the encoders the writer uses. See aedat4.py for the
format description."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import numpy as np

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


def _gather(u8: np.ndarray, pos: np.ndarray, width: int, signed: bool = False) -> np.ndarray:
    """Little-endian integers of ``width`` (4 or 8) bytes at byte positions ``pos`` of ``u8``
    (bounds-checked), as int64."""
    if len(pos) and (int(pos.min()) < 0 or int(pos.max()) + width > len(u8)):
        raise _Damage("offset outside the buffer")
    raw = u8[pos[:, None] + np.arange(width)]  # (n, width) bytes, contiguous
    return raw.view(f"<{'i' if signed or width == 8 else 'u'}{width}").reshape(-1).astype(np.int64)


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
