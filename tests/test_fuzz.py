"""Fuzzing every reader: random bytes and mutations (truncation, bit flips, overwritten and inserted
bytes) of valid recordings. The only acceptable outcomes are events or an EventFileError; any other
exception, a crash or a hang fails the test."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_events
from evstream.replay import READERS, EventFileError, open_events, write_events

WRITABLE = {
    "evt3": "raw",
    "evt2": "raw",
    "dat": "dat",
    "bin": "bin",
    "npz": "npz",
    "hdf5": "h5",
    "aedat4": "aedat4",
    "txt": "txt",
}


def _es_seed() -> bytes:
    rng = np.random.default_rng(3)
    body = bytearray(
        b"Event Stream\x02\x00\x00\x01" + (64).to_bytes(2, "little") + (48).to_bytes(2, "little")
    )
    for _ in range(200):
        if rng.random() < 0.1:
            body.append(0xFF)
        body.append(int(rng.integers(0, 127)) << 1 | int(rng.integers(0, 2)))
        body += int(rng.integers(0, 64)).to_bytes(2, "little") + int(rng.integers(0, 48)).to_bytes(
            2, "little"
        )
    return bytes(body)


def _evt21_seed() -> bytes:
    rng = np.random.default_rng(4)
    words = [(0x8 << 60) | (3 << 32)]
    for i in range(300):
        if i % 50 == 0:
            words.append((0x8 << 60) | ((4 + i) << 32))
        words.append(
            (int(rng.integers(0, 2)) << 60)
            | (int(rng.integers(0, 2)) * 32 << 43)
            | (int(rng.integers(0, 48)) << 32)
            | int(rng.integers(0, 1 << 32))
        )
    return b"% evt 2.1\n% format EVT21;width=64;height=48\n% end\n" + np.array(words, "<u8").tobytes()


def _evt3_vector_seed() -> bytes:
    words = [
        0x8001,
        0x6002,
        0x0005,
        0x3805,
        0x4FFF,
        0x50FF,
        0x2003,
        0x8002,
        0x0006,
        0x200A,
        0xA001,
        0xE014,
        0xF001,
        0x7001,
    ]
    return b"% evt 3.0\n% geometry 64x48\n" + np.array(words * 20, "<u2").tobytes()


def _aedat2_seed() -> bytes:
    rng = np.random.default_rng(5)
    n = 200
    addr = (rng.integers(0, 180, n) << 22) | (rng.integers(0, 240, n) << 12) | (rng.integers(0, 2, n) << 11)
    rec = np.empty((n, 2), ">i4")
    rec[:, 0] = addr
    rec[:, 1] = np.cumsum(rng.integers(0, 100, n))
    return b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n" + rec.tobytes()


def _aedat3_seed() -> bytes:
    rng = np.random.default_rng(6)
    out = bytearray(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS240C\r\n#!END-HEADER\r\n")
    for k in range(3):
        n = 50
        data = (
            (rng.integers(0, 240, n) << 17)
            | (rng.integers(0, 180, n) << 2)
            | (rng.integers(0, 2, n) << 1)
            | 1
        )
        ev = np.empty((n, 2), "<i4")
        ev[:, 0] = data
        ev[:, 1] = k * 1000 + np.arange(n)
        out += (
            np.array([1, 1], "<i2").tobytes() + np.array([8, 4, 0, n, n, n], "<i4").tobytes() + ev.tobytes()
        )
    return bytes(out)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """One small valid recording per readable format."""
    folder = tmp_path_factory.mktemp("seeds")
    ev = random_events(np.random.default_rng(1), 300, 34, 34, t0=100, max_dt=40)
    out = {}
    for fmt, ext in WRITABLE.items():
        path = folder / f"seed_{fmt}.{ext}"
        write_events(path, ev, 34, 34, format=fmt)
        out[fmt] = path.read_bytes()
    out["evt3_vectors"] = _evt3_vector_seed()
    out["evt21"] = _evt21_seed()
    out["es"] = _es_seed()
    out["aedat2"] = _aedat2_seed()
    out["aedat3"] = _aedat3_seed()
    return out


def _read(path, fmt):
    """Reads a file fully; returns None or raises if the outcome is not acceptable."""
    try:
        with open_events(path, format=fmt) as reader:
            for chunk in reader.chunks(1000):
                assert chunk.dtype.names == ("x", "y", "t", "p")
                if len(chunk):
                    assert int(chunk["x"].max()) < reader.width and int(chunk["y"].max()) < reader.height
    except EventFileError:
        pass


def _mutate(data: bytes, r: random.Random) -> bytes:
    """One random mutation, from a seeded generator (hypothesis draws only the seed: a mutation
    then never depends on how many values a previous run drew)."""
    if not data:
        return data
    kind = r.choice(["truncate", "flip", "overwrite", "insert", "zero_tail"])
    pos = r.randrange(len(data))
    if kind == "truncate":
        return data[:pos]
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(r.randint(1, 8)):
            buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
        return bytes(buf)
    junk = bytes(r.randrange(256) for _ in range(r.randint(1, 64)))
    if kind == "overwrite":
        return data[:pos] + junk + data[pos + len(junk) :]
    if kind == "insert":
        return data[:pos] + junk + data[pos:]
    return data[:pos] + bytes(len(data) - pos)


class _Seeds(dict):
    """The seed files, with a short repr: hypothesis prints a failing test's arguments, and the
    full bytes (over 100 kB) make it warn instead of showing the failure."""

    def __repr__(self):
        return f"<{len(self)} seed recordings>"


@pytest.fixture(scope="module")
def seed_bytes(seeds):
    return _Seeds(seeds)


SEED_FORMATS = sorted([*WRITABLE, "evt3_vectors", "evt21", "es", "aedat2", "aedat3"])


@pytest.mark.parametrize("seed_name", SEED_FORMATS)
def test_seeds_are_valid(seeds, seed_name, tmp_path):
    fmt = "evt3" if seed_name == "evt3_vectors" else seed_name
    path = tmp_path / "seed"
    path.write_bytes(seeds[seed_name])
    with open_events(path, format=fmt) as reader:
        assert len(reader.read_all()) > 0


@pytest.mark.parametrize("seed_name", SEED_FORMATS)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**64 - 1))
def test_mutated_recordings(seed_bytes, seed_name, tmp_path, seed):
    fmt = "evt3" if seed_name == "evt3_vectors" else seed_name
    mutated = _mutate(seed_bytes[seed_name], random.Random(seed))
    path = tmp_path / "mutated"
    path.write_bytes(mutated)
    _read(path, fmt)  # the reader for the format, forced
    _read(path, None)  # detection, then whichever reader it picks


@pytest.mark.parametrize("fmt", sorted(READERS))
@settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=2048))
def test_random_bytes(fmt, tmp_path, blob):
    path = tmp_path / "random"
    path.write_bytes(blob)
    _read(path, fmt)
