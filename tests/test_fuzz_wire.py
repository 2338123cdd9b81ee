"""Fuzzing the ZeroMQ message parser (runtime/wire.py) and what follows it, with hypothesis.

* Any frames (random bytes, mutated valid messages, headers with any JSON values) give a valid
  message or a WireError, never another exception; a message that decodes satisfies the format's
  invariants.
* Messages in any record layout the format allows decode exactly as a slow reference decoder
  (one record at a time with int.from_bytes) says: every event whose values fit is kept unchanged,
  every other event is counted, nothing wraps around; decoding allocates a bounded amount.
* Decoded streams with any timestamps (backwards, far in the future, the int64 extremes) pass
  through the pipeline's windows and histogram without a crash or a stall, every event counted.
"""

from __future__ import annotations

import json
import random
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_events
from evstream.kernels.events import EVENT_DTYPE
from evstream.runtime import wire
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.sources import Source
from evstream.runtime.windows import CountWindowSpec, TimeWindowSpec

I64 = (-(2**63), 2**63 - 1)
FAST = settings(max_examples=300, deadline=None, database=None)


def _check_message(msg: wire.Message, count: int | None = None) -> None:
    assert msg.kind in ("events", "eos")
    if msg.kind == "eos":
        assert msg.events is None
        return
    ev = msg.events
    assert ev.dtype == EVENT_DTYPE
    if len(ev):
        assert int(ev["x"].max()) < msg.width and int(ev["y"].max()) < msg.height
        assert int(ev["p"].max()) <= 1
    if count is not None:
        assert len(ev) + msg.dropped_out_of_bounds == count


def _decode_or_reject(frames, count=None):
    try:
        msg = wire.decode(frames)
    except wire.WireError as exc:
        assert str(exc)  # says what was wrong
        return None
    _check_message(msg, count)
    return msg


# --------------------------------------------------------------------------- arbitrary frames
@FAST
@given(frames=st.lists(st.binary(max_size=300), max_size=3))
def test_random_frames(frames):
    _decode_or_reject(frames)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEYS = [
    "proto",
    "version",
    "kind",
    "stream",
    "seq",
    "first",
    "count",
    "width",
    "height",
    "itemsize",
    "fields",
]


def _valid_frames(rng_seed: int, n: int) -> list[bytes]:
    ev = random_events(np.random.default_rng(rng_seed), n, 64, 48)
    return [bytes(f) for f in wire.encode_events(ev, "s", 0, 0, 64, 48)]


@FAST
@given(
    n=st.integers(0, 20),
    edits=st.lists(
        st.tuples(st.sampled_from(["set", "delete", "field"]), st.sampled_from(_KEYS), _JSON), max_size=4
    ),
    payload_delta=st.integers(-20, 20),
)
def test_headers_with_any_values(n, edits, payload_delta):
    head, payload = _valid_frames(n, n)
    header = json.loads(head)
    for op, key, value in edits:
        if op == "set":
            header[key] = value
        elif op == "delete":
            header.pop(key, None)
        elif isinstance(header.get("fields"), list) and header["fields"]:
            header["fields"][hash(key) % len(header["fields"])] = value
    if payload_delta > 0:
        payload += bytes(payload_delta)
    elif payload_delta < 0:
        payload = payload[:payload_delta]
    count = header.get("count") if not edits and not payload_delta else None
    _decode_or_reject([json.dumps(header).encode(), payload], count)


@FAST
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(0, 30))
def test_mutated_messages(seed, n):
    """Bit flips, truncations, overwritten and inserted bytes anywhere in a valid message."""
    r = random.Random(seed)
    frames = [bytearray(f) for f in _valid_frames(n, n)]
    for _ in range(r.randint(1, 4)):
        f = frames[r.randrange(2)]
        kind = r.choice(["flip", "truncate", "overwrite", "insert"])
        pos = r.randrange(len(f) + 1)
        if kind == "flip" and f:
            f[r.randrange(len(f))] ^= 1 << r.randrange(8)
        elif kind == "truncate":
            del f[pos:]
        elif kind == "overwrite":
            f[pos : pos + 4] = bytes(r.randrange(256) for _ in range(4))
        else:
            f[pos:pos] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
    _decode_or_reject([bytes(f) for f in frames])


def test_sizes_of_terabytes_are_refused_before_allocating():
    head, _ = _valid_frames(0, 0)
    for count in (1 << 40, wire.MAX_EVENTS + 1, -1):
        header = {**json.loads(head), "count": count}
        with pytest.raises(wire.WireError, match="'count'"):
            wire.decode([json.dumps(header).encode(), b""])
    header = {**json.loads(head), "count": wire.MAX_EVENTS}  # allowed, but the payload must match
    with pytest.raises(wire.WireError, match="payload has 0 bytes"):
        wire.decode([json.dumps(header).encode(), b""])


# --------------------------------------------------------------------------- foreign layouts
_TYPES = [f"{order}{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8) for order in "<>"]


@st.composite
def layouts(draw):
    """A record layout the format allows: the four fields in any order, any integer type and byte
    order, padding anywhere."""
    names = draw(st.permutations(["x", "y", "t", "p"]))
    fields, offset = [], draw(st.integers(0, 3))
    for name in names:
        code = draw(st.sampled_from(_TYPES))
        fields.append([name, code, offset])
        offset += np.dtype(code).itemsize + draw(st.integers(0, 2))
    return fields, offset


def _value(draw, code: str, limit: int | None) -> int:
    info = np.iinfo(np.dtype(code))
    near = [0, 1, info.min, info.max] + ([limit - 1, limit, limit + 1] if limit else [])
    candidates = st.sampled_from([v for v in near if info.min <= v <= info.max])
    if limit:
        candidates = candidates | st.integers(0, min(limit, info.max))
    return draw(candidates | st.integers(int(info.min), int(info.max)))


def _reference(payload: bytes, fields, itemsize: int, width: int, height: int):
    """One record at a time: the events whose values fit, and how many did not."""
    kept, bad = [], 0
    for i in range(len(payload) // itemsize):
        rec = payload[i * itemsize : (i + 1) * itemsize]
        v = {}
        for name, code, off in fields:
            dt = np.dtype(code)
            order = "big" if dt.byteorder == ">" else "little"
            v[name] = int.from_bytes(rec[off : off + dt.itemsize], order, signed=dt.kind == "i")
        if 0 <= v["x"] < width and 0 <= v["y"] < height and v["p"] in (0, 1) and I64[0] <= v["t"] <= I64[1]:
            kept.append((v["x"], v["y"], v["t"], v["p"]))
        else:
            bad += 1
    return kept, bad


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data(), layout=layouts(), n=st.integers(0, 12), width=st.integers(1, 70000))
def test_any_layout_decodes_as_the_reference_says(data, layout, n, width):
    fields, itemsize = layout
    width = min(width, 65535)
    height = data.draw(st.integers(1, 65535))
    limits = {"x": width, "y": height, "p": 2, "t": None}
    dtype = np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )
    raw = np.zeros(n, dtype)
    for name, code, _ in fields:
        raw[name] = [_value(data.draw, code, limits[name]) for _ in range(n)]
    payload = raw.tobytes()
    header = {
        "proto": "evstream",
        "version": 1,
        "kind": "events",
        "stream": "s",
        "seq": 0,
        "first": 0,
        "count": n,
        "width": width,
        "height": height,
        "itemsize": itemsize,
        "fields": fields,
    }
    tracemalloc.start()
    try:
        msg = wire.decode([json.dumps(header).encode(), payload])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kept, bad = _reference(payload, fields, itemsize, width, height)
    got = [tuple(int(e[k]) for k in ("x", "y", "t", "p")) for e in msg.events]
    assert got == kept and msg.dropped_out_of_bounds == bad
    _check_message(msg, n)
    assert peak <= 64 * n + len(payload) + (64 << 10), peak  # bounded by the message, not the header


def test_overlapping_fields_and_booleans_are_refused():
    head, _ = _valid_frames(0, 1)
    header = json.loads(head)
    header["fields"] = [["x", "<u2", 0], ["y", "<u2", 1], ["t", "<i8", 8], ["p", "|u1", 4]]
    with pytest.raises(wire.WireError, match="overlap"):
        wire.decode([json.dumps(header).encode(), bytes(16)])
    header["fields"] = [["x", "<u2", 0], ["y", "<u2", 2], ["t", "<i8", 8], ["p", "|b1", 4]]
    with pytest.raises(wire.WireError, match="must be an integer type"):
        wire.decode([json.dumps(header).encode(), bytes(16)])


# --------------------------------------------------------------------------- into the pipeline
class _Messages(Source):
    """Decoded messages as a source (what ZmqSource yields, without the sockets)."""

    def __init__(self, batches, width, height):
        super().__init__()
        self._batches, self.width, self.height = batches, width, height
        self.description = "fuzzed messages"

    def batches(self):
        yield from self._batches


_TIMES = st.lists(
    st.sampled_from([I64[0], I64[1], 0, -1, 10**12, 2**62])
    | st.integers(-(10**6), 10**6)
    | st.integers(I64[0], I64[1]),
    max_size=40,
)


@settings(max_examples=60, deadline=20_000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=st.lists(_TIMES, max_size=5),
    window=st.sampled_from(["time", "time-sliding", "count"]),
    sort=st.booleans(),
)
def test_any_timestamps_pass_through_the_pipeline(times, window, sort):
    """Timestamps a damaged or hostile stream may carry (going backwards, jumping by days, the
    int64 extremes) never stall or crash the windows: every event is processed and counted."""
    rng = np.random.default_rng(len(times))
    batches = []
    for ts in times:
        ev = random_events(rng, len(ts), 16, 8)
        ev["t"] = sorted(ts) if sort else ts
        msg = wire.decode([bytes(f) for f in wire.encode_events(ev, "s", 0, 0, 16, 8)])
        batches.append(msg.events)
    spec = {
        "time": TimeWindowSpec(1000),
        "time-sliding": TimeWindowSpec(1000, 100),
        "count": CountWindowSpec(7, 3),
    }[window]
    summary = Pipeline(_Messages(batches, 16, 8), RunConfig(window=spec, pop_events=16)).run()
    total = sum(len(b) for b in batches)
    assert summary.error is None, summary.error
    assert summary.events_in == summary.events_processed == total
    assert summary.events_dropped == 0
