"""Streaming benchmarks, each against a baseline measured in the same run (medians of repeats
after a warm-up, with the spread):

* ``ring``: events through the C++ SPSC ring (push then pop, batches of 64k) against a memcpy of
  the same bytes; and a producer thread with a consumer thread.
* ``zmq``: evstream's ZeroMQ source (wire format, PULL) against raw pyzmq PUSH/PULL with
  ``copy=False`` moving the same payload bytes, over TCP loopback.
* ``e2e``: a recording replayed at increasing speed through ``evstream run``'s pipeline (10 ms
  histogram windows, drop-oldest ring as for a live sensor) until events are dropped: per input
  rate the window latency distribution (p50, p90, p99, max) and the drops; the highest rate
  sustained without drops. Default input: a synthetic 1280x720 recording, 2 M events per second
  of recording time (cached in ``~/.cache/evstream/bench``).
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import numpy as np

from .. import wire
from ..pipeline import Pipeline, RunConfig
from ..ring import EventRing
from ..sources import FileSource
from ..windows import TimeWindowSpec
from ..zmq_source import ZmqSource
from .common import cached_recording, machine_info, rate_stats, table, time_runs, uniform_events


def _events(n: int, rate_hz: float = 5e6, width: int = 1280, height: int = 720) -> np.ndarray:
    return uniform_events(n, rate_hz, width, height)


def _rates(fn, n_events: int, repeats: int) -> tuple[float, list[float]]:
    """Median M events/s of ``repeats`` timed runs after one warm-up, and the spread [min, max]."""
    stats = rate_stats(time_runs(fn, 1, repeats), n_events)
    return stats["mevents_per_s"], stats["spread_mevents_per_s"]


def bench_ring(n: int, repeats: int) -> dict:
    ev = _events(n)
    batch = 1 << 16
    ring = EventRing(1 << 20, "block")
    dst = np.empty_like(ev.view(np.uint8))

    def through_ring():
        for i in range(0, n, batch):
            ring.push(ev[i : i + batch])
            ring.pop(batch)

    def memcpy():
        np.copyto(dst, ev.view(np.uint8))

    def threaded():
        r = EventRing(1 << 20, "block")

        def consume():
            while True:
                b = r.pop(batch, timeout=0.2)
                if not len(b) and r.closed and not len(r):
                    return

        th = threading.Thread(target=consume)
        th.start()
        for i in range(0, n, batch):
            r.push(ev[i : i + batch])
        r.close()
        th.join()

    ring_rate, ring_spread = _rates(through_ring, n, repeats)
    copy_rate, copy_spread = _rates(memcpy, n, repeats)
    threaded_rate, threaded_spread = _rates(threaded, n, repeats)
    return {
        "ring_mevents_s": ring_rate,
        "memcpy_mevents_s": copy_rate,
        "ratio": ring_rate / copy_rate,
        "threaded_mevents_s": threaded_rate,
        "spread_mevents_s": {"ring": ring_spread, "memcpy": copy_spread, "threaded": threaded_spread},
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_zmq(n: int, repeats: int) -> dict:
    import zmq

    ev = _events(n)
    chunk = 1 << 16
    ctx = zmq.Context.instance()

    def raw_once() -> float:  # seconds for n events
        url = f"tcp://127.0.0.1:{_port()}"
        push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        push.bind(url)
        pull.connect(url)
        payload = ev.view(np.uint8)

        def send():
            for i in range(0, n, chunk):
                push.send(payload[16 * i : 16 * (i + chunk)], copy=False)
            push.send(b"")

        th = threading.Thread(target=send)
        start = time.perf_counter()
        th.start()
        got = 0
        while True:
            f = pull.recv(copy=False)
            if not len(f.buffer):
                break
            got += len(f.buffer) // 16
        dt = time.perf_counter() - start
        th.join()
        push.close(linger=0)
        pull.close(linger=0)
        assert got == n
        return dt

    def source_once() -> float:  # seconds for n events
        url = f"tcp://127.0.0.1:{_port()}"
        push = ctx.socket(zmq.PUSH)
        push.bind(url)

        def send():
            for seq, i in enumerate(range(0, n, chunk)):
                push.send_multipart(wire.encode_events(ev[i : i + chunk], "b", seq, i, 1280, 720), copy=False)
            push.send_multipart(wire.encode_eos("b", seq + 1, n, 1280, 720))

        th = threading.Thread(target=send)
        start = time.perf_counter()
        th.start()
        src = ZmqSource(url, pattern="pull")
        got = sum(len(b) for b in src.batches())
        dt = time.perf_counter() - start
        th.join()
        src.close()
        push.close(linger=0)
        assert got == n
        return dt

    raw_once()  # warm-up
    raw = rate_stats([raw_once() for _ in range(repeats)], n)
    source_once()
    source = rate_stats([source_once() for _ in range(repeats)], n)
    return {
        "raw_pyzmq_mevents_s": raw["mevents_per_s"],
        "zmq_source_mevents_s": source["mevents_per_s"],
        "ratio": source["mevents_per_s"] / raw["mevents_per_s"],
        "spread_mevents_s": {
            "raw_pyzmq": raw["spread_mevents_per_s"],
            "zmq_source": source["spread_mevents_per_s"],
        },
    }


def bench_e2e(path: str, speeds, seconds: float, progress: bool = False, **open_options) -> dict:
    """``open_options``: ``format`` / ``sensor_size`` for the recording (see FileSource)."""
    rows = []
    best = None
    for speed in speeds:
        src = FileSource(path, speed=speed, loop=True, **open_options)
        cfg = RunConfig(
            window=TimeWindowSpec(10_000), ring_capacity=1 << 20, policy="drop-oldest", max_seconds=seconds
        )
        summary = Pipeline(src, cfg).run()
        if summary.error:  # the run stopped on the source (a damaged recording): no number to report
            raise ValueError(f"{path}: the replay at speed {speed:g} stopped: {summary.error}")
        d = summary.to_dict()
        rate = d["events_in"] / d["wall_s"] / 1e6
        rows.append(
            {
                "speed": speed,
                "input_mevents_s": rate,
                "dropped": d["events_dropped"],
                "windows": d["windows"],
                **{f"latency_ms_{q}": d[f"latency_ms_{q}"] for q in ("p50", "p90", "p99", "max")},
                "latencies_ms": [round(v, 4) for v in summary.latencies_ms],
            }
        )
        if progress:
            print(
                f"  e2e speed {speed:g}: {rate:.2f} M ev/s, dropped {d['events_dropped']:,}",
                file=sys.stderr,
                flush=True,
            )
        if d["events_dropped"] == 0:
            best = rows[-1]
        else:
            break
    return {"rows": rows, "highest_without_drops": best}


SYNTHETIC_RATE = 2e6  # events per second of recording time in the synthetic recordings


def _synthetic_recording(width: int = 1280, height: int = 720, n: int = 2_000_000) -> str:
    """``n`` random events at 2 M events/s of recording time on a ``width`` x ``height`` sensor,
    written once to the cache (EVT3, the format of the 1280x720 Prophesee sensors)."""
    name = f"e2e_{width}x{height}_{n}.raw"
    return str(
        cached_recording(name, lambda: _events(n, SYNTHETIC_RATE, width, height), width, height, "evt3")
    )


RESOLUTIONS = ((320, 240), (640, 480), (1280, 720))


def bench_resolution(seconds: float, speed: float, progress: bool = False) -> list[dict]:
    """The same input rate on sensors from QVGA to 1280x720: window latency per resolution."""
    rows = []
    for width, height in RESOLUTIONS:
        path = _synthetic_recording(width, height, 1_000_000)
        cfg = RunConfig(
            window=TimeWindowSpec(10_000), ring_capacity=1 << 20, policy="drop-oldest", max_seconds=seconds
        )
        d = Pipeline(FileSource(path, speed=speed, loop=True), cfg).run().to_dict()
        rows.append(
            {
                "sensor": [width, height],
                "input_mevents_s": d["events_in"] / d["wall_s"] / 1e6,
                "dropped": d["events_dropped"],
                **{f"latency_ms_{q}": d[f"latency_ms_{q}"] for q in ("p50", "p90", "p99", "max")},
            }
        )
        if progress:
            print(f"  e2e {width}x{height}: p50 {d['latency_ms_p50']:.2f} ms", file=sys.stderr, flush=True)
    return rows


def run_ring(quick: bool = False, progress: bool = False, **_) -> dict:
    n, repeats = (1 << 20, 3) if quick else (1 << 23, 7)
    return {
        "benchmark": "ring",
        "quick": quick,
        "machine": machine_info(),
        "events": n,
        "repeats": repeats,
        **bench_ring(n, repeats),
    }


def run_zmq(quick: bool = False, progress: bool = False, **_) -> dict:
    n, repeats = (1 << 20, 3) if quick else (1 << 23, 7)
    return {
        "benchmark": "zmq",
        "quick": quick,
        "machine": machine_info(),
        "events": n,
        "repeats": repeats,
        **bench_zmq(n, repeats),
    }


def run_e2e(
    quick: bool = False,
    progress: bool = False,
    source: str | None = None,
    format: str | None = None,
    sensor_size=None,
    **_,
) -> dict:
    path = source or _synthetic_recording()
    speeds = [1, 2, 5] if quick else [1, 2, 4, 6, 8, 10, 15, 20, 30]
    seconds = 2.0 if quick else 4.0
    return {
        "benchmark": "e2e",
        "quick": quick,
        "machine": machine_info(),
        "input": path if source else "synthetic 1280x720 recording, 2 M events per second of recording time",
        "window": "10 ms time windows, event histogram, drop-oldest ring of 2^20 events",
        "seconds_per_rate": seconds,
        **bench_e2e(path, speeds, seconds, progress, format=format, sensor_size=sensor_size),
        "resolution": {
            "input": "random events at 2 M events/s of recording time (replayed at speed 2: 4 M ev/s)",
            "rows": bench_resolution(seconds / 2, 2.0, progress),
        },
    }


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _spread(v: list[float] | None) -> str:
    return "-" if not v else f"{v[0]:.0f}..{v[1]:.0f}"


#: columns of the ring / zmq tables (text and Markdown)
RATE_HEAD = ("what", "M events/s", "spread", "baseline (same run)", "ratio")
#: columns of the e2e tables
E2E_HEAD = ("replay speed", "input M ev/s", "dropped", "p50 ms", "p90 ms", "p99 ms", "max ms")


def ring_rows(r: dict) -> list[tuple[str, ...]]:
    sp = r.get("spread_mevents_s", {})
    return [
        (
            "push + pop, 64k batches",
            f"{r['ring_mevents_s']:.0f}",
            _spread(sp.get("ring")),
            f"memcpy {r['memcpy_mevents_s']:.0f}",
            f"{100 * r['ratio']:.0f} %",
        ),
        (
            "producer + consumer threads",
            f"{r['threaded_mevents_s']:.0f}",
            _spread(sp.get("threaded")),
            "",
            "",
        ),
    ]


def zmq_rows(r: dict) -> list[tuple[str, ...]]:
    sp = r.get("spread_mevents_s", {})
    return [
        (
            "ZeroMQ source (wire format, PULL)",
            f"{r['zmq_source_mevents_s']:.0f}",
            _spread(sp.get("zmq_source")),
            f"raw pyzmq {r['raw_pyzmq_mevents_s']:.0f}",
            f"{100 * r['ratio']:.0f} %",
        ),
    ]


def _latency_cells(x: dict) -> tuple[str, ...]:
    return (
        f"{x['input_mevents_s']:.2f}",
        f"{x['dropped']:,}",
        *(_ms(x[f"latency_ms_{q}"]) for q in ("p50", "p90", "p99", "max")),
    )


def e2e_rate_rows(r: dict) -> list[tuple[str, ...]]:
    return [("max" if x["speed"] is None else f"{x['speed']:g}", *_latency_cells(x)) for x in r["rows"]]


def e2e_resolution_rows(r: dict) -> list[tuple[str, ...]]:
    return [(f"{x['sensor'][0]}x{x['sensor'][1]}", *_latency_cells(x)) for x in r["resolution"]["rows"]]


def format_ring(r: dict) -> str:
    title = (
        f"evstream bench ring{' (quick)' if r['quick'] else ''}: {r['events']:,} events, "
        f"median of {r['repeats']} runs"
    )
    return "\n".join([title, *table(RATE_HEAD, ring_rows(r))])


def format_zmq(r: dict) -> str:
    title = (
        f"evstream bench zmq{' (quick)' if r['quick'] else ''}: {r['events']:,} events over TCP loopback, "
        f"median of {r['repeats']} runs"
    )
    return "\n".join([title, *table(RATE_HEAD, zmq_rows(r))])


def format_e2e(r: dict) -> str:
    best = r["highest_without_drops"]
    return "\n".join(
        [
            f"evstream bench e2e{' (quick)' if r['quick'] else ''}: {r['input']}; {r['window']}; "
            f"{r['seconds_per_rate']:g} s per rate",
            *table(E2E_HEAD, e2e_rate_rows(r)),
            "highest input rate without drops: "
            + (f"{best['input_mevents_s']:.2f} M events/s" if best else "none (drops at the lowest rate)"),
            "",
            f"cost against sensor resolution: {r['resolution']['input']}",
            *table(("sensor", *E2E_HEAD[1:]), e2e_resolution_rows(r)),
        ]
    )
