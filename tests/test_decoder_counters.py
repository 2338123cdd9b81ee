"""Decoder counters that must not depend on how the input is split into chunks.

- ``t_backwards`` counts the times an emitted event's t is below the previous emitted event's:
  a vector word (EVT 2.1, EVT 3.0) whose pixels all fall outside the sensor emits nothing and
  must not count its time step; and the seam of a two-thread block (>= 1 MiB: EVT 2.0, EVT 3.0,
  DAT) must count a step back even when the block's first half emits nothing.
- ``bytes`` counts the bytes consumed (whole words or events): ``bytes + pending_bytes`` is the
  number of bytes fed, for every decoder, the Event Stream ones too.
"""

from __future__ import annotations

import numpy as np
import pytest

from evstream.kernels import _core

BIG = (1 << 20) + 64  # over the two-thread size (DecoderBase::kParallelBytes)


def _descents(ev: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(ev["t"]) < 0))


def _u16(words) -> bytes:
    return np.asarray(words, "<u2").tobytes()


def _u32(words) -> bytes:
    return np.asarray(words, "<u4").tobytes()


def _decode(dec, chunks) -> np.ndarray:
    parts = [dec.decode(np.frombuffer(c, np.uint8)) for c in chunks]
    return np.concatenate(parts)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ------------------------------------------------------------------ vectors outside the sensor
def test_evt3_vector_outside_the_sensor_counts_no_time_step():
    words = [
        0x8001,  # TIME_HIGH 1: t = 4096
        0x0005,  # y = 5
        0x2005,  # event at x = 5, t = 4096
        0x8000,  # TIME_HIGH 0: t = 0
        0x3000 | 2000,  # VECT_BASE_X 2000
        0x4FFF,  # VECT_12: pixels 2000..2011, all outside 1280 columns: nothing emitted
        0x8001,  # TIME_HIGH 1: t = 4096
        0x2006,  # event at x = 6, t = 4096
    ]
    dec = _core.Evt3Decoder(1280, 720)
    ev = dec.decode(np.frombuffer(_u16(words), np.uint8))
    c = dec.counters
    assert ev["t"].tolist() == [4096, 4096] and c["out_of_bounds"] == 12
    assert c["t_backwards"] == _descents(ev) == 0


def test_evt21_vector_outside_the_sensor_counts_no_time_step():
    def cd(t_low, x0, y, mask):  # EVT 2.1 CD_ON word: low 32 bits = mask, then the high half
        return [mask, (0x1 << 28) | (t_low << 22) | (x0 << 11) | y]

    words = [0, (0x8 << 28) | 16]  # TIME_HIGH 16: t base 1024
    words += cd(10, 0, 5, 0x1)  # event at t = 1034
    words += cd(0, 640, 5, 0xF)  # t = 1024, pixels 640..643: outside 640 columns
    words += cd(20, 32, 5, 0x1)  # event at t = 1044
    dec = _core.Evt21Decoder(640, 480)
    ev = dec.decode(np.frombuffer(_u32(words), np.uint8))
    c = dec.counters
    assert ev["t"].tolist() == [1034, 1044] and c["out_of_bounds"] == 4
    assert c["t_backwards"] == _descents(ev) == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", ["Evt2Decoder", "Evt21Decoder", "Evt3Decoder", "DatDecoder"])
def test_t_backwards_is_the_same_for_any_split_of_random_bytes(name, seed):
    """Random bytes (time steps back, pixels outside the sensor) as one block over 1 MiB (two
    threads where the format has them) and in chunks: same events, same t_backwards, which is the
    number of steps back of the emitted events."""
    data = np.random.default_rng(seed).integers(0, 256, BIG + 4096, np.uint8).tobytes()
    args = (640, 480, 14, 14) if name == "DatDecoder" else (640, 480)
    make = getattr(_core, name)
    whole_dec, split_dec = make(*args), make(*args)
    whole = _decode(whole_dec, [data])
    split = _decode(split_dec, _pieces(data, 100_000))
    assert np.array_equal(whole, split)
    assert whole_dec.counters == split_dec.counters
    assert whole_dec.counters["t_backwards"] == _descents(whole)


# ------------------------------------------------------------------ two-thread seams
def _evt2_seam() -> tuple[bytes, bytes]:
    """A chunk with an event at t 960; then a block whose first half is OTHERS words and whose
    second half (from a TIME_HIGH 0) holds events at t 0."""
    c1 = _u32([0x80000000 | (1000 >> 6), (1 << 28) | (5 << 11) | 5])
    head = [0x80000000 | (1000 >> 6)] + [0xE0000000] * ((BIG // 2 + 8) // 4)
    tail = [0x80000000] + [(1 << 28) | (5 << 11) | 5] * ((BIG - 4 * len(head)) // 4)
    return c1, _u32(head + tail)


def _evt3_seam() -> tuple[bytes, bytes]:
    """A chunk with an event at t 4096; then a block whose first half is OTHERS words and whose
    second half holds events at t 0 (the split is at a TIME_HIGH that differs from the last one)."""
    c1 = _u16([0x8001, 0x0005, 0x2005])
    head = [0x8001] + [0xE000] * ((BIG // 2 + 4) // 2) + [0x8001, 0xE000]
    tail = [0x8000] + [0x2005] * ((BIG - 2 * len(head)) // 2)
    return c1, _u16(head + tail)


def _dat_seam() -> tuple[bytes, bytes]:
    """A chunk with an event at t 1000; then a block whose first half is events outside the sensor
    and whose second half holds events at t 500."""
    c1 = _u32([1000, 5])
    k = BIG // 16
    return c1, _u32([1000, 700] * k + [500, 5] * k)


@pytest.mark.parametrize(
    "name, build",
    [("Evt2Decoder", _evt2_seam), ("Evt3Decoder", _evt3_seam), ("DatDecoder", _dat_seam)],
)
def test_seam_after_an_empty_first_half_counts_the_step_back(name, build):
    c1, block = build()
    assert len(block) >= 1 << 20  # decoded by two threads
    args = (640, 480, 14, 14) if name == "DatDecoder" else (640, 480)
    make = getattr(_core, name)
    whole_dec, split_dec = make(*args), make(*args)
    whole = _decode(whole_dec, [c1, block])
    split = _decode(split_dec, [c1, *_pieces(block, 65536)])
    assert np.array_equal(whole, split) and _descents(whole) == 1
    assert split_dec.counters["t_backwards"] == 1
    assert whole_dec.counters == split_dec.counters


# ------------------------------------------------------------------ bytes consumed
def _event_stream(rng, n: int, atis: bool) -> bytes:
    """An Event Stream 2.x byte stream (no header) of n events, with time overflow and reset
    bytes in between."""
    out = bytearray()
    for _ in range(n):
        if rng.random() < 0.05:
            out.append(0xFD if atis else 0xFF)  # time overflow
        if rng.random() < 0.02:
            out.append(0xFC if atis else 0xFE)  # reset
        delta, p = int(rng.integers(0, 63)), int(rng.integers(0, 2))
        out.append((delta << 2) | (p << 1) if atis else (delta << 1) | p)
        out += int(rng.integers(0, 346)).to_bytes(2, "little") + int(rng.integers(0, 260)).to_bytes(
            2, "little"
        )
    return bytes(out)


@pytest.mark.parametrize("name", ["EsDvsDecoder", "EsAtisDecoder"])
def test_es_bytes_plus_pending_is_what_was_fed(name, rng):
    data = _event_stream(rng, 2000, atis=name == "EsAtisDecoder")
    dec = getattr(_core, name)(346, 260)
    fed = 0
    cuts = np.sort(rng.integers(0, len(data), 300))
    for piece in np.split(np.frombuffer(data, np.uint8), cuts):
        dec.decode(piece)
        fed += len(piece)
        assert 0 <= dec.pending_bytes <= 4
        assert dec.counters["bytes"] + dec.pending_bytes == fed
    assert dec.pending_bytes == 0 and dec.counters["bytes"] == len(data) and dec.counters["events"] == 2000
    dec.decode(np.array([0x10, 0x01, 0x00], np.uint8))  # an incomplete event: held back, not consumed
    assert dec.pending_bytes == 3 and dec.counters["bytes"] == len(data)


@pytest.mark.parametrize(
    "name, args, word",
    [
        ("Evt2Decoder", (640, 480), 4),
        ("Evt21Decoder", (640, 480), 8),
        ("Evt3Decoder", (640, 480), 2),
        ("DatDecoder", (640, 480, 14, 14), 8),
        ("AtisBinDecoder", (34, 34), 5),
        ("EsDvsDecoder", (346, 260), 1),
        ("EsAtisDecoder", (346, 260), 1),
    ],
)
def test_bytes_plus_pending_is_what_was_fed_for_random_bytes(name, args, word, rng):
    data = rng.integers(0, 256, 50_000, np.uint8)
    dec = getattr(_core, name)(*args)
    fed = 0
    for piece in np.split(data, np.sort(rng.integers(0, len(data), 500))):
        dec.decode(piece)
        fed += len(piece)
        assert dec.counters["bytes"] + dec.pending_bytes == fed
        assert dec.counters["bytes"] % word == 0
