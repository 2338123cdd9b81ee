"""Prophesee recordings: ``.raw`` (EVT 2.0, EVT 2.1, EVT 3.0) and ``.dat`` (CD), read and write.

Header: ASCII lines ``% key value`` (a ``% end`` line is optional); binary data starts at the
first line not starting with ``%``. Geometry comes, in order of preference, from the user,
``% format EVT3;width=W;height=H``, ``% geometry WxH``, ``% Width``/``% Height`` (DAT), or the
sensor the header names (``system_ID``, ``plugin_name``, ``generation``); otherwise the user
must pass ``sensor_size``.

Word layouts (bits, type in the top nibble), from Prophesee's format specifications:

* EVT 2.0 (uint32 LE): CD_OFF 0x0 / CD_ON 0x1 ``[27:22] t&63 [21:11] x [10:0] y``;
  TIME_HIGH 0x8 ``[27:0] t>>6``; EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF are skipped
  and counted (``other_words``). 34-bit time, wraps unwrapped.
* EVT 2.1 (64-bit; ``legacy`` byte order = high 32-bit half first, ``little`` = one LE uint64):
  EVT_NEG 0x0 / EVT_POS 0x1 ``[59:54] t&63 [53:43] x [42:32] y [31:0] mask`` (bit i: x+i).
* EVT 3.0 (uint16 LE): ADDR_Y 0x0, ADDR_X 0x2 (one event, pol bit 11), VECT_BASE_X 0x3,
  VECT_12 0x4, VECT_8 0x5 (mask bit i: base+i, base advances 12/8), TIME_LOW 0x6, TIME_HIGH 0x8;
  ``t = loops*2^24 + (high << 12) + low``; a changed TIME_HIGH resets low to 0; a backwards
  TIME_HIGH jump >= 2048 is a 24-bit wrap. Spurious TIME_LOW decreases are *not* wraps (the
  mistake that makes expelliarmus and aestream drift).

A recording written by evstream whose first timestamp lies beyond the first counter loop
(2^24 us for EVT 3.0, 2^34 us for EVT 2.0) stores the whole loops in the header line
``% evstream_time_offset_us N``; other readers see the timestamps modulo the loop, as they
would for a camera's own recording.

Events before the first TIME_HIGH are dropped (``before_time``), as in Prophesee's decoder;
timestamps are absolute (no time shifting). Events outside the sensor are dropped and counted
(``out_of_bounds``); a trailing partial word is counted in ``truncated_bytes``.

DAT: after the header, two bytes (event type, event size = 8), then records ``uint32 t``,
``uint32 data`` with ``x = data[13:0]``, ``y = data[27:14]``, ``p = data[28]`` (Version 2;
older files: ``x = data[8:0]``, ``y = data[16:9]``, ``p = data[17]``). 32-bit time unwrapped.
Files without a geometry line default to the 304x240 Gen1 ATIS (N-Cars, GEN1 automotive).
"""

from __future__ import annotations

import datetime
import re

import numpy as np

from ..kernels import _core
from ..kernels.events import copy_events
from .base import DecoderReader, EventWriter, read_header_lines
from .errors import EventFileError

# system_ID (decimal) -> geometry, from Metavision's device tables.
_SYSTEM_ID_GEOMETRY = {
    **dict.fromkeys((21, 23, 25, 29, 151, 153, 33, 161, 28, 34, 162, 35, 40, 41), (640, 480)),
    **dict.fromkeys((26, 30, 46, 31, 39, 48, 49, 50), (1280, 720)),
    64: (320, 320),
}
_PLUGIN_GEOMETRY = (
    ("genx320", (320, 320)),
    ("imx636", (1280, 720)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
)
_GENERATION_GEOMETRY = {
    "3.0": (640, 480),
    "3.1": (640, 480),
    "4.0": (1280, 720),
    "4.1": (1280, 720),
    "4.2": (1280, 720),
    "320": (320, 320),
}
_FORMAT_NAMES = {"EVT2": "evt2", "EVT21": "evt21", "EVT2.1": "evt21", "EVT3": "evt3", "EVT3.0": "evt3"}
_EVT_KEY = {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3"}
#: Header key (evstream's own) holding whole timestamp-counter loops removed from the words, in us.
TIME_OFFSET_KEY = "evstream_time_offset_us"


def parse_header(lines: list[str]) -> dict[str, str]:
    """``% key value`` lines to a dict (later keys win; ``% end`` is dropped)."""
    out: dict[str, str] = {}
    for line in lines:
        body = line[1:].strip()
        if not body or body == "end":
            continue
        key, _, value = body.partition(" ")
        out[key] = value.strip()
    return out


def raw_encoding(header: dict[str, str]) -> str | None:
    """The event encoding a ``.raw`` header names (``evt2``/``evt21``/``evt3``), or None."""
    if "format" in header:
        name = header["format"].split(";")[0].strip().upper()
        if name in _FORMAT_NAMES:
            return _FORMAT_NAMES[name]
    return _EVT_KEY.get(header.get("evt", "").strip())


def header_geometry(header: dict[str, str]) -> tuple[int, int] | None:
    """Sensor (width, height) stated or implied by a Prophesee header, or None."""
    opts = _format_options(header)
    try:
        if "width" in opts and "height" in opts:
            return int(opts["width"]), int(opts["height"])
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", header.get("geometry", ""))
        if m:
            return int(m.group(1)), int(m.group(2))
        if "Width" in header and "Height" in header:
            return int(header["Width"]), int(header["Height"])
    except ValueError:
        return None
    sid = header.get("system_ID", "").strip()
    if sid.isdigit() and int(sid) in _SYSTEM_ID_GEOMETRY:
        return _SYSTEM_ID_GEOMETRY[int(sid)]
    plugin = header.get("plugin_name", "").lower()
    for key, geom in _PLUGIN_GEOMETRY:
        if key in plugin:
            return geom
    gen = header.get("sensor_generation", header.get("generation", "")).strip()
    return _GENERATION_GEOMETRY.get(gen)


def _format_options(header: dict[str, str]) -> dict[str, str]:
    """The ``key=value`` options of a ``% format NAME;k=v;...`` line."""
    return dict(kv.split("=", 1) for kv in header.get("format", "").split(";")[1:] if "=" in kv)


def _evt21_legacy(header: dict[str, str]) -> bool:
    """Byte order of EVT 2.1 words: 'legacy' (high half first) unless the header says 'little'."""
    opts = _format_options(header)
    endianness = opts.get("endianness", header.get("endianness", "")).strip().lower()
    if endianness in ("legacy", "little"):
        return endianness == "legacy"
    sid = header.get("system_ID", "").strip()
    return not (sid.isdigit() and int(sid) >= 0x37)


class RawReader(DecoderReader):
    """Prophesee ``.raw`` reader (EVT 2.0, 2.1, 3.0), streaming, decoded in C++.

    Args:
        path: the recording.
        sensor_size: (width, height), for headers that name no sensor.
        encoding: ``"evt2"``, ``"evt21"`` or ``"evt3"`` when the header does not say.
    """

    def __init__(self, path, sensor_size=None, encoding: str | None = None):
        super().__init__(path, sensor_size)
        lines, self.data_offset = read_header_lines(self.path, head=self.head)
        self.header = parse_header(lines)
        enc = encoding or raw_encoding(self.header)
        if enc not in ("evt2", "evt21", "evt3"):
            raise EventFileError(
                self.path,
                "header names no event encoding (% evt / % format); pass encoding='evt2'|'evt21'|'evt3'",
            )
        self.format = enc
        self._legacy_words = enc == "evt21" and _evt21_legacy(self.header)
        geom = header_geometry(self.header) or (None, None)
        self._set_geometry(*geom)
        try:
            self.time_offset = int(self.header.get(TIME_OFFSET_KEY, "0"))
        except ValueError:
            raise EventFileError(self.path, f"header key {TIME_OFFSET_KEY} is not an integer") from None

    @property
    def bytes_per_event(self) -> float:
        # EVT 2.0: one word per event at most; EVT 3.0 and 2.1 vary (vectors), so a typical
        # figure is used and the buffer grows when a recording is denser.
        return {"evt2": 4.0, "evt3": 2.0, "evt21": 2.0}[self.format]

    def _make_decoder(self):
        if self.format == "evt3":
            return _core.Evt3Decoder(self.width, self.height)
        if self.format == "evt2":
            return _core.Evt2Decoder(self.width, self.height)
        return _core.Evt21Decoder(self.width, self.height)

    def _prepare(self, block):
        return _swap_halves(block) if self._legacy_words else block

    def _finish_events(self, events):
        if self.time_offset:
            events["t"] += self.time_offset
        return events


def _swap_halves(block: np.ndarray) -> np.ndarray:
    """Reorders legacy EVT 2.1 words (high 32-bit half first) to little-endian uint64 order.

    Blocks start on a word boundary (READ_BLOCK is a multiple of 8); a partial trailing word
    is left as it is and reported by the decoder as truncated.
    """
    whole = len(block) - len(block) % 8
    out = np.array(block, dtype=np.uint8)  # an owned, aligned copy (views of the head may not be)
    if whole:
        words = out[:whole].view("<u4").reshape(-1, 2)
        words[:] = words[:, ::-1].copy()
    return out


class DatReader(DecoderReader):
    """Prophesee ``.dat`` CD reader (8-byte records), decoded in C++."""

    format = "dat"

    def __init__(self, path, sensor_size=None):
        super().__init__(path, sensor_size)
        lines, offset = read_header_lines(self.path, head=self.head)
        self.header = parse_header(lines)
        version = self.header.get("Version", "2").strip()
        self.version = int(version) if version.isdigit() else 2
        if not lines and self.file_size == 0:  # an empty file: an empty recording
            self.event_type, self.data_offset = 0, 0
            self._set_geometry(304, 240)
            return
        if not lines:  # every .dat written by Prophesee's tools (and evstream) has one
            raise EventFileError(
                self.path,
                "no '%' header lines: not a Prophesee .dat, or its header is damaged (a .dat starts with "
                "'% ...' lines, then its event type and size bytes)",
                offset=0,
            )
        if self.file_size < offset + 2:
            raise EventFileError(self.path, "file ends inside the event type/size bytes", offset=offset)
        if offset + 2 <= len(self.head):
            ev_type, ev_size = self.head[offset : offset + 2]
        else:
            with open(self.path, "rb") as f:
                f.seek(offset)
                ev_type, ev_size = f.read(2)
        if ev_size != 8:
            raise EventFileError(
                self.path, f"event size {ev_size} is not 8 (not a CD .dat?)", offset=offset + 1
            )
        self.event_type = ev_type
        offset += 2
        self.data_offset = offset
        geom = header_geometry({k: v for k, v in self.header.items() if k in ("Width", "Height", "geometry")})
        self._set_geometry(*(geom or (304, 240)))

    bytes_per_event = 8.0

    def _make_decoder(self):
        bits = (14, 14) if self.version >= 2 else (9, 8)
        return _core.DatDecoder(self.width, self.height, *bits)


def _header_text(fmt_line: str, width: int, height: int) -> bytes:
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"% date {now}", fmt_line, f"% geometry {width}x{height}", "% integrator_name evstream", "% end"]
    return ("\n".join(lines) + "\n").encode("ascii")


class RawWriter(EventWriter):
    """Prophesee ``.raw`` writer, EVT 3.0 (default) or EVT 2.0, with a Metavision-style header."""

    max_coordinate = 2047

    def __init__(self, path, width, height, encoding: str = "evt3"):
        if encoding not in ("evt2", "evt3"):
            raise ValueError(f"encoding must be 'evt2' or 'evt3', got {encoding!r}")
        self.format = encoding
        super().__init__(path, width, height)
        self._encoder = _core.Evt3Encoder() if encoding == "evt3" else _core.Evt2Encoder()
        self._loop = 1 << (24 if encoding == "evt3" else 34)
        self._offset: int | None = None  # written in the header once the first event is known
        self._f = open(self.path, "wb")

    def _write_header(self, first_t: int) -> None:
        # The counters in the words start from the stream's first loop; a recording whose
        # first timestamp lies beyond it keeps the whole loops in a header key.
        self._offset = first_t - first_t % self._loop
        name, evt = ("EVT3", "3.0") if self.format == "evt3" else ("EVT2", "2.0")
        fmt = f"% evt {evt}\n% format {name};height={self.height};width={self.width}"
        if self._offset:
            fmt += f"\n% {TIME_OFFSET_KEY} {self._offset}"
        self._f.write(_header_text(fmt, self.width, self.height))

    def _write(self, events):
        if self._last_t is not None and int(events["t"][0]) < self._last_t:
            raise ValueError(
                f"{self.path}: timestamps must not decrease between chunks (event {self.events_written})"
            )
        if np.any(np.diff(events["t"]) < 0):
            i = int(np.flatnonzero(np.diff(events["t"]) < 0)[0]) + 1
            raise ValueError(
                f"{self.path}: timestamps decrease at event {self.events_written + i}; sort first"
            )
        if self._offset is None:
            self._write_header(int(events["t"][0]))
        if self._offset:
            events = copy_events(events)
            events["t"] -= self._offset
        self._f.write(self._encoder.encode(events).tobytes())

    def _finish(self):
        if self._offset is None:
            self._write_header(0)
        self._f.close()


class DatWriter(EventWriter):
    """Prophesee ``.dat`` (CD, Version 2) writer. Timestamps must fit in 32 bits (71 minutes)."""

    format = "dat"
    max_coordinate = (1 << 14) - 1

    def __init__(self, path, width, height):
        super().__init__(path, width, height)
        self._f = open(self.path, "wb")
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self._f.write(
            (
                "% Data file containing EventCD events.\n% Version 2\n"
                f"% Date {now}\n% Height {height}\n% Width {width}\n"
            ).encode("ascii")
        )
        self._f.write(bytes([12, 8]))  # event type EventCD, 8 bytes per event

    def _write(self, events):
        if int(events["t"].max()) >= 1 << 32:
            raise ValueError(f"{self.path}: .dat timestamps are 32-bit; t >= 2^32 us cannot be stored")
        rec = np.empty((len(events), 2), "<u4")
        rec[:, 0] = events["t"]
        rec[:, 1] = (
            events["x"].astype(np.uint32)
            | (events["y"].astype(np.uint32) << 14)
            | (events["p"].astype(np.uint32) << 28)
        )
        self._f.write(rec.tobytes())

    def _finish(self):
        self._f.close()
