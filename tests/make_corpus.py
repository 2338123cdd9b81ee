"""Writes the crafted bad-input corpus in tests/data/corpus/ (``python tests/make_corpus.py``;
deterministic apart from the dates the RAW and DAT writers and zip stamp) and records in MANIFEST.json
each file's outcome with its format's reader and with format detection. tests/test_corpus.py
reads every file again and checks those outcomes.

Per format, from one small valid recording (``<format>__valid.<ext>``): a zero-length file, the
header alone, the file truncated at every packet boundary (AEDAT packets, zip members; every 16
words or records of the formats without packets, every 64 bytes of Event Stream, every 16th text
line, 12 cuts through HDF5) and one byte either side, single bit
flips, and per format the declared sizes and flags that can lie: packet and header sizes of
gigabytes, array shapes of terabytes (N-ImageNet .npz, HDF5), sensor sizes of 65535 x 65535,
wrong compression flags (AEDAT 4.0 IOHeader, zip members).
"""

from __future__ import annotations

import io
import json
import random
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_fuzz import _aedat2_seed, _aedat3_seed, _es_seed, _evt21_seed  # noqa: E402

from conftest import random_events  # noqa: E402
from evstream.replay import open_writer  # noqa: E402
from evstream.replay.aedat4_format import MAGIC as AEDAT4_MAGIC  # noqa: E402

OUT = HERE / "data" / "corpus"
W, H = 34, 34


def _events(n=120):
    return random_events(np.random.default_rng(7), n, W, H, t0=1000, max_dt=30)


def _written(ext: str, write) -> bytes:
    """The bytes ``write(path)`` puts in a temporary file."""
    path = OUT / f"_tmp.{ext}"
    write(path)
    data = path.read_bytes()
    path.unlink()
    return data


def _write(fmt: str, ext: str) -> bytes:
    """A valid recording written by evstream's writer."""

    def write(path):
        with open_writer(path, W, H, format=fmt) as w:
            w.write(_events())

    return _written(ext, write)


def _aedat4(compression: str) -> bytes:
    from evstream.replay.aedat4 import Aedat4Writer

    def write(path):
        with Aedat4Writer(path, W, H, compression=compression, packet_events=30) as w:
            w.write(_events())

    return _written("aedat4", write)


def _aedat4_packets(data: bytes) -> list[int]:
    """Byte offsets where each AEDAT 4.0 packet starts (and the end of the last)."""
    (size,) = struct.unpack_from("<I", data, len(AEDAT4_MAGIC))
    pos = len(AEDAT4_MAGIC) + 4 + size
    bounds = [pos]
    while pos + 8 <= len(data):
        _, n = struct.unpack_from("<ii", data, pos)
        if n <= 0 or pos + 8 + n > len(data):
            break
        pos += 8 + n
        bounds.append(pos)
    return bounds


def _aedat3_packets(data: bytes) -> list[int]:
    pos = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    bounds = [pos]
    while pos + 28 <= len(data):
        size, _, _, capacity = struct.unpack_from("<iiii", data, pos + 4)
        pos += 28 + size * capacity
        bounds.append(pos)
    return bounds


def _npz_members(data: bytes) -> list[int]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    bounds = []
    for info in zf.infolist():
        name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        bounds += [info.header_offset, start, start + info.compress_size]
    bounds.append(zf.start_dir)
    return sorted(set(bounds))


def _prophesee_header_end(data: bytes) -> int:
    pos = 0
    while pos < len(data) and data[pos : pos + 1] == b"%":
        pos = data.index(b"\n", pos) + 1
    return pos


def _evenly(lo: int, hi: int, step: int) -> list[int]:
    return list(range(lo, hi, step)) + [hi]


def _npy_member_with_shape(shape_text: str) -> bytes:
    """An N-ImageNet-style .npz whose event_data header declares ``shape_text`` over 8 events."""
    ev = _events(8)
    arr = np.zeros(8, [("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    for f in ("x", "y", "t", "p"):
        arr[f] = ev[f]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    header_len = struct.unpack_from("<H", raw, 8)[0]
    header = raw[10 : 10 + header_len].decode("latin1")
    header = header.replace("(8,)", shape_text)
    header = (header.rstrip() + " " * 200)[: header_len - 1] + "\n"
    raw = raw[:10] + header.encode("latin1") + raw[10 + header_len :]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("event_data.npy", raw)
    return out.getvalue()


def _hdf5_declared(n: int) -> bytes:
    """An HDF5 file with x/y/t/p datasets declaring ``n`` events, almost none of them written."""
    import h5py

    def write(path):
        with h5py.File(path, "w") as f:
            g = f.create_group("events")
            for name, dt in (("x", "u2"), ("y", "u2"), ("t", "i8"), ("p", "u1")):
                d = g.create_dataset(name, shape=(n,), dtype=dt, chunks=(1024,), maxshape=(None,))
                d[:8] = np.arange(8)
            f.attrs["width"], f.attrs["height"] = W, H

    return _written("h5", write)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    manifest = []
    rng = random.Random(2026)

    def add(name: str, fmt: str, data: bytes, damage: str, seed: str | None = None) -> None:
        (OUT / name).write_bytes(data)
        manifest.append({"file": name, "format": fmt, "damage": damage, "seed": seed})

    seeds = {
        # format: (extension, valid recording)
        "evt3": ("raw", _write("evt3", "raw")),
        "evt2": ("raw", _write("evt2", "raw")),
        "evt21": ("raw", _evt21_seed()),
        "dat": ("dat", _write("dat", "dat")),
        "bin": ("bin", _write("bin", "bin")),
        "npz": ("npz", _write("npz", "npz")),
        "hdf5": ("h5", _write("hdf5", "h5")),
        "aedat4": ("aedat4", _aedat4("none")),
        "aedat2": ("aedat", _aedat2_seed()),
        "aedat3": ("aedat", _aedat3_seed()),
        "es": ("es", _es_seed()),
        "txt": ("txt", _write("txt", "txt")),
    }
    for fmt, (ext, data) in seeds.items():
        valid = f"{fmt}__valid.{ext}"
        add(valid, fmt, data, "none")
        add(f"{fmt}__empty.{ext}", fmt, b"", "zero-length file")
        if fmt in ("evt3", "evt2", "evt21", "dat"):
            head = _prophesee_header_end(data)
            word = {"evt3": 2, "evt2": 4, "evt21": 8, "dat": 8}[fmt]
            body = head + (2 if fmt == "dat" else 0)  # DAT: event type and size bytes
            cuts = _evenly(body, len(data), word * 16)
        elif fmt == "bin":
            head, cuts = 0, _evenly(0, len(data), 5 * 16)
        elif fmt == "aedat4":
            cuts = _aedat4_packets(data)
            head = cuts[0]
        elif fmt == "aedat3":
            cuts = _aedat3_packets(data)
            head = cuts[0]
        elif fmt == "aedat2":
            head = data.index(b"DAVIS240C\r\n") + len(b"DAVIS240C\r\n")
            cuts = _evenly(head, len(data), 8 * 16)
        elif fmt == "npz":
            cuts = _npz_members(data)
            head = 0
        elif fmt == "es":
            head = 16
            cuts = _evenly(head, len(data), 64)
        elif fmt == "txt":
            head = 0
            lines = [i + 1 for i, b in enumerate(data) if b == 0x0A]
            cuts = lines[::16]
        else:  # hdf5: no packets; evenly spaced cuts through the structures and chunks
            head = 0
            cuts = _evenly(0, len(data), max(1, len(data) // 12))
        if head:
            add(f"{fmt}__header_only.{ext}", fmt, data[:head], "header only", valid)
        for cut in sorted(set(cuts)):
            for d in (-1, 0, 1):
                c = cut + d
                if 0 < c < len(data) and c != head:
                    add(f"{fmt}__cut_{c}.{ext}", fmt, data[:c], f"truncated at byte {c}", valid)
        for _ in range(6):
            pos = rng.randrange(len(data))
            bit = rng.randrange(8)
            buf = bytearray(data)
            buf[pos] ^= 1 << bit
            add(f"{fmt}__flip_{pos}_{bit}.{ext}", fmt, bytes(buf), f"bit {bit} of byte {pos} flipped", valid)

    # Declared sizes that lie.
    a4 = seeds["aedat4"][1]
    bounds = _aedat4_packets(a4)
    buf = bytearray(a4)
    struct.pack_into("<i", buf, bounds[1] + 4, 0x7FFFFFFF)  # second packet claims 2 GiB
    add("aedat4__packet_size_2GiB.aedat4", "aedat4", bytes(buf), "packet size 2^31-1", "aedat4__valid.aedat4")
    buf = bytearray(a4)
    struct.pack_into("<I", buf, len(AEDAT4_MAGIC), 0xFFFFFFF0)  # IOHeader of 4 GiB
    add("aedat4__ioheader_size_4GiB.aedat4", "aedat4", bytes(buf), "IOHeader size 2^32-16", None)
    buf = bytearray(a4)
    struct.pack_into("<q", buf, len(AEDAT4_MAGIC) + 32, 1 << 40)  # data table 1 TiB into the file
    add("aedat4__table_at_1TiB.aedat4", "aedat4", bytes(buf), "data table position 2^40", None)
    # Wrong compression flags: uncompressed packets declared LZ4 / ZSTD, LZ4 packets declared none.
    for code, name in ((1, "lz4"), (3, "zstd")):
        buf = bytearray(a4)
        struct.pack_into("<i", buf, len(AEDAT4_MAGIC) + 28, code)
        add(f"aedat4__flag_{name}_data_none.aedat4", "aedat4", bytes(buf), f"compression flag {name}", None)
    lz = bytearray(_aedat4("lz4"))
    struct.pack_into("<i", lz, len(AEDAT4_MAGIC) + 28, 0)
    add("aedat4__flag_none_data_lz4.aedat4", "aedat4", bytes(lz), "compression flag none, LZ4 data", None)
    buf = bytearray(a4)
    struct.pack_into("<i", buf, len(AEDAT4_MAGIC) + 28, 77)
    add("aedat4__flag_unknown.aedat4", "aedat4", bytes(buf), "compression code 77", None)

    a3 = seeds["aedat3"][1]
    p0 = _aedat3_packets(a3)[0]
    for field, value, label in ((16, 0x7FFFFFFF, "event_number"), (20, 0x7FFFFFFF, "event_capacity")):
        buf = bytearray(a3)
        struct.pack_into("<i", buf, p0 + field, value)
        add(
            f"aedat3__{label}_2G.aedat", "aedat3", bytes(buf), f"packet {label} 2^31-1", "aedat3__valid.aedat"
        )
    buf = bytearray(a3)
    struct.pack_into("<i", buf, p0 + 4, 0x7FFFFFFF)  # event size
    add(
        "aedat3__event_size_2G.aedat", "aedat3", bytes(buf), "packet event size 2^31-1", "aedat3__valid.aedat"
    )

    add("npz__shape_1T.npz", "npz", _npy_member_with_shape("(1000000000000,)"), "npy shape 10^12", None)
    add("npz__shape_negative.npz", "npz", _npy_member_with_shape("(-8,)"), "npy shape -8", None)
    z = bytearray(seeds["npz"][1])
    zf = zipfile.ZipFile(io.BytesIO(bytes(z)))
    first = zf.infolist()[0]
    for off in (first.header_offset + 22, zf.start_dir + 24):  # local and central uncompressed size
        struct.pack_into("<I", z, off, 0xFFFFFFFE)
    add("npz__member_size_4GiB.npz", "npz", bytes(z), "zip member declares 4 GiB", None)
    z = bytearray(seeds["npz"][1])
    method = struct.unpack_from("<H", z, first.header_offset + 8)[0]
    flipped = 0 if method == 8 else 8
    struct.pack_into("<H", z, first.header_offset + 8, flipped)
    struct.pack_into("<H", z, zf.start_dir + 10, flipped)
    add("npz__wrong_compression_flag.npz", "npz", bytes(z), f"zip method {method} -> {flipped}", None)
    z = bytearray(seeds["npz"][1])
    struct.pack_into("<H", z, first.header_offset + 8, 12)  # bzip2 in the local header only
    struct.pack_into("<H", z, zf.start_dir + 10, 12)
    add("npz__method_bzip2.npz", "npz", bytes(z), "zip method 12 (bzip2) over deflate data", None)

    add("hdf5__declared_1T_events.h5", "hdf5", _hdf5_declared(10**12), "datasets of 10^12 events", None)

    for fmt, ext in (("evt3", "raw"), ("evt2", "raw")):
        data = seeds[fmt][1]
        head = _prophesee_header_end(data)
        text = data[:head].decode("latin1")
        lines = [ln for ln in text.splitlines() if not ln.startswith(("% geometry", "% format"))]
        lines.insert(1, "% geometry 65535x65535")
        big = ("\n".join(lines) + "\n").encode("latin1") + data[head:]
        add(f"{fmt}__geometry_65535.{ext}", fmt, big, "sensor 65535x65535 declared", None)
        lines[1] = "% geometry 4000000000x4000000000"
        huge = ("\n".join(lines) + "\n").encode("latin1") + data[head:]
        add(f"{fmt}__geometry_4G.{ext}", fmt, huge, "sensor 4e9x4e9 declared", None)

    _write_manifest(manifest)  # the worker reads the files the manifest lists
    record_outcomes(manifest)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(manifest)} files, {total / 1024:.0f} KiB in {OUT}")


def outcome_key(row: dict) -> dict:
    """What the manifest records of one reading: the events read, or the error's first words."""
    if row["result"] == "events":
        return {"result": "events", "events": row["events"]}
    if row["result"] == "error":
        return {"result": "error", "error": row["error"][:48]}
    return {"result": row["result"]}


def run_worker(corpus: Path, limit_mb: int = 512, timeout_s: float = 20.0) -> list[dict]:
    """Runs tests/corpus_worker.py on ``corpus``; returns its JSON lines."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(HERE / "corpus_worker.py"), str(corpus), str(limit_mb), str(timeout_s)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not rows or not rows[-1].get("done"):
        last = next((r for r in reversed(rows) if "start" in r), None)
        raise RuntimeError(
            f"the corpus worker died (exit {proc.returncode}) while reading {last}: {proc.stderr[-2000:]}"
        )
    return rows


def record_outcomes(manifest: list[dict]) -> None:
    """Stores each file's outcomes (reader forced, format detected) in ``manifest`` and
    MANIFEST.json, after checking that every one of them is acceptable (tests/test_corpus.py
    checks the same)."""
    rows = {(r["file"], r["mode"]): r for r in run_worker(OUT) if "result" in r}
    for entry in manifest:
        for mode in ("forced", "detected"):
            row = rows[(entry["file"], mode)]
            assert row["result"] in ("events", "error"), row
            entry[mode] = outcome_key(row)
    _write_manifest(manifest)


def _write_manifest(manifest: list[dict]) -> None:
    lines = ",\n".join(" " + json.dumps(entry) for entry in manifest)
    (OUT / "MANIFEST.json").write_text("[\n" + lines + "\n]\n")


if __name__ == "__main__":
    main()
