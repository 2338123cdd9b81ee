"""HDF5 event recordings: the DSEC ``events.h5`` layout and plain ``x``/``y``/``t``/``p`` datasets.

Layouts (detected from the file's structure):

* **DSEC** (Gehrig et al., 2021; ``uzh-rpg/DSEC`` ``eventslicer.py``): group ``/events`` with 1-D
  datasets ``x`` (uint16), ``y`` (uint16), ``p`` (uint8, 0/1) and ``t`` (uint32, microseconds
  *relative* to ``/t_offset``), plus ``/t_offset`` (int64 scalar, microseconds) and ``/ms_to_idx``
  (uint64; ``ms_to_idx[ms]`` = index of the first event with ``t >= ms * 1000``). Absolute time is
  ``t + t_offset`` (a missing ``t_offset`` counts as 0). The sensor is the 640x480 Prophesee Gen3.1.
* **Plain**: four 1-D datasets ``x``, ``y``, ``t``, ``p`` of equal length at the root or in one group
  (e.g. ``raw_events/x`` in the event-vision-library sample); pass ``group=`` when several groups
  qualify. Aliases accepted: ``ts``/``timestamp``/``timestamps`` for ``t``, ``polarity``/``pol`` for ``p``.
  Time unit: a float ``t`` is **seconds** and is converted to integer microseconds with
  round-to-nearest (``round(t * 1e6)``; truncation would turn 0.000779999 s into 779 us instead of
  780 us); an integer ``t`` is microseconds. ``time_unit=`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``)
  overrides this.

Polarity: values > 0 are ON (``p = 1``), others OFF (so 0/1, -1/+1 and bool all work). Coordinates
may be any integer type (or integral floats); events outside the sensor are dropped and counted
(``out_of_bounds``). Datasets are read by slices of about a million events, never whole.

Geometry, in order of preference: the user's ``sensor_size``; ``width``/``height`` (or ``sensor_size``
= (width, height, ...)) attributes on the root or the events group; 640x480 for the DSEC layout;
otherwise the maximum coordinate + 1, found by scanning ``x`` and ``y`` in slices (this is only a
lower bound of the true sensor; ``geometry_source`` records which rule applied).

DSEC files are usually Blosc-compressed (HDF5 filter 32001), which h5py cannot decode by itself: the
reader imports ``hdf5plugin`` when it is installed and otherwise raises :class:`EventFileError`
telling the user to ``pip install hdf5plugin``.

:class:`DsecWriter` writes the DSEC layout exactly (dtypes above, chunked resizable datasets, gzip or
lzf compression so no plugin is needed to read them, ``width``/``height`` root attributes).
Timestamps must not decrease (``ms_to_idx`` presumes sorted events); ``t_offset`` is the first
event's time rounded down to a whole millisecond and ``t - t_offset`` must fit in uint32 (71 minutes).
"""

from __future__ import annotations

import numpy as np

from .base import EventReader, EventWriter
from .errors import EventFileError

DSEC_SIZE = (640, 480)
_STEP = 1 << 20
_ALIASES = {
    "x": ("x",),
    "y": ("y",),
    "t": ("t", "ts", "timestamp", "timestamps"),
    "p": ("p", "polarity", "pol"),
}
_TIME_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
_INSTALL_HINT = "pip install hdf5plugin"
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


def _h5py():
    """Imports h5py, and hdf5plugin when available (it registers Blosc and other filters)."""
    import h5py

    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass
    return h5py


def _find_fields(h5py, group) -> dict[str, str] | None:
    """Maps x/y/t/p to dataset names in ``group``, or None if any is missing."""
    out = {}
    for key, names in _ALIASES.items():
        for name in names:
            if name in group and isinstance(group[name], h5py.Dataset):
                out[key] = name
                break
        else:
            return None
    return out


def _attr_geometry(*objs) -> tuple[int, int] | None:
    for obj in objs:
        a = obj.attrs
        try:
            if "width" in a and "height" in a:
                return int(np.asarray(a["width"]).reshape(-1)[0]), int(np.asarray(a["height"]).reshape(-1)[0])
            if "sensor_size" in a:
                size = np.asarray(a["sensor_size"]).reshape(-1)
                if len(size) >= 2:
                    return int(size[0]), int(size[1])
        except (TypeError, ValueError):
            continue
    return None


class Hdf5Reader(EventReader):
    """HDF5 event reader: DSEC layout or plain x/y/t/p datasets.

    Args:
        path: the recording.
        sensor_size: (width, height) in pixels, overriding the file's geometry.
        group: the group holding x/y/t/p (``"/"`` for the root) when the layout is ambiguous.
        time_unit: unit of stored ``t`` (``"s"``, ``"ms"``, ``"us"``, ``"ns"``); default: float ->
            seconds, integer -> microseconds.

    Attributes:
        layout: ``"dsec"`` or ``"plain"``.
        group: path of the group holding the event datasets.
        t_offset: microseconds added to every timestamp (DSEC ``t_offset``; 0 otherwise).
        n_events: number of events in the file.
        geometry_source: ``"user"``, ``"attributes"``, ``"dsec-default"`` or ``"max+1"``.
    """

    format = "hdf5"

    def __init__(self, path, sensor_size=None, group: str | None = None, time_unit: str | None = None):
        super().__init__(path, sensor_size)
        if time_unit is not None and time_unit not in _TIME_SCALE:
            raise ValueError(f"time_unit must be one of {', '.join(_TIME_SCALE)}, got {time_unit!r}")
        h5py = _h5py()
        with self._open(h5py) as f:
            try:
                self._inspect(h5py, f, group, time_unit)
                geometry = _attr_geometry(f, f[self.group])
                if sensor_size is not None:
                    self.geometry_source = "user"
                elif geometry is not None:
                    self.geometry_source = "attributes"
                elif self.layout == "dsec":
                    self.geometry_source, geometry = "dsec-default", DSEC_SIZE
                else:
                    self.geometry_source = "max+1"
                    geometry = self._scan_extent(f)
            except EventFileError:
                raise
            except _H5_ERRORS as exc:
                raise EventFileError(self.path, f"cannot read the HDF5 structure: {exc}") from None
        self._set_geometry(*(geometry or (None, None)))

    def _inspect(self, h5py, f, group, time_unit) -> None:
        if group is not None:
            if group not in f or not isinstance(f[group], h5py.Group):
                raise EventFileError(self.path, f"no group {group!r} in the file")
            fields = _find_fields(h5py, f[group])
            if fields is None:
                raise EventFileError(self.path, f"group {group!r} lacks x, y, t, p datasets")
            self.group = f[group].name
        elif "events" in f and isinstance(f["events"], h5py.Group) and _find_fields(h5py, f["events"]):
            self.group, fields = "/events", _find_fields(h5py, f["events"])
        elif _find_fields(h5py, f):
            self.group, fields = "/", _find_fields(h5py, f)
        else:
            found: list[str] = []

            def visit(name, obj):
                if isinstance(obj, h5py.Group) and _find_fields(h5py, obj):
                    found.append("/" + name)

            f.visititems(visit)
            if not found:
                raise EventFileError(
                    self.path, "no x, y, t, p datasets found (neither DSEC nor plain layout)"
                )
            if len(found) > 1:
                raise EventFileError(
                    self.path, f"several groups hold x, y, t, p datasets ({', '.join(found)}); pass group="
                )
            self.group, fields = found[0], _find_fields(h5py, f[found[0]])
        g = f[self.group]
        self.datasets = {k: g[name].name for k, name in fields.items()}
        self.layout = "dsec" if self.group == "/events" and ("t_offset" in f or "ms_to_idx" in f) else "plain"
        lengths = {}
        for name in self.datasets.values():
            ds = f[name]
            if ds.ndim != 1:
                raise EventFileError(self.path, f"dataset {name} is not 1-D (shape {ds.shape})")
            if ds.dtype.kind not in "biuf" or ds.dtype.shape:
                raise EventFileError(self.path, f"dataset {name} has unsupported dtype {ds.dtype}")
            lengths[name] = ds.shape[0]
            self._check_filters(h5py, ds)
            self._check_stored(ds)
        if len(set(lengths.values())) != 1:
            raise EventFileError(self.path, f"event datasets have different lengths: {lengths}")
        self.n_events = next(iter(lengths.values()))
        self.t_offset = 0
        if self.layout == "dsec" and "t_offset" in f:
            off = np.asarray(f["t_offset"][()]).reshape(-1)
            if len(off) != 1 or off.dtype.kind not in "iu":
                raise EventFileError(
                    self.path, f"t_offset is not an integer scalar ({off.dtype}, {off.shape})"
                )
            self.t_offset = int(off[0])
        t_kind = f[self.datasets["t"]].dtype.kind
        if time_unit is None:
            time_unit = "s" if t_kind == "f" and self.layout == "plain" else "us"
        self.time_unit = time_unit

    def _check_stored(self, ds) -> None:
        """Refuses datasets declaring more events than they store: HDF5 reads the chunks that
        were never written as zeros, so a damaged or hostile file declaring 10^12 events in a few
        kilobytes would stream zeros for hours."""
        n = ds.shape[0]
        if not n:
            return
        if ds.chunks:
            stored = ds.id.get_num_chunks() * ds.chunks[0]
        else:
            stored = n if ds.id.get_storage_size() >= n * ds.dtype.itemsize else 0
        if stored < n:
            raise EventFileError(
                self.path,
                f"dataset {ds.name} declares {n} events but stores at most {stored} "
                "(chunks never written: an incomplete or damaged file)",
            )

    def _check_filters(self, h5py, ds) -> None:
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, _values, name = plist.get_filter(i)
            if not h5py.h5z.filter_avail(code):
                label = name.decode("latin-1", "replace") if isinstance(name, bytes) else str(name)
                raise EventFileError(
                    self.path,
                    f"dataset {ds.name} uses HDF5 compression filter {code} ({label or 'unknown'}), "
                    f"which is not available; `{_INSTALL_HINT}` (it provides Blosc, used by DSEC, "
                    "and other filters)",
                )

    def _step(self, ds) -> int:
        chunk = ds.chunks[0] if ds.chunks else 0
        if chunk and chunk < _STEP:
            return _STEP // chunk * chunk
        return _STEP

    def _read(self, ds, start: int, stop: int) -> np.ndarray:
        try:
            return ds[start:stop]
        except _H5_ERRORS as exc:
            self._check_filters(_h5py(), ds)
            raise EventFileError(
                self.path, f"cannot read dataset {ds.name} at events {start}..{stop}: {exc}", index=start
            ) from None

    def _scan_extent(self, f) -> tuple[int, int] | None:
        xs, ys = f[self.datasets["x"]], f[self.datasets["y"]]
        if not self.n_events:
            return None
        step = self._step(xs)
        wmax = hmax = -1
        for i in range(0, self.n_events, step):
            x = self._integer_column(self._read(xs, i, i + step), "x", i)
            y = self._integer_column(self._read(ys, i, i + step), "y", i)
            wmax = max(wmax, int(x.max()))
            hmax = max(hmax, int(y.max()))
        return wmax + 1, hmax + 1

    def _times(self, t: np.ndarray, base: int) -> np.ndarray:
        scale = _TIME_SCALE[self.time_unit]
        if t.dtype.kind == "f":
            us = t * scale if scale is not None else t / 1000.0
            bad = np.flatnonzero(~np.isfinite(us) | (np.abs(us) >= 2.0**62))
            if len(bad):
                i = base + int(bad[0])
                raise EventFileError(self.path, f"event {i} has an invalid timestamp {t[bad[0]]}", index=i)
            out = np.rint(us).astype(np.int64)
        else:
            if t.dtype.kind == "u" and t.dtype.itemsize == 8 and len(t) and int(t.max()) >= 1 << 62:
                i = base + int(np.argmax(t))
                raise EventFileError(self.path, f"event {i} has a timestamp beyond int64: {t.max()}", index=i)
            t = t.astype(np.int64)
            if scale is None:
                out = (t + 500) // 1000
            elif scale == 1:
                out = t
            else:
                if len(t) and int(np.abs(t).max()) > (1 << 62) // scale:
                    raise EventFileError(self.path, "timestamps overflow int64 microseconds", index=base)
                out = t * scale
        return out + self.t_offset if self.t_offset else out

    def _open(self, h5py):
        try:
            return h5py.File(self.path, "r")
        except _H5_ERRORS as exc:
            raise EventFileError(self.path, f"not a readable HDF5 file: {exc}") from None

    def _raw_chunks(self):
        self.counters = {}
        with self._open(_h5py()) as f:
            try:
                ds = {k: f[name] for k, name in self.datasets.items()}
                step = self._step(ds["t"])
            except _H5_ERRORS as exc:
                raise EventFileError(self.path, f"cannot read the HDF5 structure: {exc}") from None
            for i in range(0, self.n_events, step):
                x = self._integer_column(self._read(ds["x"], i, i + step), "x", i)
                y = self._integer_column(self._read(ds["y"], i, i + step), "y", i)
                t = self._times(self._read(ds["t"], i, i + step), i)
                p = self._read(ds["p"], i, i + step)
                yield self._events_from_columns(x, y, t, p)


class DsecWriter(EventWriter):
    """Writes the DSEC ``events.h5`` layout (readable by DSEC's own tools and by :class:`Hdf5Reader`).

    Args:
        path: output ``.h5``.
        width, height: sensor size in pixels (root attributes ``width``/``height``).
        compression: ``"gzip"`` (default), ``"lzf"`` or ``None``; no third-party filter is used.
        chunk_events: HDF5 chunk length of the event datasets.

    Timestamps (microseconds) must not decrease. ``t_offset`` = first timestamp rounded down to a
    whole millisecond; ``events/t`` (uint32) = t - t_offset, so a recording may span at most
    2^32 us (about 71.6 minutes).
    """

    format = "hdf5"

    def __init__(self, path, width, height, compression: str | None = "gzip", chunk_events: int = 1 << 16):
        super().__init__(path, width, height)
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
        h5py = _h5py()
        self._f = h5py.File(self.path, "w")
        self._f.attrs["width"] = np.int64(width)
        self._f.attrs["height"] = np.int64(height)
        g = self._f.create_group("events")
        opts = {"maxshape": (None,), "chunks": (int(chunk_events),), "compression": compression}
        self._ds = {
            "x": g.create_dataset("x", (0,), dtype="<u2", **opts),
            "y": g.create_dataset("y", (0,), dtype="<u2", **opts),
            "p": g.create_dataset("p", (0,), dtype="u1", **opts),
            "t": g.create_dataset("t", (0,), dtype="<u4", **opts),
        }
        self._ms = self._f.create_dataset("ms_to_idx", (0,), dtype="<u8", **opts)
        self.t_offset: int | None = None
        self._next_ms = 0

    def _write(self, events):
        t = events["t"]
        if self._last_t is not None and int(t[0]) < self._last_t:
            raise ValueError(
                f"{self.path}: timestamps must not decrease between chunks (event {self.events_written})"
            )
        dec = np.flatnonzero(t[1:] < t[:-1])
        if len(dec):
            i = self.events_written + int(dec[0]) + 1
            raise ValueError(f"{self.path}: timestamps decrease at event {i}; sort first")
        if self.t_offset is None:
            self.t_offset = int(t[0]) // 1000 * 1000
            self._f.create_dataset("t_offset", data=np.int64(self.t_offset))
        rel = t - self.t_offset
        if int(rel[-1]) >= 1 << 32:
            raise ValueError(
                f"{self.path}: DSEC stores t - t_offset as uint32; event at t={int(t[-1])} us is more than "
                f"2^32 us after t_offset={self.t_offset}"
            )
        n0, n = self.events_written, len(events)
        for key, values in (("x", events["x"]), ("y", events["y"]), ("p", events["p"]), ("t", rel)):
            ds = self._ds[key]
            ds.resize((n0 + n,))
            ds[n0:] = values
        last_ms = int(rel[-1]) // 1000
        if last_ms >= self._next_ms:
            thresholds = np.arange(self._next_ms, last_ms + 1, dtype=np.int64) * 1000
            idx = n0 + np.searchsorted(rel, thresholds, side="left")
            self._ms.resize((last_ms + 1,))
            self._ms[self._next_ms :] = idx.astype(np.uint64)
            self._next_ms = last_ms + 1

    def _finish(self):
        if self.t_offset is None:
            self._f.create_dataset("t_offset", data=np.int64(0))
        self._f.close()
