"""N-ImageNet ``.npz`` recordings (Kim et al., ICCV 2021), read and write, streaming.

An ``.npz`` is a zip archive of ``.npy`` members. N-ImageNet uses two layouts, both read here:

* (a) "compressed" (the official loader's default, ``cfg.compressed = True``): one member
  ``event_data.npy`` holding a 1-D **structured** array with fields ``x``, ``y``, ``t``, ``p``.
* (b) "uncompressed": four 1-D members ``x_pos``, ``y_pos``, ``timestamp``, ``polarity`` of equal
  length, read in lockstep.

Units, as the official loader (``82magnolia/n_imagenet``, ``data/imagenet.py`` ``load_event``) interprets
them: it stacks the four columns, casts to float and divides ``t`` by ``TIME_SCALE = 1_000_000``, so the
stored ``t`` is **integer microseconds** (the maintainer confirms this in n_imagenet issue #1). It does
not unwrap, shift or sort timestamps, and neither does this reader (a decrease of ``t`` is only counted,
``t_backwards``). Integer ``t`` of 64 bits is taken as-is; a narrower unsigned ``t`` (the released
files store ``t`` as uint16) is a wrapping counter: a drop of more than half its range is a wrap and
adds ``2**bits`` (counted in ``time_loops``). A float ``t`` is rounded to the nearest microsecond.
Polarity: the loader maps ``{0, 1}`` / bool (OFF = 0 -> -1) and keeps ``{-1, +1}``; both
become ``p = 1`` for values > 0 and ``p = 0`` otherwise. ``x``/``y`` may be any integer type (or
integral floats). The sensor is the 640x480 Prophesee Gen3 (``SENSOR_W``/``SENSOR_H`` in the loader)
unless the archive carries a ``sensor_size`` member (written by :class:`NpzWriter`) or the user passes
``sensor_size``. Events outside the sensor are dropped and counted (``out_of_bounds``).

The exact on-disk dtypes of the released files could not be confirmed from a public source (no
sample file is available); nothing here depends on them: dtypes are taken from each member's ``.npy``
header. Object dtypes are refused (nothing is ever unpickled, ``allow_pickle=False`` semantics).

Streaming: the archive is opened with :mod:`zipfile`, each member's ``.npy`` header is parsed with
``numpy.lib.format`` and fixed-size byte blocks are read from the member stream (deflate-compressed
members decompress incrementally), so memory stays bounded whatever the file size. Each member's
size is checked against the shape its header declares; a short member, a bad CRC or corrupt deflate
data raises :class:`EventFileError` naming the member and the byte offset / event index.

Writing (:class:`NpzWriter`) produces layout (a) exactly as ``np.savez_compressed`` would: a
ZIP_DEFLATED (zip64-capable) archive with member ``event_data.npy``, fields ``x``/``y`` uint16,
``t`` int64 microseconds and ``p`` bool. N-ImageNet's loader reads any integer ``t`` identically (it
casts to float); int64 is used because it holds every timestamp, so ``read(write(ev)) == ev`` exactly,
and because a narrower type would have to be guessed. ``p`` is bool because the loader's
``p.astype(np.uint8)`` is written for a non-uint8 polarity field. A second member ``sensor_size.npy``
(int64 ``[width, height]``) records the geometry; N-ImageNet's loader ignores it. Events are streamed
to a temporary file beside the target and the archive is assembled at :meth:`NpzWriter.close`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib

import numpy as np

from .base import READ_BLOCK, EventReader, EventWriter
from .errors import EventFileError

#: N-ImageNet sensor (Prophesee Gen3 VGA).
NIMAGENET_SIZE = (640, 480)

#: dtype of the ``event_data`` array written by NpzWriter.
NPZ_EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "?")])

LAYOUT_A = ("event_data",)
LAYOUT_B = ("x_pos", "y_pos", "timestamp", "polarity")
_NUMERIC_KINDS = "biuf"
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


class _CountingReader:
    """File-like wrapper counting the bytes read (numpy's header parser only calls ``read``)."""

    def __init__(self, raw):
        self.raw = raw
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        return data


class _Member:
    """One ``.npy`` member: name, dtype, length, header size."""

    def __init__(self, name: str, dtype: np.dtype, length: int, data_offset: int, file_size: int):
        self.name = name
        self.dtype = dtype
        self.length = length
        self.data_offset = data_offset
        self.file_size = file_size


def _member_name(names: set[str], key: str) -> str | None:
    for candidate in (key + ".npy", key):
        if candidate in names:
            return candidate
    return None


def _read_exact(f, n: int) -> bytes:
    parts = []
    while n > 0:
        data = f.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


class NpzReader(EventReader):
    """N-ImageNet ``.npz`` reader (layout ``event_data`` or ``x_pos``/``y_pos``/``timestamp``/``polarity``).

    Args:
        path: the recording.
        sensor_size: (width, height) in pixels; default the archive's ``sensor_size`` member, else
            N-ImageNet's 640x480.

    Attributes:
        layout: ``"event_data"`` or ``"separate"``.
        n_events: number of events the archive declares.
    """

    format = "npz"

    def __init__(self, path, sensor_size=None):
        super().__init__(path, sensor_size)
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = set(zf.namelist())
                geometry = self._read_sensor_size(zf, names)
                event_data = _member_name(names, LAYOUT_A[0])
                if event_data is not None:
                    self.layout = "event_data"
                    member = self._open_header(zf, event_data)
                    self._check_structured(member)
                    self.members = [member]
                elif all(_member_name(names, k) for k in LAYOUT_B):
                    self.layout = "separate"
                    self.members = [self._open_header(zf, _member_name(names, k)) for k in LAYOUT_B]
                    for m in self.members:
                        self._check_scalar(m)
                    lengths = {m.name: m.length for m in self.members}
                    if len(set(lengths.values())) != 1:
                        raise EventFileError(self.path, f"members have different lengths: {lengths}")
                else:
                    shown = ", ".join(sorted(names)[:10]) or "none"
                    raise EventFileError(
                        self.path,
                        "no N-ImageNet event arrays: expected member 'event_data' or members "
                        f"'x_pos', 'y_pos', 'timestamp', 'polarity' (found: {shown})",
                    )
        except EventFileError:
            raise
        except _ZIP_ERRORS as exc:
            raise EventFileError(self.path, f"not a readable .npz (zip) archive: {exc}") from None
        self.n_events = self.members[0].length
        self._set_geometry(*(geometry or NIMAGENET_SIZE))

    # -- header parsing -------------------------------------------------------------------------

    def _open_header(self, zf: zipfile.ZipFile, name: str) -> _Member:
        info = zf.getinfo(name)
        try:
            with zf.open(info) as raw:
                f = _CountingReader(raw)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise EventFileError(
                        self.path, f"member {name}: unsupported .npy format version {version}"
                    )
        except EventFileError:
            raise
        except Exception as exc:  # numpy's header parser raises many types on garbage
            raise EventFileError(self.path, f"member {name}: bad .npy header: {exc!r}") from None
        if dtype.hasobject:
            raise EventFileError(
                self.path, f"member {name}: object arrays are refused (they need unpickling)"
            )
        if len(shape) != 1:
            raise EventFileError(self.path, f"member {name}: expected a 1-D array, got shape {shape}")
        length = int(shape[0])
        member = _Member(name, dtype, length, f.pos, info.file_size)
        need = f.pos + length * dtype.itemsize
        if info.file_size < need:
            inside = (info.file_size - f.pos) // max(dtype.itemsize, 1)
            raise EventFileError(
                self.path,
                f"member {name} is truncated: its header declares {length} events ({need} bytes) but it "
                f"holds {info.file_size} bytes (ends inside event {inside})",
                index=inside,
            )
        return member

    def _check_structured(self, m: _Member) -> None:
        names = m.dtype.names or ()
        missing = [k for k in "xytp" if k not in names]
        if missing:
            raise EventFileError(
                self.path, f"member {m.name}: structured fields x, y, t, p expected, got dtype {m.dtype}"
            )
        for k in "xytp":
            self._check_field(m.name, k, m.dtype.fields[k][0])

    def _check_scalar(self, m: _Member) -> None:
        if m.dtype.names:
            raise EventFileError(self.path, f"member {m.name}: expected a plain numeric array, got {m.dtype}")
        self._check_field(m.name, None, m.dtype)

    def _check_field(self, member: str, field: str | None, dt: np.dtype) -> None:
        if dt.shape or dt.kind not in _NUMERIC_KINDS:
            what = f"field {field!r} of member {member}" if field else f"member {member}"
            raise EventFileError(
                self.path, f"{what} has unsupported dtype {dt} (need bool, integer or float)"
            )

    def _read_sensor_size(self, zf: zipfile.ZipFile, names: set[str]):
        name = _member_name(names, "sensor_size")
        if name is None:
            return None
        m = self._open_header(zf, name)
        if m.dtype.kind not in "iu" or m.length < 2:
            raise EventFileError(
                self.path, f"member {name}: expected integers [width, height], got {m.dtype}"
            )
        with zf.open(name) as f:
            f.read(m.data_offset)
            w, h = np.frombuffer(_read_exact(f, 2 * m.dtype.itemsize), m.dtype)[:2]
        return int(w), int(h)

    # -- streaming ------------------------------------------------------------------------------

    def _raw_chunks(self):
        self.counters = {}
        n = self.n_events
        step = max(1, READ_BLOCK // max(sum(m.dtype.itemsize for m in self.members), 1))
        self._last_t = None
        self._wrap_prev: int | None = None
        self._wrap_offset = 0
        try:
            with zipfile.ZipFile(self.path) as zf:
                files = [zf.open(m.name) for m in self.members]
                try:
                    for f, m in zip(files, self.members, strict=True):
                        self._read_member(f, m, m.data_offset, 0)
                    for start in range(0, n, step):
                        count = min(step, n - start)
                        cols = [
                            np.frombuffer(self._read_member(f, m, count * m.dtype.itemsize, start), m.dtype)
                            for f, m in zip(files, self.members, strict=True)
                        ]
                        if self.layout == "event_data":
                            a = cols[0]
                            yield self._convert(a["x"], a["y"], a["t"], a["p"], start)
                        else:
                            yield self._convert(*cols, start)
                    for f, m in zip(files, self.members, strict=True):
                        rest = m.file_size - m.data_offset - n * m.dtype.itemsize
                        self._count("trailing_bytes", len(self._read_member(f, m, rest, n)))
                        f.read()  # reach the end of the member so zipfile verifies its CRC
                finally:
                    for f in files:
                        f.close()
        except EventFileError:
            raise
        except _ZIP_ERRORS as exc:
            raise EventFileError(self.path, f"cannot read the archive: {exc}") from None

    def _read_member(self, f, m: _Member, nbytes: int, index: int) -> bytes:
        start = f.tell() if f.seekable() else None
        try:
            data = _read_exact(f, nbytes)
        except _ZIP_ERRORS as exc:
            where = f" (member byte {start})" if start is not None else ""
            raise EventFileError(
                self.path, f"member {m.name} is corrupt near event {index}{where}: {exc}", index=index
            ) from None
        if len(data) < nbytes:
            raise EventFileError(
                self.path,
                f"member {m.name} ends early, inside event {index + len(data) // m.dtype.itemsize}",
                index=index + len(data) // m.dtype.itemsize,
            )
        return data

    def _times(self, t: np.ndarray, base: int) -> np.ndarray:
        if t.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(t) | (np.abs(t) >= 2.0**63))
            if len(bad):
                i = base + int(bad[0])
                raise EventFileError(self.path, f"event {i} has an invalid timestamp {t[bad[0]]}", index=i)
            return np.rint(t).astype(np.int64)
        if t.dtype.kind == "u" and t.dtype.itemsize == 8:
            bad = np.flatnonzero(t > np.iinfo(np.int64).max)
            if len(bad):
                i = base + int(bad[0])
                raise EventFileError(
                    self.path, f"event {i} has a timestamp beyond int64: {t[bad[0]]}", index=i
                )
        if t.dtype.kind == "u" and t.dtype.itemsize <= 4:
            return self._unwrap(t)
        return t.astype(np.int64)

    def _unwrap(self, t: np.ndarray) -> np.ndarray:
        """Narrow unsigned counters (N-ImageNet's uint16 ``t``) wrap; a drop of more than half the
        range is a wrap and adds 2**bits, as for a camera's own timestamp counter."""
        bits = 8 * t.dtype.itemsize
        raw = t.astype(np.int64)
        prev = np.concatenate([[self._wrap_prev if self._wrap_prev is not None else raw[0]], raw[:-1]])
        wraps = (raw - prev) < -(1 << (bits - 1))
        loops = np.cumsum(wraps, dtype=np.int64)
        out = raw + (self._wrap_offset + (loops << bits))
        if len(raw):
            self._count("time_loops", int(loops[-1]))
            self._wrap_offset += int(loops[-1]) << bits
            self._wrap_prev = int(raw[-1])
        return out

    def _convert(self, x, y, t, p, base: int) -> np.ndarray:
        x = self._integer_column(x, "x", base)
        y = self._integer_column(y, "y", base)
        t = self._times(t, base)
        if len(t):
            back = int(np.count_nonzero(t[1:] < t[:-1]))
            if self._last_t is not None and t[0] < self._last_t:
                back += 1
            self._count("t_backwards", back)
            self._last_t = int(t[-1])
        return self._events_from_columns(x, y, t, p)


class NpzWriter(EventWriter):
    """Writes N-ImageNet layout (a): ``event_data.npy`` (x, y uint16; t int64 us; p bool), deflated.

    Args:
        path: output ``.npz``.
        width, height: sensor size in pixels (stored in member ``sensor_size.npy``).
        compress: ZIP_DEFLATED like ``np.savez_compressed`` (default) or ZIP_STORED like ``np.savez``.

    Events are spooled to a temporary file next to ``path``; the archive is written at :meth:`close`.
    """

    format = "npz"

    def __init__(self, path, width, height, compress: bool = True):
        super().__init__(path, width, height)
        self.compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp_path = tempfile.mkstemp(prefix=".evstream-", suffix=".npz.tmp", dir=directory)
        self._tmp = os.fdopen(fd, "wb")

    def _write(self, events):
        rec = np.empty(len(events), NPZ_EVENT_DTYPE)
        rec["x"] = events["x"]
        rec["y"] = events["y"]
        rec["t"] = events["t"]
        rec["p"] = events["p"] != 0
        self._tmp.write(rec.tobytes())

    def _finish(self):
        try:
            self._tmp.close()
            n = self.events_written
            header = {
                "descr": np.lib.format.dtype_to_descr(NPZ_EVENT_DTYPE),
                "fortran_order": False,
                "shape": (n,),
            }
            with zipfile.ZipFile(self.path, "w", compression=self.compression, allowZip64=True) as zf:
                with zf.open("event_data.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array_header_1_0(out, header)
                    with open(self._tmp_path, "rb") as src:
                        while True:
                            block = src.read(READ_BLOCK)
                            if not block:
                                break
                            out.write(block)
                with zf.open("sensor_size.npy", "w") as out:
                    np.lib.format.write_array(
                        out, np.array([self.width, self.height], "<i8"), allow_pickle=False
                    )
        finally:
            os.unlink(self._tmp_path)
