"""``evstream bench soak``: the pipeline replaying a recording in a loop for minutes at a high rate,
watching its resident memory and its event accounting (issue #9). Not part of ``bench all``.

The replay is paced at ``rate`` events/s (default 10 M; None: as fast as the reader goes, so the
ring drops by design); the ring drops the oldest events when full, as for a live sensor. Every
second the process's resident set size (RSS) is sampled. Reported: RSS after the first tenth of
the run (warm-up: allocators and caches settle) and at the end, the growth between them and the
slope of a straight line fitted to the samples after warm-up (MiB per minute), the events
offered, processed, dropped and still in the ring at the end, and whether ``offered ==
popped + dropped + still in the ring`` holds by the ring's own counters and every popped event was
processed by the pipeline (no unexplained loss). Goal: flat memory, zero
unexplained drops.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from ..pipeline import Pipeline, RunConfig
from ..sources import FileSource
from ..windows import TimeWindowSpec
from .common import machine_info

#: default replay rate (events/s): half the highest rate this pipeline sustains without drops on
#: the 2-core reference machine (``evstream bench e2e``), so any drop is worth a look
DEFAULT_RATE = 10e6


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; elsewhere the peak from ``resource``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def recording_rate(path, format=None, sensor_size=None) -> float:
    """Events per second of recording time (events over the time span), read block by block."""
    from ...replay import open_events

    n, first, last = 0, None, None
    with open_events(path, format, sensor_size) as reader:
        for block in reader.blocks():
            if len(block):
                n += len(block)
                first = int(block["t"][0]) if first is None else first
                last = int(block["t"][-1])
    if not n or last <= first:
        raise ValueError(f"{path}: cannot pace a soak at a given rate (no events or no time span)")
    return n / ((last - first) * 1e-6)


def run_soak(
    quick: bool = False,
    progress: bool = False,
    source: str | None = None,
    minutes: float | None = None,
    rate: float | None = DEFAULT_RATE,
    format: str | None = None,
    sensor_size=None,
    **_,
) -> dict:
    from .stream import SYNTHETIC_RATE, _synthetic_recording

    seconds = 60.0 * (minutes if minutes is not None else 0.33 if quick else 10.0)
    path = source or _synthetic_recording()
    # the replay speed that gives `rate`, relative to the recording's own event rate
    own_rate = SYNTHETIC_RATE if source is None else recording_rate(path, format, sensor_size)
    speed = None if rate is None else rate / own_rate
    src = FileSource(path, speed=speed, loop=True, format=format, sensor_size=sensor_size)
    config = RunConfig(
        window=TimeWindowSpec(10_000), ring_capacity=1 << 20, policy="drop-oldest", max_seconds=seconds
    )
    pipeline = Pipeline(src, config)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample():
        start = time.perf_counter()
        while not done.wait(1.0):
            samples.append((time.perf_counter() - start, rss_bytes()))
            if progress and len(samples) % 30 == 0:
                print(
                    f"  soak {samples[-1][0]:5.0f} s: RSS {samples[-1][1] / 2**20:.1f} MiB", file=sys.stderr
                )

    samples.append((0.0, rss_bytes()))
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    summary = pipeline.run()
    done.set()
    th.join()
    samples.append((summary.wall_s, rss_bytes()))
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples], float) / 2**20
    settled = t >= 0.1 * summary.wall_s
    slope = float(np.polyfit(t[settled] / 60.0, rss[settled], 1)[0]) if settled.sum() >= 3 else None
    d = summary.to_dict()
    # the ring's own counters (C++) against the events the pipeline counted as processed (Python)
    ring = pipeline.ring.stats()
    explained = (
        ring.offered == ring.popped + ring.dropped + ring.size and ring.popped == summary.events_processed
    )
    return {
        "benchmark": "soak",
        "quick": quick,
        "machine": machine_info(),
        "input": path
        if source
        else "synthetic 1280x720 recording, 2 M events per second of recording time, looped",
        "pacing": "as fast as the pipeline takes it" if rate is None else f"{rate:,.0f} events/s",
        "window": "10 ms time windows, event histogram, drop-oldest ring of 2^20 events",
        "seconds": summary.wall_s,
        "events_in": d["events_in"],
        "events_processed": d["events_processed"],
        "events_dropped": d["events_dropped"],
        "events_unprocessed": d["events_unprocessed"],
        "accounting_holds": bool(explained),
        "events_per_s": d["events_per_s"],
        "windows": d["windows"],
        "latency_ms_p50": d["latency_ms_p50"],
        "latency_ms_p99": d["latency_ms_p99"],
        "rss_mib": {
            "start": float(rss[0]),
            "after_warmup": float(rss[settled][0]) if settled.any() else None,
            "end": float(rss[-1]),
            "max": float(rss.max()),
            "growth_after_warmup": float(rss[-1] - rss[settled][0]) if settled.any() else None,
            "slope_per_minute": slope,
        },
        "rss_samples": [[round(float(a), 2), round(float(b), 2)] for a, b in zip(t, rss, strict=True)],
        "error": d["error"],
    }


def format_soak(r: dict) -> str:
    m = r["rss_mib"]
    slope = "-" if m["slope_per_minute"] is None else f"{m['slope_per_minute']:+.2f} MiB/min"
    return "\n".join(
        [
            f"evstream bench soak{' (quick)' if r['quick'] else ''}: {r['input']}; {r['pacing']}; "
            f"{r['window']}",
            f"  ran {r['seconds'] / 60:.1f} min: {r['events_processed']:,} events processed "
            f"({r['events_per_s'] / 1e6:.1f} M ev/s), {r['events_dropped']:,} dropped, "
            f"{r['events_unprocessed']:,} in the ring at the end, of {r['events_in']:,} offered: "
            + ("accounted for exactly" if r["accounting_holds"] else "UNEXPLAINED LOSS"),
            f"  resident memory: {m['start']:.1f} MiB at start, {m['after_warmup']:.1f} after warm-up, "
            f"{m['end']:.1f} at the end (max {m['max']:.1f}); growth after warm-up "
            f"{m['growth_after_warmup']:+.1f} MiB, slope {slope}",
            f"  window latency p50 {r['latency_ms_p50']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms"
            + (f"; error: {r['error']}" if r["error"] else ""),
        ]
    )
