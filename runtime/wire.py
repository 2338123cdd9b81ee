"""The ZeroMQ wire format for event streams (version 1).

Every message is two frames, ``[header, payload]``:

* ``header``: UTF-8 JSON object.

  ``{"proto": "evstream", "version": 1, "kind": "events", "stream": "<id>", "seq": 7,
  "first": 70000, "count": 10000, "width": 640, "height": 480, "itemsize": 16,
  "fields": [["x", "<u2", 0], ["y", "<u2", 2], ["t", "<i8", 8], ["p", "|u1", 4]]}``

  ``stream`` identifies one publisher session (a new value after a restart), ``seq`` numbers the
  messages of a session from 0, ``first`` is the stream index of the message's first event (the
  events sent before it), so a receiver counts lost events exactly. ``fields`` describes the
  payload's record layout: the four fields ``x``, ``y``, ``t`` (microseconds), ``p`` (0/1) as
  ``[name, numpy type, byte offset]``, integer types of 1, 2, 4 or 8 bytes, any byte order, in
  records of ``itemsize`` bytes. evstream sends its own 16-byte layout (above); a producer in
  another language may send any layout, e.g. packed 13-byte records.

  End of stream: ``{"proto": "evstream", "version": 1, "kind": "eos", "stream": ..., "seq": n,
  "first": total_events_sent}`` with an empty payload.

* ``payload``: ``count * itemsize`` bytes of records.

:func:`decode` validates everything it is given and raises :class:`WireError` (the caller counts
and skips the message). Events whose values do not fit the sensor or the event type (x, y outside
the sensor, p not 0 or 1, t beyond a signed 64-bit integer) are removed and counted in
``dropped_out_of_bounds``, never wrapped around. It allocates nothing before the payload's size
matches the header, and then at most 16 bytes per event plus a mask (the ZeroMQ socket's
``MAXMSGSIZE`` and :data:`MAX_EVENTS` bound both).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

import numpy as np

from ..kernels.events import EVENT_DTYPE

PROTO = "evstream"
VERSION = 1
#: Largest event count accepted in one message.
MAX_EVENTS = 1 << 24
_FIELDS = ("x", "y", "t", "p")
_TYPE_CODE = re.compile(r"[<>|=]?[iu][1248]")
_EVENT_FIELDS = [[name, EVENT_DTYPE.fields[name][0].str, EVENT_DTYPE.fields[name][1]] for name in _FIELDS]


class WireError(ValueError):
    """A malformed message (the text says what was wrong)."""


@dataclass(frozen=True)
class Message:
    """A decoded message. ``events`` is None for end of stream."""

    kind: str
    stream: str
    seq: int
    first: int
    width: int
    height: int
    events: np.ndarray | None
    dropped_out_of_bounds: int = 0


def new_stream_id() -> str:
    return uuid.uuid4().hex[:16]


def encode_events(events: np.ndarray, stream: str, seq: int, first: int, width: int, height: int) -> list:
    """The two frames of an events message (the payload is the array's memory, not a copy)."""
    header = {
        "proto": PROTO,
        "version": VERSION,
        "kind": "events",
        "stream": stream,
        "seq": seq,
        "first": first,
        "count": len(events),
        "width": width,
        "height": height,
        "itemsize": EVENT_DTYPE.itemsize,
        "fields": _EVENT_FIELDS,
    }
    return [json.dumps(header).encode(), np.ascontiguousarray(events).view(np.uint8)]


def encode_eos(stream: str, seq: int, total: int, width: int, height: int) -> list:
    header = {
        "proto": PROTO,
        "version": VERSION,
        "kind": "eos",
        "stream": stream,
        "seq": seq,
        "first": total,
        "count": 0,
        "width": width,
        "height": height,
    }
    return [json.dumps(header).encode(), b""]


def _int(header: dict, key: str, lo: int, hi: int) -> int:
    v = header.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise WireError(f"header field {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _layout(header: dict) -> np.dtype:
    itemsize = _int(header, "itemsize", 1, 1024)
    fields = header.get("fields")
    if not isinstance(fields, list) or len(fields) != 4:
        raise WireError("header 'fields' must list the four fields x, y, t, p")
    names, formats, offsets = [], [], []
    for f in fields:
        if not (isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and isinstance(f[1], str)):
            raise WireError(f"bad field description {f!r}")
        if not _TYPE_CODE.fullmatch(f[1]):  # checked before numpy parses it (numpy evaluates some strings)
            raise WireError(f"field {f[0]!r} must be an integer type such as '<u2', got {f[1]!r}")
        dt = np.dtype(f[1])
        off = f[2]
        if not isinstance(off, int) or isinstance(off, bool) or off < 0 or off + dt.itemsize > itemsize:
            raise WireError(f"field {f[0]!r} at offset {off!r} does not fit in {itemsize}-byte records")
        names.append(f[0])
        formats.append(dt)
        offsets.append(off)
    if sorted(names) != sorted(_FIELDS):
        raise WireError(f"fields must be x, y, t, p, got {names}")
    spans = sorted(
        (off, off + dt.itemsize, name) for name, dt, off in zip(names, formats, offsets, strict=True)
    )
    for (_, end, a), (start, _, b) in zip(spans[:-1], spans[1:], strict=True):
        if start < end:
            raise WireError(f"fields {a!r} and {b!r} overlap")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


def decode(frames: list) -> Message:
    """Validates and decodes one message (a list of frames: bytes or zmq.Frame)."""
    if len(frames) != 2:
        raise WireError(f"expected 2 frames (header, payload), got {len(frames)}")
    head, payload = (memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames)
    if len(head) > 1 << 16:
        raise WireError(f"header of {len(head)} bytes is too long")
    try:
        header = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("proto") != PROTO:
        raise WireError("header is not an evstream message (proto != 'evstream')")
    if header.get("version") != VERSION:
        raise WireError(f"unsupported wire version {header.get('version')!r} (this build reads {VERSION})")
    kind = header.get("kind")
    stream = header.get("stream")
    if not isinstance(stream, str) or not 0 < len(stream) <= 64:
        raise WireError("header field 'stream' must be a short string")
    seq = _int(header, "seq", 0, 2**62)
    first = _int(header, "first", 0, 2**62)
    width = _int(header, "width", 1, 65535)
    height = _int(header, "height", 1, 65535)
    if kind == "eos":
        return Message("eos", stream, seq, first, width, height, None)
    if kind != "events":
        raise WireError(f"unknown message kind {kind!r}")
    count = _int(header, "count", 0, MAX_EVENTS)
    layout = _layout(header)
    if len(payload) != count * layout.itemsize:
        raise WireError(f"payload has {len(payload)} bytes, header says {count} x {layout.itemsize}")
    raw = np.frombuffer(payload, dtype=layout, count=count)
    # Range checks on the values as sent, before any conversion could wrap them around.
    bad = _outside(raw["x"], width) | _outside(raw["y"], height) | _outside(raw["p"], 2)
    if layout == EVENT_DTYPE:
        events = raw
    else:
        t = raw["t"]
        if t.dtype.kind == "u" and t.dtype.itemsize == 8:
            bad |= t > np.iinfo(np.int64).max
        events = np.empty(count, EVENT_DTYPE)
        for name in _FIELDS:
            events[name] = raw[name]
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        events = events[~bad]
    return Message("events", stream, seq, first, width, height, events, n_bad)


def _outside(values: np.ndarray, limit: int) -> np.ndarray:
    """Values not in ``[0, limit)`` (compared in the values' own type: nothing wraps around)."""
    out = values >= limit
    if values.dtype.kind == "i":
        out |= values < 0
    return out


def check_address(url: str, verb: str) -> str:
    """Raises ValueError ("cannot `verb` URL: ...") for a ``tcp://`` address whose port is no number
    in 1..65535 (ZeroMQ takes the port modulo 65536 without a word); returns ``url``."""
    if url.startswith("tcp://"):
        port = url.rsplit(":", 1)[-1] if url.count(":") >= 2 else ""
        if not (port.isdigit() and 1 <= int(port) <= 65535) and not (port == "*" and verb == "bind"):
            also = " (or * for any)" if verb == "bind" else ""
            raise ValueError(f"cannot {verb} {url}: the port must be a number from 1 to 65535{also}")
    return url
