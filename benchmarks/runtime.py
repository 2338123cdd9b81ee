"""Runtime benchmarks, each against a baseline measured in the same run (medians of repeats).

* ring: events through the C++ SPSC ring (push then pop, batches of 64k) against a memcpy of the
  same bytes; and a producer thread with a consumer thread.
* zmq: evstream's ZeroMQ source (wire format, PULL) against raw pyzmq PUSH/PULL with copy=False
  moving the same payload bytes, over TCP loopback.
* e2e: a recording replayed at increasing speed through `evstream run`'s pipeline (10 ms
  histogram windows, drop-oldest ring as for a live sensor): the highest input rate with zero
  drops, and the window latency (p50/p99) there.

Usage: python benchmarks/runtime.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time

import numpy as np

from evstream.kernels.events import make_events
from evstream.runtime import wire
from evstream.runtime.pipeline import Pipeline, RunConfig
from evstream.runtime.ring import EventRing
from evstream.runtime.sources import FileSource
from evstream.runtime.windows import TimeWindowSpec
from evstream.runtime.zmq_source import ZmqSource


def _events(n: int, rate_hz: float = 5e6) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = (np.arange(n) / rate_hz * 1e6).astype(np.int64)
    return make_events(rng.integers(0, 1280, n), rng.integers(0, 720, n), t, rng.integers(0, 2, n))


def _median_rate(fn, n_events: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n_events / statistics.median(times) / 1e6


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

    ring_rate = _median_rate(through_ring, n, repeats)
    copy_rate = _median_rate(memcpy, n, repeats)
    threaded_rate = _median_rate(threaded, n, repeats)
    return {
        "ring_mevents_s": ring_rate,
        "memcpy_mevents_s": copy_rate,
        "ratio": ring_rate / copy_rate,
        "threaded_mevents_s": threaded_rate,
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

    def raw_once() -> float:
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
        return n / dt / 1e6

    def source_once() -> float:
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
        return n / dt / 1e6

    raw = statistics.median(raw_once() for _ in range(repeats))
    source = statistics.median(source_once() for _ in range(repeats))
    return {"raw_pyzmq_mevents_s": raw, "zmq_source_mevents_s": source, "ratio": source / raw}


def bench_e2e(path: str, speeds, seconds: float) -> dict:
    rows = []
    best = None
    for speed in speeds:
        src = FileSource(path, speed=speed, loop=True)
        cfg = RunConfig(
            window=TimeWindowSpec(10_000), ring_capacity=1 << 20, policy="drop-oldest", max_seconds=seconds
        )
        d = Pipeline(src, cfg).run().to_dict()
        rate = d["events_in"] / d["wall_s"] / 1e6
        rows.append(
            {
                "speed": speed,
                "input_mevents_s": rate,
                "dropped": d["events_dropped"],
                "latency_ms_p50": d["latency_ms_p50"],
                "latency_ms_p99": d["latency_ms_p99"],
            }
        )
        print(
            f"  speed {speed:>6g}: input {rate:6.2f} M ev/s, dropped {d['events_dropped']:,}, "
            f"latency p50 {d['latency_ms_p50']:.2f} ms p99 {d['latency_ms_p99']:.2f} ms",
            flush=True,
        )
        if d["events_dropped"] == 0:
            best = rows[-1]
        else:
            break
    return {"rows": rows, "highest_without_drops": best}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--recording", help="recording for e2e (default: a synthetic 1280x720 one)")
    args = parser.parse_args(argv)
    n = 1 << 20 if args.quick else 1 << 23
    repeats = 3 if args.quick else 7
    results = {}
    print("ring:", json.dumps(r := bench_ring(n, repeats)))
    results["ring"] = r
    print("zmq:", json.dumps(r := bench_zmq(n, repeats)))
    results["zmq"] = r
    path = args.recording
    if path is None:
        import tempfile

        from evstream.replay import write_events

        path = tempfile.mktemp(suffix=".raw")
        write_events(path, _events(2_000_000, rate_hz=2e6), 1280, 720)  # 1 s at 2 M ev/s
    speeds = [1, 2, 5] if args.quick else [1, 2, 4, 6, 8, 10, 15, 20, 30]
    print("e2e:")
    results["e2e"] = bench_e2e(path, speeds, 2.0 if args.quick else 4.0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
