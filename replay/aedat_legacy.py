"""jAER / cAER AEDAT 1.0, 2.0, 3.0 and 3.1 recordings (read only).

Common header: ASCII lines starting with ``#`` and ending with ``\\r\\n`` (``\\n`` is accepted);
the first is ``#!AER-DATx.y`` (no such line means version 1.0).

**AEDAT 2.0** (jAER, :class:`Aedat2Reader`): after the header (which ends at the first line not
starting with ``#``), records of big-endian ``int32 address, int32 timestamp`` (µs). AEDAT 1.0
is the same with a 16-bit address (6-byte records). The address layout depends on the camera
(jAER's ``AEChip`` class, named by the ``# AEChip:`` header line):

* DVS128: bit 15 (or 31) set = external/sync event (skipped); ``x = 127 - addr[7:1]``,
  ``y = addr[14:8]``, polarity ``1 - addr[0]`` (jAER's extractor flips x and polarity: raw 0
  is ON).
* DAVIS240/346/640/208: bit 31 set = APS (frame) sample or, with bits 11..10 = 3, IMU sample
  (skipped); bit 10 set = external trigger (skipped); otherwise a DVS event with
  ``x = (width - 1) - addr[21:12]``, ``y = addr[30:22]``, polarity ``addr[11]`` (1 = ON).

Coordinates are jAER's (jAER wrote these files): x as its extractors flip it, and **y counted
from the bottom row** (jAER's origin is the lower-left corner); y is not flipped by default.
tonic's ``read_davis_346`` gives the same DAVIS numbers (its ``read_dvs_128`` does not follow
jAER: it swaps x and y and flips neither x nor polarity). Pass ``flip_y=True`` for image rows
counted from the top, the convention of AEDAT 3.1 and 4.0 recordings of the same camera.

Timestamps are 32-bit; they are read as unsigned and a backwards jump of more than 2^31 µs is
unwrapped as a 2^32 µs overflow (``time_loops``), unless the timestamp before it had jumped forward
by 2^31 µs or more; and a jump forward by 2^31 µs or more right after a wrap takes the wrap back.
Either way one timestamp was damaged, and time resumes from before it. Backwards steps in the
unwrapped times are counted (``t_backwards``). A trailing partial record is counted in ``truncated_bytes``.

**AEDAT 3.1** (cAER / libcaer, :class:`Aedat31Reader`): header lines up to ``#!END-HEADER``
(``#Source <id>: <device>`` names the cameras), then packets, all little-endian: a 28-byte header
``int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset, int32 eventTSOverflow,
int32 eventCapacity, int32 eventNumber, int32 eventValid`` followed by ``eventCapacity *
eventSize`` bytes. Polarity events (type 1) are 8 bytes: ``uint32 data`` (bit 0 valid, bit 1
polarity, bits 16..2 y, bits 31..17 x) and ``int32 timestamp``; the 64-bit time is
``(eventTSOverflow << 31) | timestamp``. The origin is the top-left pixel. Of each polarity
packet the first ``eventNumber`` events are read; events without the valid bit are dropped
(``invalid_events``). Other event types (special, frame, IMU, ...) and other sources' events are
skipped and counted (``skipped_packets_type<N>``, ``skipped_events``). AEDAT 3.0 files (no
end-of-header line, origin at the lower-left) are read the same way, y as stored.

Geometry: the user's ``sensor_size``, else the camera named in the header (DVS128 128x128,
DAVIS240 240x180, DAVIS346 346x260, DAVIS640 640x480, DAVIS208 208x192); otherwise
``sensor_size`` must be given. Events outside the sensor are dropped (``out_of_bounds``).
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np

from ..kernels.events import EVENT_DTYPE
from .base import READ_BLOCK, EventReader
from .errors import EventFileError

#: camera name -> (address layout, (width, height) or None)
CAMERAS = {
    "dvs128": ("dvs128", (128, 128)),
    "davis240": ("davis", (240, 180)),
    "davis346": ("davis", (346, 260)),
    "davis640": ("davis", (640, 480)),
    "davis208": ("davis", (208, 192)),
    "davis": ("davis", None),
}
# Substrings of a (lower-cased, alphanumeric-only) chip or device name, most specific first.
_CAMERA_PATTERNS = (
    ("davis346", "davis346"),
    ("davis240", "davis240"),
    ("davis640", "davis640"),
    ("davis208", "davis208"),
    ("dvs128", "dvs128"),
    ("tmpdiff128", "dvs128"),
    ("davis", "davis"),
)

#: Longest header read before giving up (jAER headers hold a preferences dump of ~100 KB).
MAX_HEADER = 16 << 20
#: Largest AEDAT 3.1 packet payload accepted.
MAX_PACKET = 256 << 20

_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def camera_from_name(name: str) -> str | None:
    """The camera key of :data:`CAMERAS` a chip/device name refers to, or None."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    for pattern, camera in _CAMERA_PATTERNS:
        if pattern in key:
            return camera
    return None


def read_aedat_header(path: str, until_end_marker: bool) -> tuple[list[str], int]:
    """Reads the ``#`` header lines; returns them (without line ends) and the data offset.

    With ``until_end_marker`` (AEDAT 3.1) the header must end with a ``#!END-HEADER`` line.
    Otherwise it ends at the first line that does not start with ``#`` or that holds binary
    bytes (so a first event whose address begins with 0x23 is not taken for a header line).
    The file is read in 64 KiB steps, at most :data:`MAX_HEADER` bytes.
    """
    lines: list[str] = []
    offset = 0
    head = bytearray()
    with open(path, "rb") as f:

        def more() -> bool:
            chunk = f.read(min(1 << 16, MAX_HEADER - len(head)))
            head.extend(chunk)
            return bool(chunk)

        while True:
            if offset >= len(head) and not more():
                break
            if head[offset] != 0x23:  # '#'
                break
            nl = head.find(b"\n", offset)
            while nl < 0:
                if not until_end_marker and _BINARY.search(head, offset):
                    break
                if not more():
                    break
                nl = head.find(b"\n", offset)
            if nl < 0:
                if until_end_marker:
                    raise EventFileError(
                        path, "header line is not terminated (truncated header?)", offset=offset
                    )
                break  # a '#' byte starting binary data
            raw = bytes(head[offset:nl]).rstrip(b"\r")
            if not until_end_marker and _BINARY.search(raw):
                break
            line = raw.decode("latin-1")
            lines.append(line)
            offset = nl + 1
            if until_end_marker and line.strip() == "#!END-HEADER":
                return lines, offset
    if until_end_marker:
        raise EventFileError(path, "header has no #!END-HEADER line", offset=offset)
    return lines, offset


def _version(lines: list[str]) -> str:
    if lines and lines[0].startswith("#!AER-DAT"):
        return lines[0][len("#!AER-DAT") :].strip()
    return "1.0"


class _TimeUnwrapper:
    """Unwraps 32-bit unsigned timestamps across blocks (2^32 µs overflows) by the rule of the C++
    decoders' ``wrap_step``: a step back by more than 2^31 µs is a wrap, unless the step before it
    jumped forward by 2^31 µs or more (a damaged value: time resumes from before it); a jump
    forward by 2^31 µs or more right after a wrap takes that wrap back. Steps back in the unwrapped
    times are counted (``t_backwards``)."""

    def __init__(self, reader: EventReader):
        self.reader = reader
        self.last: int | None = None  # the previous block's last raw timestamp
        self.last_t: int | None = None  # ... and its unwrapped time
        self.kind = "normal"  # the kind of the last step: "normal", "wrapped" or "jumped"
        self.offset = 0  # loops so far

    def __call__(self, t32: np.ndarray) -> np.ndarray:
        raw = t32.astype(np.int64)
        if not len(raw):
            return raw
        prev = np.empty_like(raw)
        prev[0] = raw[0] if self.last is None else self.last
        prev[1:] = raw[:-1]
        step = raw - prev
        change = np.zeros(len(raw), np.int64)  # the loop change at each timestamp
        kind, at = self.kind, -1  # the kind of the step at index `at` (-1: the previous block's last)
        for i in np.flatnonzero((step < -(1 << 31)) | (step >= 1 << 31)).tolist():  # rare
            if i != at + 1:
                kind = "normal"  # plain steps in between
            if step[i] < 0:
                change[i], kind = (0, "normal") if kind == "jumped" else (1, "wrapped")
            else:
                change[i], kind = (-1, "normal") if kind == "wrapped" else (0, "jumped")
            at = i
        self.kind = kind if at == len(raw) - 1 else "normal"
        t = raw + ((self.offset + np.cumsum(change)) << 32)
        back = int(np.count_nonzero(t[1:] < t[:-1])) + int(self.last_t is not None and t[0] < self.last_t)
        if back:
            self.reader._count("t_backwards", back)
        if change.any():
            self.reader._count("time_loops", int(change.sum()))
        self.offset += int(change.sum())
        self.last, self.last_t = int(raw[-1]), int(t[-1])
        return t


def _events(x, y, t, p, width: int, height: int, reader: EventReader) -> np.ndarray:
    """EVENT_DTYPE array from int arrays; events outside the sensor are dropped and counted."""
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    n_keep = int(np.count_nonzero(keep))
    if n_keep < len(x):
        reader._count("out_of_bounds", len(x) - n_keep)
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    out = np.empty(len(x), EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["t"] = t
    out["p"] = p
    return out


class Aedat2Reader(EventReader):
    """jAER AEDAT 2.0 (and 1.0) reader: DVS128 and DAVIS address layouts, decoded with numpy.

    Args:
        path: the recording (``.aedat``, ``.dat``).
        sensor_size: ``(width, height)``; overrides the camera's size (x is then flipped with
            this width, as jAER flips it with its chip's width).
        camera: ``"dvs128"``, ``"davis240"``, ``"davis346"``, ``"davis640"``, ``"davis208"`` or
            ``"davis"`` (then ``sensor_size`` is needed). Default: from the header's ``# AEChip:``
            or ``# HardwareInterface:`` line, else DVS128 if every address of the first records
            fits in 16 bits.
        flip_y: False (default) keeps jAER's y, counted from the bottom row; True counts rows
            from the top, ``y = height - 1 - y``.

    Attributes:
        version: ``"2.0"`` or ``"1.0"`` (16-bit addresses).
        camera: the camera key used; ``header``: the header lines.

    Counters: ``special_events`` (sync/trigger), ``aps_samples``, ``imu_samples``,
    ``out_of_bounds``, ``t_backwards``, ``time_loops``, ``truncated_bytes``.
    """

    format = "aedat2"

    def __init__(self, path, sensor_size=None, camera: str | None = None, flip_y: bool = False):
        super().__init__(path, sensor_size)
        self.header, self.data_offset = read_aedat_header(self.path, until_end_marker=False)
        self.version = _version(self.header)
        if not (self.version.startswith("2") or self.version.startswith("1")):
            raise EventFileError(self.path, f"AEDAT {self.version} is not AEDAT 1.0/2.0", offset=0)
        self.record_size = 6 if self.version.startswith("1") else 8
        self.flip_y = bool(flip_y)
        if camera is None:
            camera = self._camera_from_header() or self._camera_from_data()
        camera = camera.lower()
        if camera not in CAMERAS:
            raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
        if self.record_size == 6 and CAMERAS[camera][0] != "dvs128":
            raise EventFileError(self.path, f"AEDAT 1.0 has 16-bit addresses; a {camera} cannot be decoded")
        self.camera = camera
        layout, size = CAMERAS[camera]
        if size is None and sensor_size is None:
            raise EventFileError(
                self.path,
                "the header names a DAVIS camera but not which; pass camera='davis346' (etc.) or sensor_size",
            )
        self._layout = layout
        self._set_geometry(*(size or (None, None)))

    def _camera_from_header(self) -> str | None:
        for key in ("aechip", "hardwareinterface"):
            for line in self.header:
                body = line.lstrip("#").strip()
                if body.lower().startswith(key + ":"):
                    camera = camera_from_name(body.split(":", 1)[1])
                    if camera:
                        return camera
        return None

    def _camera_from_data(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            head = f.read(self.record_size * 4096)
        records = np.frombuffer(head, self._record_dtype(), count=len(head) // self.record_size)
        if self.record_size == 6 or not len(records) or int(records["a"].max()) < 1 << 16:
            return "dvs128"
        raise EventFileError(
            self.path,
            "cannot tell the camera: the header names no AEChip and addresses use more than 16 bits; "
            "pass camera='davis240' | 'davis346' | 'davis640' | 'davis208' (or 'davis' with sensor_size)",
        )

    def _record_dtype(self) -> np.dtype:
        return np.dtype([("a", ">u2" if self.record_size == 6 else ">u4"), ("t", ">u4")])

    def _raw_chunks(self):
        self.counters = {}
        dtype = self._record_dtype()
        block = self.record_size * (READ_BLOCK // self.record_size)
        unwrap = _TimeUnwrapper(self)
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            while True:
                data = f.read(block)
                if not data:
                    break
                whole = len(data) - len(data) % self.record_size
                if whole < len(data):
                    self._count("truncated_bytes", len(data) - whole)
                records = np.frombuffer(data, dtype, count=whole // self.record_size)
                if len(records):
                    yield self._decode(records["a"].astype(np.uint32), unwrap(records["t"]))

    def _decode(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self._layout == "dvs128":
            special = (a & 0x80008000) != 0
            self._count("special_events", int(np.count_nonzero(special)))
            if special.any():
                a, t = a[~special], t[~special]
            x = (self.width - 1) - ((a >> 1) & 0x7F).astype(np.int32)
            y = ((a >> 8) & 0x7F).astype(np.int32)
            p = 1 - (a & 1)
        else:
            other = (a & 0x80000000) != 0
            imu = (a & 0x80000C00) == 0x80000C00
            trigger = ~other & ((a & 0x400) != 0)
            self._count("aps_samples", int(np.count_nonzero(other)) - int(np.count_nonzero(imu)))
            self._count("imu_samples", int(np.count_nonzero(imu)))
            self._count("special_events", int(np.count_nonzero(trigger)))
            dvs = ~(other | trigger)
            if not dvs.all():
                a, t = a[dvs], t[dvs]
            x = (self.width - 1) - ((a >> 12) & 0x3FF).astype(np.int32)
            y = ((a >> 22) & 0x1FF).astype(np.int32)
            p = (a >> 11) & 1
        if self.flip_y:
            y = (self.height - 1) - y
        return _events(x, y, t, p, self.width, self.height, self)


#: eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber, eventValid
_PACKET_HEADER = struct.Struct("<hhiiiiii")
_POLARITY = np.dtype([("data", "<u4"), ("t", "<i4")])
POLARITY_EVENT = 1


class Aedat31Reader(EventReader):
    """cAER AEDAT 3.1 (and 3.0) reader: polarity events of one source, packet by packet.

    Args:
        path: the recording.
        sensor_size: ``(width, height)``; needed when the ``#Source`` device is not a known camera.
        source: the event source id to read; default the first ``#Source`` of the header (or
            the source of the first polarity packet).

    Attributes:
        version: ``"3.1"`` or ``"3.0"``; ``sources``: ``{id: device description}``;
        ``header``: the header lines.

    Counters: ``invalid_events``, ``skipped_packets_type<N>``, ``skipped_events`` (other
    sources), ``out_of_bounds``, ``truncated_packets`` (an incomplete last packet, whose whole
    events are still decoded) and ``truncated_bytes`` (a partial event or packet header).
    """

    format = "aedat3"

    def __init__(self, path, sensor_size=None, source: int | None = None):
        super().__init__(path, sensor_size)
        with open(self.path, "rb") as f:
            first = f.read(12)
        if not first.startswith(b"#!AER-DAT3"):
            raise EventFileError(self.path, f"not an AEDAT 3.x file (starts with {first!r})", offset=0)
        self.version = first[len(b"#!AER-DAT") :].decode("latin-1").strip()
        self.header, self.data_offset = read_aedat_header(self.path, until_end_marker=self.version != "3.0")
        self.sources: dict[int, str] = {}
        for line in self.header:
            m = re.match(r"#Source (\d+):\s*(.*)$", line)
            if m:
                self.sources[int(m.group(1))] = m.group(2).strip()
        if source is not None:
            self.source = int(source)
        else:
            self.source = min(self.sources) if self.sources else None
        size = None
        if self.source in self.sources:
            camera = camera_from_name(self.sources[self.source])
            size = CAMERAS[camera][1] if camera else None
        if size is None and sensor_size is None:
            device = self.sources.get(self.source, "no #Source line")
            raise EventFileError(self.path, f"unknown camera ({device!r}): pass sensor_size=(width, height)")
        self._set_geometry(*(size or (None, None)))

    def _raw_chunks(self):
        self.counters = {}
        source = self.source
        file_size = os.path.getsize(self.path)
        pos = self.data_offset
        with open(self.path, "rb", buffering=1 << 20) as f:
            f.seek(pos)
            while pos < file_size:
                raw = f.read(_PACKET_HEADER.size)
                if len(raw) < _PACKET_HEADER.size:
                    self._count("truncated_packets")
                    self._count("truncated_bytes", len(raw))
                    return
                header = _PACKET_HEADER.unpack(raw)
                kind, src, size, _, overflow, capacity, number, valid = header
                self._check_header(header, pos)
                payload = capacity * size
                body = pos + _PACKET_HEADER.size
                pos = body + payload
                is_ours = kind == POLARITY_EVENT and (source is None or src == source)
                if not is_ours:
                    if kind == POLARITY_EVENT:
                        self._count("skipped_events", valid)
                    self._count(f"skipped_packets_type{kind}")
                    if pos > file_size:
                        self._count("truncated_packets")
                        self._count("truncated_bytes", file_size - body)
                        return
                    f.seek(pos)
                    continue
                if source is None:
                    source = self.source = src
                data = f.read(payload)
                whole = len(data) // 8
                if len(data) < payload:
                    self._count("truncated_packets")
                    self._count("truncated_bytes", len(data) - 8 * whole)
                records = np.frombuffer(data, _POLARITY, count=min(whole, number))
                yield self._decode(records, overflow)
                if len(data) < payload:
                    return

    def _check_header(self, header: tuple, pos: int) -> None:
        kind, _, size, ts_offset, overflow, capacity, number, valid = header
        problem = None
        if kind < 0:
            problem = f"negative event type {kind}"
        elif size <= 0 or not 0 <= ts_offset <= size - 4:
            problem = f"event size {size} / timestamp offset {ts_offset} are impossible"
        elif capacity < 0 or not 0 <= number <= capacity or not 0 <= valid <= number:
            problem = f"event capacity {capacity}, number {number}, valid {valid} are inconsistent"
        elif capacity * size > MAX_PACKET:
            problem = f"packet of {capacity} x {size} bytes exceeds the {MAX_PACKET}-byte limit"
        elif overflow < 0:
            problem = f"negative timestamp overflow counter {overflow}"
        elif kind == POLARITY_EVENT and (size != 8 or ts_offset != 4):
            problem = f"polarity events of {size} bytes (timestamp at {ts_offset}); expected 8 (at 4)"
        if problem:
            raise EventFileError(self.path, f"corrupt packet header: {problem}", offset=pos)

    def _decode(self, records: np.ndarray, overflow: int) -> np.ndarray:
        d = records["data"]
        valid = (d & 1) != 0
        n_valid = int(np.count_nonzero(valid))
        if n_valid < len(d):
            self._count("invalid_events", len(d) - n_valid)
            records, d = records[valid], d[valid]
        t = (records["t"].astype(np.int64) & 0x7FFFFFFF) | (overflow << 31)
        x = ((d >> 17) & 0x7FFF).astype(np.int32)
        y = ((d >> 2) & 0x7FFF).astype(np.int32)
        return _events(x, y, t, (d >> 1) & 1, self.width, self.height, self)
