"""Text event files: one event per line, ``t x y p`` (Event Camera Dataset ``events.txt`` style).

Format accepted by :class:`TextReader`:

* Fields separated by spaces, tabs or commas (CSV); ``\\r\\n`` line ends are fine. Exactly four
  fields per line: ``t x y p``. Blank lines are skipped.
* ``#`` starts a comment (whole line or the rest of a line). Comment lines before the data may state
  the geometry as ``width=W`` and ``height=H`` (what :class:`TextWriter` writes).
* Before the first event there may be one non-numeric header line (e.g. ``t,x,y,p``) and one line of
  two integers ``width height`` (the rpg_e2vid convention). Anything non-numeric later is an error.
* Time unit: if the first event's ``t`` contains ``.`` or an exponent, the file is in **seconds**
  (the Event Camera Dataset writes e.g. ``0.003811``; event-vision-library writes 9 decimals),
  otherwise integer **microseconds**. ``time_unit="s"`` / ``"us"`` overrides the guess. Seconds are
  converted to integer microseconds exactly from the decimal text (no float round trip): digits beyond
  the sixth decimal round to nearest, half up (``0.000779999`` -> 780 us). Exponent notation is
  parsed as float64 and rounded to the nearest microsecond.
* ``x`` and ``y`` are integers; ``p`` is an integer with values > 0 meaning ON (``p = 1``), so 0/1 and
  -1/+1 both work. Events outside the sensor are dropped and counted (``out_of_bounds``).

Geometry: the user's ``sensor_size``, else ``width=``/``height=`` comments or a ``width height``
line, else the maximum coordinate + 1 found by a first pass over the file (a lower bound of the
real sensor; ``geometry_source`` says which rule applied). The Event Camera Dataset's
``events.txt`` carries no size (its DAVIS240C is 240x180; pass ``sensor_size=(240, 180)``).

Parsing is vectorised: the file is read in blocks of whole lines, checked and tokenised with numpy
byte operations and converted column-wise; a bad line raises :class:`EventFileError` with its line
number and byte offset.

:class:`TextWriter` writes ``# width=W height=H`` and a column comment, then ``t x y p`` lines with
``t`` in seconds with exactly six decimals (``12.000345``), formatted from the integer microseconds
(no floats), so reading back is exact. ``time_unit="us"`` writes integer microseconds instead.
"""

from __future__ import annotations

import re

import numpy as np

from .base import READ_BLOCK, EventReader, EventWriter
from .errors import EventFileError

_MAX_LINE = 1 << 20
_MAX_FIELD = 40
_SEPARATORS = bytes.maketrans(b",\t\r", b"   ")
_ALLOWED = np.zeros(256, bool)
_ALLOWED[list(b"0123456789.eE+- \n")] = True
_WIDTH_RE = re.compile(r"\bwidth\s*[=:]\s*(\d+)", re.IGNORECASE)
_HEIGHT_RE = re.compile(r"\bheight\s*[=:]\s*(\d+)", re.IGNORECASE)
_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _blank_comment(line: bytes) -> bytes:
    """Replaces a ``#`` comment with spaces (keeping byte offsets)."""
    i = line.find(b"#")
    return line if i < 0 else line[:i] + b" " * (len(line) - i)


class TextReader(EventReader):
    """Text ``t x y p`` reader (spaces or commas; ``#`` comments; seconds or microseconds).

    Args:
        path: the recording.
        sensor_size: (width, height) in pixels; default from the file's comments / size line, else
            max coordinate + 1.
        time_unit: ``"s"`` or ``"us"``; default guessed from the first event's ``t`` (``.``/``e`` ->
            seconds).

    Attributes:
        time_unit: the unit in use.
        geometry_source: ``"user"``, ``"comment"``, ``"size-line"`` or ``"max+1"``.
        data_offset, data_line: byte offset and 1-based line number of the first data line.
    """

    format = "txt"

    def __init__(self, path, sensor_size=None, time_unit: str | None = None):
        super().__init__(path, sensor_size)
        if time_unit not in (None, "s", "us"):
            raise ValueError(f"time_unit must be 's' or 'us', got {time_unit!r}")
        geometry = self._prescan(time_unit)
        if sensor_size is not None:
            self.geometry_source = "user"
        elif geometry is None:
            self.geometry_source = "max+1"
            geometry = self._scan_extent()
        self._set_geometry(*(geometry or (None, None)))

    # -- leading lines --------------------------------------------------------------------------

    def _prescan(self, time_unit):
        """Reads comments, header and size lines up to the first event; picks the time unit."""
        comment_w = comment_h = None
        size_line = None
        header_seen = False
        offset = 0
        self.time_unit = time_unit or "us"
        self.data_offset = None
        self.data_line = 0
        with open(self.path, "rb") as f:
            line_no = 0
            while True:
                raw = f.readline(_MAX_LINE + 1)
                if not raw:
                    break
                line_no += 1
                if len(raw) > _MAX_LINE:
                    raise EventFileError(
                        self.path,
                        f"line {line_no} is longer than {_MAX_LINE} bytes (not a text event file?)",
                        offset=offset,
                    )
                text = raw.decode("latin-1")
                body, _, comment = text.partition("#")
                for regex, which in ((_WIDTH_RE, "w"), (_HEIGHT_RE, "h")):
                    m = regex.search(comment)
                    if m and which == "w":
                        comment_w = int(m.group(1))
                    elif m:
                        comment_h = int(m.group(1))
                fields = body.translate(str.maketrans(",\t\r", "   ")).split()
                if not fields:
                    offset += len(raw)
                    continue
                if len(fields) == 2 and size_line is None and all(_is_int(v) for v in fields):
                    size_line = (int(fields[0]), int(fields[1]))
                elif not all(_is_number(v) for v in fields) and not header_seen:
                    header_seen = True
                else:
                    self.data_offset, self.data_line = offset, line_no
                    if time_unit is None:
                        self.time_unit = "s" if any(c in fields[0] for c in ".eE") else "us"
                    break
                offset += len(raw)
        if self.data_offset is None:
            self.data_offset, self.data_line = offset, 0
        if comment_w and comment_h:
            self.geometry_source = "comment"
            return comment_w, comment_h
        if size_line is not None:
            self.geometry_source = "size-line"
            return size_line
        return None

    # -- block parsing --------------------------------------------------------------------------

    def _blocks(self):
        """Yields (bytes of whole lines, first line number, file offset) from the data start."""
        if self.data_line == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            pos, line_no, carry = self.data_offset, self.data_line, b""
            while True:
                data = f.read(READ_BLOCK)
                if not data:
                    if carry:
                        yield carry + b"\n", line_no, pos
                    return
                buf = carry + data
                cut = buf.rfind(b"\n")
                if cut < 0:
                    if len(buf) > _MAX_LINE:
                        raise EventFileError(
                            self.path,
                            f"line {line_no} is longer than {_MAX_LINE} bytes (not a text event file?)",
                            offset=pos,
                        )
                    carry = buf
                    continue
                block, carry = buf[: cut + 1], buf[cut + 1 :]
                yield block, line_no, pos
                line_no += block.count(b"\n")
                pos += len(block)

    def _error(self, block: bytes, at: int, line0: int, pos0: int, message: str):
        """EventFileError for byte ``at`` of ``block`` (line number and offset of its line)."""
        line = line0 + block.count(b"\n", 0, at)
        start = block.rfind(b"\n", 0, at) + 1
        end = block.find(b"\n", at)
        text = block[start : end if end >= 0 else len(block)].decode("latin-1").strip()
        if len(text) > 80:
            text = text[:77] + "..."
        return EventFileError(self.path, f"line {line}: {message}: {text!r}", offset=pos0 + start)

    def _parse_block(self, block: bytes, line0: int, pos0: int):
        """Parses whole lines into int64 columns (x, y, t, p)."""
        if b"#" in block:
            block = b"\n".join(_blank_comment(line) for line in block.split(b"\n"))
        block = block.translate(_SEPARATORS)
        b = np.frombuffer(block, np.uint8)
        bad = np.flatnonzero(~_ALLOWED[b])
        if len(bad):
            raise self._error(
                block, int(bad[0]), line0, pos0, "unexpected character (expected 't x y p' numbers)"
            )
        nl = b == 10
        space = nl | (b == 32)
        word = ~space
        starts = np.flatnonzero(word & np.concatenate(([True], space[:-1])))
        if not len(starts):
            return None
        ends = np.flatnonzero(word & np.concatenate((space[1:], [True])))
        line_start = np.concatenate(([0], np.flatnonzero(nl) + 1))[: int(nl.sum())]
        counts = np.bincount(np.searchsorted(line_start, starts, side="right") - 1, minlength=len(line_start))
        wrong = np.flatnonzero((counts != 0) & (counts != 4))
        if len(wrong):
            k = int(wrong[0])
            raise self._error(
                block, int(line_start[k]), line0, pos0, f"{counts[k]} fields, expected 4 (t x y p)"
            )
        rows = line_start[counts == 4]
        starts, ends = starts.reshape(-1, 4), ends.reshape(-1, 4)
        lengths = ends - starts + 1
        long_ = np.flatnonzero(lengths.max(axis=1) > _MAX_FIELD)
        if len(long_):
            raise self._error(
                block, int(rows[long_[0]]), line0, pos0, f"field longer than {_MAX_FIELD} characters"
            )
        fields = [_gather(b, starts[:, j], ends[:, j], lengths[:, j]) for j in range(4)]
        cols = []
        for j, name in ((1, "x"), (2, "y"), (3, "p")):
            values, ok = _parse_ints(fields[j], lengths[:, j])
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise self._error(block, int(rows[k]), line0, pos0, f"{name} is not an integer")
            cols.append(values)
        if self.time_unit == "us":
            t, ok = _parse_ints(fields[0], lengths[:, 0])
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise self._error(
                    block,
                    int(rows[k]),
                    line0,
                    pos0,
                    "timestamp is not an integer number of microseconds (pass time_unit='s' for seconds)",
                )
        else:
            t, ok = _parse_seconds(fields[0], lengths[:, 0])
            if not ok.all():
                k = int(np.flatnonzero(~ok)[0])
                raise self._error(block, int(rows[k]), line0, pos0, "timestamp is not a number of seconds")
        return cols[0], cols[1], t, cols[2]

    def _iter_columns(self):
        for block, line0, pos0 in self._blocks():
            cols = self._parse_block(block, line0, pos0)
            if cols is not None:
                yield cols

    def _scan_extent(self):
        wmax = hmax = -1
        for x, y, _t, _p in self._iter_columns():
            wmax = max(wmax, int(x.max()))
            hmax = max(hmax, int(y.max()))
        if wmax < 0 or hmax < 0:
            return None
        return wmax + 1, hmax + 1

    def _raw_chunks(self):
        self.counters = {}
        for x, y, t, p in self._iter_columns():
            yield self._events_from_columns(x, y, t, p)


def _gather(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Tokens as a right-aligned, zero-padded (n, L) uint8 matrix (L = longest token)."""
    width = int(lengths.max())
    idx = ends[:, None] + np.arange(1 - width, 1)
    m = b[np.maximum(idx, 0)]
    m[idx < starts[:, None]] = 0
    return m


def _weights(width: int, shift: int = 0) -> np.ndarray:
    """Powers of ten for the columns of a right-aligned digit matrix (0 beyond 10**18)."""
    e = np.arange(width - 1, -1, -1) - shift
    return np.where((e >= 0) & (e <= 18), _POW10[18 - np.clip(e, 0, 18)], 0)


def _parse_ints(m: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed decimal integers (at most 18 digits) from a right-aligned token matrix; (values, ok)."""
    n, width = m.shape
    digit = (m >= ord("0")) & (m <= ord("9"))
    first = m[np.arange(n), width - lengths]
    signed = (first == ord("-")) | (first == ord("+"))
    ndig = digit.sum(axis=1)
    ok = (ndig == lengths - signed) & (ndig >= 1) & (ndig <= 18)
    values = np.where(digit, m - ord("0"), 0).astype(np.int64) @ _weights(width)
    return np.where(first == ord("-"), -values, values), ok


def _parse_seconds(m: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal seconds to integer microseconds, exactly (round half up); (values, ok).

    Plain decimals of up to 18 digits are converted with integer arithmetic on the digit matrix;
    rare forms (exponent notation, longer digit strings) go through :func:`_seconds_slow`.
    """
    n, width = m.shape
    pos = np.arange(width)
    digit = (m >= ord("0")) & (m <= ord("9"))
    is_dot = m == ord(".")
    has_dot = is_dot.any(axis=1)
    dot = np.where(has_dot, is_dot.argmax(axis=1), width)
    first = m[np.arange(n), width - lengths]
    signed = (first == ord("-")) | (first == ord("+"))
    ndig = digit.sum(axis=1)
    n_frac = np.where(has_dot, width - 1 - dot, 0)
    fast = (
        (ndig == lengths - signed - is_dot.sum(axis=1))
        & (is_dot.sum(axis=1) <= 1)
        & (ndig >= 1)
        & (ndig <= 18)
        & (ndig - n_frac <= 12)
    )
    d = np.where(digit, m - ord("0"), 0).astype(np.int64)
    left = pos < dot[:, None]
    # Digits left of the dot sit one column further left than their power of ten.
    v = np.where(left, 0, d) @ _weights(width) + np.where(left & has_dot[:, None], d, 0) @ _weights(width, 1)
    v = v + np.where(left & ~has_dot[:, None], d, 0) @ _weights(width)
    scale = _POW10[18 - np.clip(np.abs(6 - n_frac), 0, 18)]
    up = n_frac <= 6
    q, r = np.divmod(v, scale)
    us = np.where(up, v * np.where(up, scale, 1), q + (2 * r >= scale))
    us = np.where(first == ord("-"), -us, us)
    ok = fast.copy()
    for k in np.flatnonzero(~fast):
        value = _seconds_slow(bytes(m[k]).lstrip(b"\0").decode("ascii"))
        if value is not None:
            us[k] = value
            ok[k] = True
    return us, ok


def _seconds_slow(token: str) -> int | None:
    """Microseconds from one token: exact for long decimals, nearest for exponent notation."""
    if any(c in token for c in "eE"):
        try:
            v = float(token) * 1e6
        except ValueError:
            return None
        return int(np.rint(v)) if np.isfinite(v) and abs(v) < 2.0**62 else None
    sign = -1 if token.startswith("-") else 1
    body = token.lstrip("+-")
    whole, _, frac = body.partition(".")
    if not (whole + frac).isdigit() or len(body) != len(token) - (token[:1] in "+-"):
        return None
    value = int(whole or "0") * 1_000_000 + int((frac[:6] or "0").ljust(6, "0")) + (frac[6:7] >= "5")
    return sign * value if value < 1 << 62 else None


def _digits(v: np.ndarray, min_width: int = 1, zero_pad: bool = False) -> np.ndarray:
    """Decimal digits of non-negative ints as an (n, w) uint8 matrix; 0 marks dropped leading zeros."""
    top = int(v.max()) if len(v) else 0
    w = max(min_width, len(str(top)))
    pows = _POW10[19 - w :]
    v = v.astype(np.int64)[:, None]
    m = ((v // pows) % 10 + ord("0")).astype(np.uint8)
    if not zero_pad:
        m[(v < pows) & (pows > 1)] = 0
    return m


def format_events(events: np.ndarray, time_unit: str = "s") -> bytes:
    """Formats events as ``t x y p`` lines (t in seconds with six decimals, or integer microseconds)."""
    n = len(events)
    if not n:
        return b""
    t = events["t"].astype(np.int64)

    def const(ch: str):
        return np.full((n, 1), ord(ch), np.uint8)

    if time_unit == "s":
        time_cols = [_digits(t // 1_000_000), const("."), _digits(t % 1_000_000, 6, zero_pad=True)]
    else:
        time_cols = [_digits(t)]
    m = np.concatenate(
        [
            *time_cols,
            const(" "),
            _digits(events["x"]),
            const(" "),
            _digits(events["y"]),
            const(" "),
            _digits(events["p"]),
            const("\n"),
        ],
        axis=1,
    )
    return m[m != 0].tobytes()


class TextWriter(EventWriter):
    """Writes ``t x y p`` text lines (readable by :class:`TextReader` and by Event Camera Dataset tools).

    Args:
        path: output file (``.txt`` or ``.csv``; separator is a space either way).
        width, height: sensor size, stored as a ``# width=W height=H`` comment.
        time_unit: ``"s"`` (default; six decimals, exact) or ``"us"`` (integers).
        header: write the two ``#`` comment lines (set False for a bare ECD-style file).
    """

    format = "txt"
    _BATCH = 1 << 18

    def __init__(self, path, width, height, time_unit: str = "s", header: bool = True):
        super().__init__(path, width, height)
        if time_unit not in ("s", "us"):
            raise ValueError(f"time_unit must be 's' or 'us', got {time_unit!r}")
        self.time_unit = time_unit
        self._f = open(self.path, "wb")
        if header:
            unit = "seconds" if time_unit == "s" else "microseconds"
            self._f.write(
                f"# evstream events: t x y p (t in {unit})\n# width={width} height={height}\n".encode()
            )

    def _write(self, events):
        for i in range(0, len(events), self._BATCH):
            self._f.write(format_events(events[i : i + self._BATCH], self.time_unit))

    def _finish(self):
        self._f.close()
