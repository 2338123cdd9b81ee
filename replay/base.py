"""Reader and writer interfaces shared by every format.

A reader streams a recording as event arrays (``EVENT_DTYPE``) and knows the sensor geometry.
Subclasses implement :meth:`EventReader._raw_chunks`, which yields arrays of any size in file
order; this class re-batches them by event count (:meth:`EventReader.chunks`) or by time window
(:meth:`EventReader.time_windows`). Memory stays bounded by the chunk size: nothing here loads a
file whole unless :meth:`EventReader.read_all` is asked to.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from ..kernels.events import EVENT_DTYPE, concat_events, empty_events
from .errors import EventFileError

#: Bytes read from disk per decode call.
READ_BLOCK = 4 << 20
#: Bytes read once at open for detection and headers; files this small are read only once.
HEAD_BYTES = 1 << 16

# The head read by open_events for detection, handed to the reader it then constructs (same call,
# same thread), so that a small file is opened and read once.
_preloaded: contextvars.ContextVar[tuple[str, bytes, int] | None] = contextvars.ContextVar(
    "evstream_preloaded_head", default=None
)


def read_head(path: str) -> tuple[bytes, int]:
    """The first HEAD_BYTES of a file and the file's size."""
    pre = _preloaded.get()
    if pre is not None and pre[0] == path:
        return pre[1], pre[2]
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    return head, size


@contextlib.contextmanager
def preloaded_head(path: str):
    """Reads the head of ``path`` once; read_head calls inside the block reuse it."""
    head, size = read_head(path)
    token = _preloaded.set((path, head, size))
    try:
        yield head
    finally:
        _preloaded.reset(token)


class EventReader(ABC):
    """Streams the events of one recording.

    Attributes:
        path: the file.
        format: short format name (``"evt3"``, ``"aedat4"``, ...).
        width, height: sensor geometry in pixels.
        counters: damage and skip counters filled while reading (``out_of_bounds``,
            ``truncated_bytes``, ``other_words``, ...); all zero for a clean file.

    Example:
        >>> from evstream.replay import open_events
        >>> with open_events("recording.raw") as reader:             # doctest: +SKIP
        ...     for chunk in reader.chunks(100_000):
        ...         print(len(chunk), chunk["t"][0])
    """

    format: str = ""

    def __init__(self, path: str | os.PathLike, sensor_size: tuple[int, int] | None = None):
        self.path = os.fspath(path)
        from .formats import check_readable_file

        check_readable_file(self.path)
        self.head, self.file_size = read_head(self.path)
        self.width = 0
        self.height = 0
        self._sensor_override = sensor_size
        self.counters: dict[str, int] = {}
        #: bytes of the file consumed so far by the current pass (for progress bars)
        self.bytes_done = 0

    def _set_geometry(self, width: int | None, height: int | None) -> None:
        """Applies the user's sensor size (wins) or the file's; raises if neither is known."""
        if self._sensor_override is not None:
            width, height = self._sensor_override
        if not width or not height:
            raise EventFileError(
                self.path, "the file does not state its sensor size; pass sensor_size=(width, height)"
            )
        if not (0 < width <= 65535 and 0 < height <= 65535):
            raise EventFileError(self.path, f"implausible sensor size {width}x{height}")
        self.width, self.height = int(width), int(height)

    def _blocks(self, offset: int, block: int = READ_BLOCK) -> Iterator[np.ndarray]:
        """Reads the file from ``offset`` in blocks, tracking :attr:`bytes_done`."""
        self.bytes_done = offset
        if self.file_size <= len(self.head):  # small file: already read whole
            if offset < len(self.head):
                self.bytes_done = len(self.head)
                yield np.frombuffer(self.head, np.uint8, offset=offset)
            return
        for pos, data in iter_file_blocks(self.path, offset, block):
            self.bytes_done = pos + len(data)
            yield data

    def _integer_column(self, v: np.ndarray, name: str, base: int) -> np.ndarray:
        """A coordinate column as int64. Float columns must hold whole numbers (EventFileError
        naming the event otherwise); values far outside any sensor are clipped, and then dropped
        as out of bounds by :meth:`_events_from_columns`."""
        if v.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(v) | (v != np.floor(v)))
            if len(bad):
                i = base + int(bad[0])
                raise EventFileError(self.path, f"event {i} has non-integer {name}={v[bad[0]]}", index=i)
            v = np.clip(v, -1, 1 << 20)
        elif v.dtype.kind == "u" and v.dtype.itemsize == 8:
            v = np.minimum(v, 1 << 20)
        return v.astype(np.int64)

    def _events_from_columns(self, x, y, t, p) -> np.ndarray:
        """Event array from integer column arrays (any dtypes; ``p > 0`` is ON); events outside the
        sensor are dropped and counted in ``out_of_bounds``."""
        keep = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        n_keep = int(np.count_nonzero(keep))
        if n_keep != len(keep):
            self._count("out_of_bounds", len(keep) - n_keep)
            x, y, t, p = x[keep], y[keep], t[keep], p[keep]
        ev = empty_events(len(x))
        ev["x"] = x
        ev["y"] = y
        ev["t"] = t
        ev["p"] = p > 0
        return ev

    def _count(self, key: str, n: int = 1) -> None:
        if n:
            self.counters[key] = self.counters.get(key, 0) + int(n)

    @abstractmethod
    def _raw_chunks(self) -> Iterator[np.ndarray]:
        """Yields event arrays of arbitrary size in file order."""

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.chunks()

    def blocks(self) -> Iterator[np.ndarray]:
        """Yields the events as decoded, in blocks of whatever size the format gives (no copies).

        The fastest way through a file when chunk sizes do not matter (statistics, conversion).
        """
        for part in self._raw_chunks():
            if len(part):
                yield part

    def chunks(self, n_events: int = 1 << 20) -> Iterator[np.ndarray]:
        """Yields arrays of exactly ``n_events`` events (the last one may be shorter)."""
        if n_events <= 0:
            raise ValueError(f"n_events must be positive, got {n_events}")
        pending: list[np.ndarray] = []
        have = 0
        for part in self._raw_chunks():
            if not len(part):
                continue
            pending.append(part)
            have += len(part)
            if have < n_events:
                continue
            buf = concat_events(pending)
            stop = len(buf) - len(buf) % n_events
            for i in range(0, stop, n_events):
                yield buf[i : i + n_events]
            rest = buf[stop:]
            pending = [rest] if len(rest) else []
            have = len(rest)
        if have:
            yield concat_events(pending)

    def time_windows(self, duration_us: int, t_start: int | None = None) -> Iterator[np.ndarray]:
        """Yields consecutive windows ``[t0 + k*d, t0 + (k+1)*d)`` of ``d = duration_us``.

        ``t0`` is ``t_start`` or the first event's timestamp. Empty windows are yielded as empty
        arrays, so a consumer sees time pass. A window closes at the first event (in file order)
        whose timestamp reaches its end; an out-of-order earlier event stays in the window it
        arrived in.
        """
        if duration_us <= 0:
            raise ValueError(f"duration_us must be positive, got {duration_us}")
        end = None
        pending = empty_events(0)
        for part in self._raw_chunks():
            if not len(part):
                continue
            if end is None:
                end = (int(part["t"][0]) if t_start is None else int(t_start)) + duration_us
            buf = concat_events([pending, part])
            t = buf["t"]
            sorted_ = bool(np.all(t[1:] >= t[:-1]))
            lo = 0
            while True:
                if sorted_:
                    i = lo + int(np.searchsorted(t[lo:], end, side="left"))
                else:
                    hits = np.flatnonzero(t[lo:] >= end)
                    i = lo + int(hits[0]) if len(hits) else len(t)
                if i >= len(t):
                    break
                yield buf[lo:i]
                lo = i
                end += duration_us
                # Skip forward through empty windows without scanning again.
                while int(t[lo]) >= end:
                    yield empty_events(0)
                    end += duration_us
            pending = buf[lo:]
        if len(pending):
            yield pending

    def read_all(self) -> np.ndarray:
        """Reads every event into one array (for small files and tests)."""
        return concat_events(list(self._raw_chunks()))

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Releases file handles (readers open files lazily, so this is usually a no-op)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, format={self.format!r}, {self.width}x{self.height})"


class DecoderReader(EventReader):
    """A reader whose data words are decoded by one of the C++ streaming decoders.

    Subclasses set :attr:`data_offset` and implement :meth:`_make_decoder`; they may transform
    each raw block (:meth:`_prepare`) or each decoded array (:meth:`_finish_events`).
    """

    data_offset = 0
    read_block = READ_BLOCK
    #: decoder counters reported in :attr:`counters`
    counter_keys = (
        "out_of_bounds",
        "other_words",
        "unknown_words",
        "before_time",
        "t_backwards",
        "time_loops",
    )

    @abstractmethod
    def _make_decoder(self): ...

    def _prepare(self, block: np.ndarray) -> np.ndarray:
        return block

    def _finish_events(self, events: np.ndarray) -> np.ndarray:
        return events

    def _collect(self, dec) -> None:
        c = dec.counters
        for key in self.counter_keys:
            self._count(key, c[key])
        self._count("truncated_bytes", dec.pending_bytes)

    def _raw_chunks(self):
        self.counters = {}
        dec = self._make_decoder()
        for block in self._blocks(self.data_offset, self.read_block):
            yield self._finish_events(dec.decode(self._prepare(block)))
        self._collect(dec)

    #: typical bytes per event, to size read_all's buffer (it grows if the guess is low)
    bytes_per_event = 4.0

    def read_all(self) -> np.ndarray:
        """Decodes the whole file into one array (no per-block arrays to concatenate)."""
        self.counters = {}
        dec = self._make_decoder()
        dec.reserve(int(max(0, self.file_size - self.data_offset) / self.bytes_per_event) + 1)
        for block in self._blocks(self.data_offset, self.read_block):
            dec.decode_append(self._prepare(block))
        self._collect(dec)
        return self._finish_events(dec.take())


class EventWriter(ABC):
    """Writes a recording chunk by chunk. Use as a context manager, or call :meth:`close`.

    Every chunk is validated: dtype ``EVENT_DTYPE``, coordinates inside the sensor,
    non-negative timestamps, polarity 0/1. Subclasses add their format's own limits.
    """

    format: str = ""
    max_coordinate = 65535

    def __init__(self, path: str | os.PathLike, width: int, height: int):
        self.path = os.fspath(path)
        if not (0 < width <= self.max_coordinate + 1 and 0 < height <= self.max_coordinate + 1):
            raise ValueError(
                f"{self.format} cannot store a {width}x{height} sensor "
                f"(at most {self.max_coordinate + 1} pixels per side)"
            )
        self.width, self.height = int(width), int(height)
        self.events_written = 0
        self._last_t: int | None = None
        self._closed = False

    def write(self, events: np.ndarray) -> None:
        """Appends ``events`` (``EVENT_DTYPE``) to the file."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        events = self._check(events)
        if len(events):
            self._write(events)
            self.events_written += len(events)
            self._last_t = int(events["t"][-1])

    def _check(self, events: np.ndarray) -> np.ndarray:
        if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
            raise ValueError(
                f"events must be an array of EVENT_DTYPE, got {getattr(events, 'dtype', type(events))}"
            )
        events = np.ascontiguousarray(events.reshape(-1))
        if not len(events):
            return events
        base = self.events_written
        for name, limit in (("x", self.width), ("y", self.height)):
            bad = np.flatnonzero(events[name] >= limit)
            if len(bad):
                i = int(bad[0])
                raise ValueError(
                    f"{self.path}: event {base + i} has {name}={int(events[name][i])} outside the "
                    f"{self.width}x{self.height} sensor"
                )
        bad = np.flatnonzero(events["p"] > 1)
        if len(bad):
            raise ValueError(
                f"{self.path}: event {base + int(bad[0])} has polarity {int(events['p'][bad[0]])}, not 0/1"
            )
        bad = np.flatnonzero(events["t"] < 0)
        if len(bad):
            raise ValueError(f"{self.path}: event {base + int(bad[0])} has a negative timestamp")
        return events

    @abstractmethod
    def _write(self, events: np.ndarray) -> None: ...

    def _finish(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Writes trailers; called once by :meth:`close`."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close()


def _header_line_at(head: bytes, offset: int) -> bool | None:
    """Whether a Prophesee-style header line ("% key value", or a bare "%") starts at ``offset``;
    None if more bytes are needed to tell."""
    if offset + 2 > len(head):
        return None if offset < len(head) or not head else False
    return head[offset : offset + 1] == b"%" and head[offset + 1 : offset + 2] in (b" ", b"\n", b"\r")


def _scan_header(head: bytes, whole: bool) -> tuple[list[str], int, str]:
    """Header lines at the start of ``head`` and the offset after them, with a status:
    ``"done"`` (the header provably ends there), ``"more"`` (bytes past ``head`` are needed to
    tell; only when ``whole`` is false) or ``"unterminated"`` (the file ends inside a line)."""
    lines: list[str] = []
    offset = 0
    while True:
        starts = _header_line_at(head, offset)
        if starts is None or (starts and head.find(b"\n", offset) < 0):
            if not whole:
                return lines, offset, "more"
            if starts is None:  # a lone last byte: data, not a header line
                return lines, offset, "done"
            return lines, offset, "unterminated"
        if not starts:
            return lines, offset, "done"
        nl = head.find(b"\n", offset)
        line = head[offset:nl].decode("latin-1").rstrip("\r")
        lines.append(line)
        offset = nl + 1
        if line.strip() == "% end":
            return lines, offset, "done"


def read_header_lines(path: str, limit: int = 1 << 20, head: bytes | None = None) -> tuple[list[str], int]:
    """Reads a Prophesee-style text header; returns its lines and the offset of the binary data.

    Header lines start with ``"% "`` (or are a bare ``"%"``); a ``"% end"`` line ends the header
    explicitly, which matters when the binary data itself begins with the byte ``%``. ``head``, the
    start of the file if already read, is used first; the file is read further only when the
    header goes beyond it. Raises EventFileError if the header runs past ``limit`` bytes or ends
    mid-line.
    """
    if head is not None:
        lines, offset, status = _scan_header(head, whole=len(head) < HEAD_BYTES)
    if head is None or status != "done":  # read (further) from the file
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            whole = len(head) < HEAD_BYTES
            while True:
                lines, offset, status = _scan_header(head, whole)
                if status == "done":
                    break
                if status == "unterminated":
                    raise EventFileError(
                        path, "header line is not terminated (truncated header?)", offset=offset
                    )
                if len(head) > limit:
                    raise EventFileError(path, f"header longer than {limit} bytes", offset=offset)
                more = f.read(max(len(head), 8192))
                whole = not more
                head += more
    if offset > limit:
        raise EventFileError(path, f"header longer than {limit} bytes", offset=offset)
    return lines, offset


def split_header_bytes(head: bytes) -> list[str]:
    """The Prophesee-style header lines at the start of ``head`` (for format detection)."""
    return _scan_header(head, whole=True)[0]


def iter_file_blocks(path: str, offset: int, block: int = READ_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(file_offset, uint8 array)`` blocks from ``offset`` to the end of the file."""
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        while True:
            data = f.read(block)
            if not data:
                return
            yield pos, np.frombuffer(data, np.uint8)
            pos += len(data)
