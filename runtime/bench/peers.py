"""Whole-file decoders from peer event-camera libraries, behind one common signature.

Every decoder takes a file path and returns ``{"x", "y", "t", "p"}`` as NumPy arrays, with ``t`` as int64
microseconds and ``p`` as 0/1 (uint8). ``x`` and ``y`` keep the integer type the peer produces. Where the
peer already yields a field of the right width, the result is a zero-copy view into the peer's own
structured array (so timings measure the peer's decoding, not a conversion we added).

Peers (all on PyPI): ``expelliarmus``, ``faery``, ``dv-processing``, ``aestream`` and ``tonic`` (tonic's
AEDAT4 reader needs the ``aedat`` package as well). Two plain baselines, ``h5py`` and ``numpy``, cover the
HDF5 and text formats that no peer reads as stored. Every import happens inside its decoder, so a missing
peer only makes that decoder raise ``ImportError``; ``available()`` lists the ones that can run.

``PEERS`` maps a format name ('evt3', 'evt2', 'dat', 'aedat4', 'bin', 'es', 'hdf5', 'txt') to a list of
``(peer_name, decoder)`` pairs. Known quirks of each peer are noted in the decoders' docstrings.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np

Events = dict[str, np.ndarray]
Decoder = Callable[[str], Events]

# Sensor size used when a file's header does not state one; decoding itself does not depend on it.
_FALLBACK_SIZE = (1280, 720)


def _as_int(a: np.ndarray, dtype: type[np.integer]) -> np.ndarray:
    """Return ``a`` as ``dtype``, reinterpreting in place when the item sizes already match."""
    target = np.dtype(dtype)
    if a.dtype == target:
        return a
    if a.dtype.itemsize == target.itemsize and a.dtype.kind in "biu":
        return a.view(target)
    return a.astype(target)


def _events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> Events:
    """Assemble the common output dictionary (t as int64 microseconds, p as uint8 0/1)."""
    return {"x": x, "y": y, "t": _as_int(t, np.int64), "p": _as_int(p, np.uint8)}


def _seconds_to_us(t: np.ndarray) -> np.ndarray:
    """Convert floating-point seconds to int64 microseconds, rounding to the nearest microsecond."""
    return np.rint(np.asarray(t, dtype=np.float64) * 1e6).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# expelliarmus: C decoder for Prophesee DAT, EVT 2.0 and EVT 3.0, returns one structured array.
# --------------------------------------------------------------------------------------------------


def _expelliarmus(path: str, encoding: str) -> Events:
    from expelliarmus import Wizard

    arr = Wizard(encoding=encoding).read(path)
    return _events(arr["t"], arr["x"], arr["y"], arr["p"])


def expelliarmus_evt3(path: str) -> Events:
    """Decode EVT 3.0 with ``expelliarmus.Wizard(encoding="evt3").read``.

    Known issue: when a TIME_LOW word steps backwards, expelliarmus takes it for a wrap of the low
    12 bits and adds 4096 us, so its timestamps run ahead of the specification (x, y, p are right).
    """
    return _expelliarmus(path, "evt3")


def expelliarmus_evt2(path: str) -> Events:
    """Decode EVT 2.0 with ``expelliarmus.Wizard(encoding="evt2").read``."""
    return _expelliarmus(path, "evt2")


def expelliarmus_dat(path: str) -> Events:
    """Decode Prophesee DAT (CD/2D events) with ``expelliarmus.Wizard(encoding="dat").read``."""
    return _expelliarmus(path, "dat")


# --------------------------------------------------------------------------------------------------
# faery: Rust decoders behind ``faery.events_stream_from_file(path).to_array()``.
# Its arrays have dtype [t u64, x u16, y u16, on bool].
# --------------------------------------------------------------------------------------------------


def _faery_array(path: str, **kwargs: object) -> np.ndarray:
    import faery

    return faery.events_stream_from_file(path, **kwargs).to_array()


def _faery_events(arr: np.ndarray) -> Events:
    return _events(arr["t"], arr["x"], arr["y"], arr["on"])


def faery_evt3(path: str) -> Events:
    """Decode EVT 3.0 with faery.

    faery keeps timestamps monotonic: a TIME_LOW word that steps backwards does not lower ``t``, so a
    few events can carry a later time than the specification gives (by up to ~10 us here).
    """
    return _faery_events(_faery_array(path, version_fallback="evt3", dimensions_fallback=_FALLBACK_SIZE))


def faery_evt2(path: str) -> Events:
    """Decode EVT 2.0 with faery (the version is forced, since it cannot be told from a .raw name)."""
    return _faery_events(_faery_array(path, version_fallback="evt2", dimensions_fallback=_FALLBACK_SIZE))


def faery_aedat4(path: str) -> Events:
    """Decode the first event stream of an AEDAT4 container with faery."""
    return _faery_events(_faery_array(path))


def faery_es(path: str) -> Events:
    """Decode an Event Stream (.es) file with faery.

    faery's public reader flips y (``height - 1 - y``) to put the origin at the top left; the flip is
    undone here so that the output holds the coordinates stored in the file, like the other decoders.
    """
    import faery

    stream = faery.events_stream_from_file(path)
    height = stream.dimensions()[1]
    arr = stream.to_array()
    y = (height - 1) - arr["y"]
    return _events(arr["t"], arr["x"], y.astype(arr["y"].dtype, copy=False), arr["on"])


def faery_dat(path: str) -> Events:
    """Decode Prophesee DAT with faery's low-level decoder (``faery.extension.dat.Decoder``).

    ``faery.events_stream_from_file`` rejects DAT files whose header declares "Event2D" events (type
    "2d", as in N-CARS) and only accepts "cd", so the packet decoder it wraps is called directly.
    """
    from faery.extension import dat

    with dat.Decoder(path, _FALLBACK_SIZE, "dat2") as decoder:
        packets = list(decoder)
    if packets:
        arr = np.concatenate(packets)
    else:
        arr = np.zeros(0, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("payload", "u1")])
    return _events(arr["t"], arr["x"], arr["y"], np.minimum(arr["payload"], 1))


def faery_txt(path: str) -> Events:
    """Decode a space-separated ``t x y p`` text file (t in seconds) with faery's CSV reader."""
    from faery.file_decoder import CsvProperties

    props = CsvProperties(
        has_header=False,
        separator=b" ",
        t_index=0,
        x_index=1,
        y_index=2,
        on_index=3,
        t_scale=1e6,
        on_value=b"1",
        off_value=b"0",
        skip_errors=False,
    )
    arr = _faery_array(path, file_type="csv", csv_properties=props, dimensions_fallback=_FALLBACK_SIZE)
    return _faery_events(arr)


# --------------------------------------------------------------------------------------------------
# dv-processing (iniVation): AEDAT4 only, read batch by batch.
# --------------------------------------------------------------------------------------------------


def dv_processing_aedat4(path: str) -> Events:
    """Decode the event stream of an AEDAT4 file with ``dv_processing.io.MonoCameraRecording``."""
    import dv_processing as dv

    reader = dv.io.MonoCameraRecording(path)
    batches = []
    while True:
        batch = reader.getNextEventBatch()
        if batch is None:
            break
        batches.append(batch.numpy())
    if batches:
        arr = np.concatenate(batches)
    else:
        arr = np.zeros(0, dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    return _events(arr["timestamp"], arr["x"], arr["y"], arr["polarity"])


# --------------------------------------------------------------------------------------------------
# aestream: ``aestream.FileInput(path, shape).load()``; the reader is chosen by file extension
# (.aedat4, .dat, .raw = EVT 3.0 only, .csv). The shape argument does not affect ``load()``.
# --------------------------------------------------------------------------------------------------


def _aestream(path: str) -> Events:
    import aestream

    arr = aestream.FileInput(path, _FALLBACK_SIZE).load()
    return _events(arr["timestamp"], arr["x"], arr["y"], arr["polarity"])


def aestream_evt3(path: str) -> Events:
    """Decode EVT 3.0 (the path must end in ``.raw``) with aestream.

    Known issue: x, y and p are right, but the timestamps are wrong from the first few dozen events on
    (they jump ahead by seconds and are not monotonic).
    """
    return _aestream(path)


def aestream_dat(path: str) -> Events:
    """Decode Prophesee DAT with aestream."""
    return _aestream(path)


def aestream_aedat4(path: str) -> Events:
    """Decode AEDAT4 with aestream.

    Known issue: returns no events at all, without an error, for some files (tonic's sample.aedat4).
    """
    return _aestream(path)


# --------------------------------------------------------------------------------------------------
# tonic: ``tonic.io`` readers (AEDAT4 through the ``aedat`` package, N-MNIST .bin in NumPy).
# --------------------------------------------------------------------------------------------------


def tonic_aedat4(path: str) -> Events:
    """Decode the event stream of an AEDAT4 file with ``tonic.io.read_aedat4`` (needs ``aedat``)."""
    import tonic.io

    arr = tonic.io.read_aedat4(path)
    return _events(arr["t"], arr["x"], arr["y"], arr["on"])


def tonic_bin(path: str) -> Events:
    """Decode an N-MNIST / N-Caltech101 40-bit .bin file with ``tonic.io.read_mnist_file``."""
    import tonic.io

    arr = tonic.io.read_mnist_file(path, dtype=tonic.io.events_struct)
    return _events(arr["t"], arr["x"], arr["y"], arr["p"])


# --------------------------------------------------------------------------------------------------
# Baselines for formats no peer reads as stored (not peers; plain library calls).
# --------------------------------------------------------------------------------------------------


def h5py_hdf5(path: str) -> Events:
    """Read ``raw_events/{x,y,t,p}`` with h5py (t in seconds, converted to microseconds).

    The datasets are returned under the names they carry in the file (the sample file stores x and y
    swapped with respect to its text twin).
    """
    import h5py

    with h5py.File(path, "r") as f:
        group = f["raw_events"]
        x = group["x"][()]
        y = group["y"][()]
        t = group["t"][()]
        p = group["p"][()]
    if t.dtype.kind == "f":
        t = _seconds_to_us(t)
    return _events(t, x, y, p)


def numpy_txt(path: str) -> Events:
    """Read a whitespace-separated ``t x y p`` text file (t in seconds) with ``numpy.loadtxt``."""
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return _events(
        _seconds_to_us(table[:, 0]),
        table[:, 1].astype(np.int32),
        table[:, 2].astype(np.int32),
        (table[:, 3] > 0).astype(np.uint8),
    )


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

PEERS: dict[str, list[tuple[str, Decoder]]] = {
    "evt3": [
        ("expelliarmus", expelliarmus_evt3),
        ("faery", faery_evt3),
        ("aestream", aestream_evt3),
    ],
    "evt2": [
        ("expelliarmus", expelliarmus_evt2),
        ("faery", faery_evt2),
    ],
    "dat": [
        ("expelliarmus", expelliarmus_dat),
        ("faery", faery_dat),
        ("aestream", aestream_dat),
    ],
    "aedat4": [
        ("faery", faery_aedat4),
        ("dv-processing", dv_processing_aedat4),
        ("tonic", tonic_aedat4),
        ("aestream", aestream_aedat4),
    ],
    "bin": [("tonic", tonic_bin)],
    "es": [("faery", faery_es)],
    "hdf5": [("h5py", h5py_hdf5)],
    "txt": [
        ("faery", faery_txt),
        ("numpy", numpy_txt),
    ],
}

# Modules each peer name needs; used by ``available`` to skip peers that are not installed.
_REQUIRES: dict[str, tuple[str, ...]] = {
    "expelliarmus": ("expelliarmus",),
    "faery": ("faery",),
    "dv-processing": ("dv_processing",),
    "aestream": ("aestream",),
    "tonic": ("tonic", "aedat"),
    "h5py": ("h5py",),
    "numpy": ("numpy",),
}


def _installed(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available(fmt: str) -> list[tuple[str, Decoder]]:
    """Return the decoders registered for ``fmt`` whose libraries are importable.

    tonic's .bin reader does not need ``aedat``, so that requirement only applies to its AEDAT4 reader.
    """
    result = []
    for name, fn in PEERS.get(fmt, []):
        needed = _REQUIRES.get(name, ())
        if name == "tonic" and fmt != "aedat4":
            needed = ("tonic",)
        if all(_installed(m) for m in needed):
            result.append((name, fn))
    return result


# --------------------------------------------------------------------------------------------------
# Worker: ``python -m evstream.runtime.bench.peers --worker PEER FORMAT PATH WARMUP RUNS OUT.npz``
# times one peer in its own process (a peer that crashes, as aestream can, then cannot take the
# benchmark down) and saves its output for the parent's correctness check. Prints one JSON line:
# {"times": [...], "events": n}.
# --------------------------------------------------------------------------------------------------


def _worker(argv: list[str]) -> int:
    import json
    import time

    peer, fmt, path, warmup, runs, out = argv
    fn = dict(PEERS[fmt])[peer]
    result = None
    for _ in range(int(warmup)):
        result = fn(path)
    times = []
    for _ in range(int(runs)):
        start = time.perf_counter()
        result = fn(path)
        times.append(time.perf_counter() - start)
    np.savez(out, **{k: np.asarray(v) for k, v in result.items()})
    print(json.dumps({"times": times, "events": int(len(result["t"]))}))
    return 0


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 8 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2:]))
    print(
        "usage: python -m evstream.runtime.bench.peers --worker PEER FORMAT PATH WARMUP RUNS OUT.npz",
        file=sys.stderr,
    )
    sys.exit(2)
