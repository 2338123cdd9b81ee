"""Slow, obvious decoders written straight from the format specifications: the test oracle for
the C++ decoders. One Python loop iteration per word; no cleverness."""

from __future__ import annotations

import numpy as np

from evstream.kernels.events import make_events


def split_header(data: bytes) -> bytes:
    """Drops leading '%' header lines."""
    i = 0
    while i < len(data) and data[i : i + 1] == b"%":
        i = data.index(b"\n", i) + 1
    return data[i:]


def _events(rows):
    if not rows:
        return make_events([], [], [], [])
    x, y, t, p = zip(*rows, strict=True)
    return make_events(x, y, t, p)


def evt3(data: bytes, width: int, height: int):
    words = np.frombuffer(data[: len(data) // 2 * 2], "<u2").tolist()
    rows = []
    high = None  # unwrapped time-high in us
    loops = 0
    t = 0
    y = 0
    base_x, base_p = 0, 0
    for w in words:
        kind, v = w >> 12, w & 0xFFF
        if kind == 0x8:
            new = loops + (v << 12)
            if high is not None and high - new >= 2048 << 12:
                loops += 1 << 24
                new += 1 << 24
            if new != high:
                t = new
            high = new
        elif kind == 0x6:
            if high is not None:
                t = high + v
        elif kind == 0x0:
            y = v & 0x7FF
        elif kind == 0x2:
            x = v & 0x7FF
            if high is not None and x < width and y < height:
                rows.append((x, y, t, v >> 11))
        elif kind == 0x3:
            base_x, base_p = v & 0x7FF, v >> 11
        elif kind in (0x4, 0x5):
            n = 12 if kind == 0x4 else 8
            for i in range(n):
                if v >> i & 1 and high is not None and base_x + i < width and y < height:
                    rows.append((base_x + i, y, t, base_p))
            base_x += n
    return _events(rows)


def wrap_step(raw: int, prev: int, last: str, half: int, strict: bool) -> tuple[int, str]:
    """The counter-wrap rule of the EVT 2.0 / 2.1 and DAT decoders, as plainly as possible: a step
    back by half the range or more (`strict`: more than half) is a wrap (+1 loop), unless the step
    before it jumped forward by half the range or more; a jump forward by half the range or more
    right after a wrap takes that wrap back (-1). Returns (loop change, this step's kind)."""
    d = raw - prev
    if d < -half or (d == -half and not strict):
        return (0, "normal") if last == "jumped" else (1, "wrapped")
    if d >= half:
        return (-1, "normal") if last == "wrapped" else (0, "jumped")
    return 0, "normal"


def evt2(data: bytes, width: int, height: int):
    words = np.frombuffer(data[: len(data) // 4 * 4], "<u4").tolist()
    rows = []
    raw_prev = None
    loops = 0
    last = "normal"
    for w in words:
        kind = w >> 28
        if kind == 0x8:
            raw = (w & 0x0FFFFFFF) << 6
            if raw_prev is not None:
                change, last = wrap_step(raw, raw_prev, last, 1 << 33, strict=False)
                loops += change
            raw_prev = raw
        elif kind in (0, 1) and raw_prev is not None:
            x, y = (w >> 11) & 0x7FF, w & 0x7FF
            if x < width and y < height:
                rows.append((x, y, (loops << 34) + raw_prev + ((w >> 22) & 0x3F), kind))
    return _events(rows)


def evt21_little(data: bytes, width: int, height: int):
    """EVT 2.1 with each 64-bit word stored as one little-endian uint64."""
    words = np.frombuffer(data[: len(data) // 8 * 8], "<u8").tolist()
    rows = []
    base = None
    for w in words:
        kind = w >> 60
        if kind == 0x8:
            base = ((w >> 32) & 0x0FFFFFFF) << 6
        elif kind in (0, 1) and base is not None:
            t = base + ((w >> 54) & 0x3F)
            x0, y = (w >> 43) & 0x7FF, (w >> 32) & 0x7FF
            for i in range(32):
                if w >> i & 1 and x0 + i < width and y < height:
                    rows.append((x0 + i, y, t, kind))
    return _events(rows)


def dat(data: bytes, width: int, height: int):
    rec = np.frombuffer(data[: len(data) // 8 * 8], "<u4").reshape(-1, 2).tolist()
    rows = []
    loops = 0
    prev = None
    last = "normal"
    for t, v in rec:
        if prev is not None:
            change, last = wrap_step(t, prev, last, 1 << 31, strict=True)
            loops += change
        prev = t
        x, y = v & 0x3FFF, (v >> 14) & 0x3FFF
        if x < width and y < height:
            rows.append((x, y, t + (loops << 32), (v >> 28) & 1))
    return _events(rows)


def atis_bin(data: bytes):
    rows = []
    offset = 0
    for i in range(0, len(data) - len(data) % 5, 5):
        b = data[i : i + 5]
        if b[1] == 240:
            offset += 1 << 13
            continue
        t = ((b[2] & 0x7F) << 16) | (b[3] << 8) | b[4]
        rows.append((b[0], b[1], t + offset, b[2] >> 7))
    return _events(rows)


def es_dvs(data: bytes):
    rows = []
    t = 0
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0xFF:
            t += 127
            i += 1
        elif b == 0xFE:
            i += 1
        else:
            if i + 5 > len(data):
                break
            t += b >> 1
            x = data[i + 1] | data[i + 2] << 8
            y = data[i + 3] | data[i + 4] << 8
            rows.append((x, y, t, b & 1))
            i += 5
    return _events(rows)
