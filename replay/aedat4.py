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
from collections import deque

import numpy as np

from ..kernels.events import EVENT_DTYPE, concat_events
from .aedat4_format import (  # noqa: F401 - the format helpers are part of this module's API
    _BATCH_BYTES,
    _BATCH_PACKETS,
    _IN_FLIGHT,
    _PACKET_HEADER,
    _THREAD_MIN_BYTES,
    _U32,
    _XYP_MASK,
    BATCH_EVENTS,
    COMPRESSION_CODES,
    COMPRESSION_NAMES,
    MAGIC,
    MAX_IO_HEADER,
    MAX_PACKET,
    _Damage,
    _decode_batch,
    _decode_packet,
    _decompress_lz4,
    _decompress_zstd,
    _FlatBuffer,
    _gather,
    _packet_flatbuffer,
    event_packet,
    file_data_table,
    info_xml,
    io_header,
    parse_info_xml,
)
from .base import EventReader, EventWriter
from .errors import EventFileError


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
