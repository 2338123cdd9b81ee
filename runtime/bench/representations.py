"""Representation benchmarks, each figure beside a baseline measured in the same run (medians).

* throughput: M events/s of every representation on the numba CPU backend for one window of N
  events on a 640x480 sensor, against the plain numpy histogram (``np.bincount`` of the flat
  pixel index computed from the event fields) and against ``np.bincount`` alone on a precomputed
  index; the peers (tonic, evlib) where they compute the same thing, their output checked
  against ours (a fast wrong answer is reported as wrong, a different definition as such).
* incremental: the cost of one sliding-window step (``update`` with the entering and leaving
  events) and of reading the frame out (``output``) as a function of the step size and of the
  window size, beside a full recomputation of the window.

The CUDA backend is not measured here (this machine has no GPU; the simulator is a correctness
tool, not a speed one).

``evstream bench repr [--quick] [--json FILE]``.
"""

from __future__ import annotations

import statistics
import sys
import time

import numba
import numpy as np

from ...kernels.representations import REPRESENTATIONS, compute
from ...kernels.representations.incremental import incremental
from .common import machine_info, time_runs, uniform_events

W, H = 640, 480


def _stream(n: int, rate_hz: float = 2e6, seed: int = 0) -> np.ndarray:
    """Random events with sorted timestamps at ``rate_hz`` on the 640x480 sensor."""
    return uniform_events(n, rate_hz, W, H, seed)


def _median_seconds(fn, repeats: int, warmup: int = 1) -> tuple[float, float, float]:
    """(median, min, max) wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    times = time_runs(fn, warmup, repeats)
    return statistics.median(times), min(times), max(times)


def _flat_index(ev, width=W, height=H):
    """Each event's index in the flattened ``(2, height, width)`` histogram (ON plane first)."""
    return (1 - ev["p"].astype(np.int64)) * (width * height) + ev["y"].astype(np.int64) * width + ev["x"]


def numpy_histogram(ev, width=W, height=H):
    """The baseline: the event histogram the plain numpy way (flat index, then ``np.bincount``)."""
    counts = np.bincount(_flat_index(ev, width, height), minlength=2 * width * height)
    return counts.reshape(2, height, width).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Peers: each returns (callable, check) where check(ours_by_name) -> "ok" / "WRONG: ..." / "differs: ..."


def _tonic_peers(ev):
    try:
        import tonic.functional as tf
    except ImportError:
        return {}
    sensor = (W, H, 2)
    peers = {}
    # tonic's own layout (signed polarity: its voxel grid writes -1 into p), converted untimed.
    tev = np.empty(len(ev), [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "i1")])
    for field in "xytp":
        tev[field] = ev[field]

    def frame():
        return tf.to_frame_numpy(tev, sensor, event_count=len(ev))

    def check_frame(ours):
        got = frame()[0]  # (P, H, W), channel = polarity value (OFF first)
        return (
            "ok"
            if np.array_equal(got[::-1], ours["event_histogram"])
            else "WRONG: differs from the histogram"
        )

    peers["tonic to_frame_numpy"] = ("event_histogram", frame, check_frame)

    def voxel():
        return tf.to_voxel_grid_numpy(tev.copy(), sensor, n_time_bins=9)  # it writes into p

    def check_voxel(ours):
        got = voxel()[:, 0]
        mine = compute("voxel_grid", ev, W, H, num_bins=9, measurement="polarity")
        if np.allclose(got, mine[:9] + mine[9:], atol=1e-5):
            return "ok"
        return "differs: Zhu et al.'s volume (t scaled by B, not B - 1; last event dropped), not EST's grid"

    peers["tonic to_voxel_grid_numpy"] = ("voxel_grid", voxel, check_voxel)
    return peers


def _evlib_peers(ev):
    try:
        import evlib.representations as er
        import polars as pl
    except ImportError:
        return {}
    df = pl.DataFrame(
        {
            "t": pl.Series(ev["t"]).cast(pl.Duration("us")),
            "x": ev["x"].astype(np.int16),
            "y": ev["y"].astype(np.int16),
            "polarity": ev["p"].astype(np.int8),
        }
    )

    def histogram():
        counts = er.event_histogram(df, H, W)
        out = np.zeros((2, H, W), np.float32)
        c = 1 - counts["polarity"].to_numpy().astype(np.int64)
        out[c, counts["y"].to_numpy().astype(np.int64), counts["x"].to_numpy().astype(np.int64)] = counts[
            "count"
        ].to_numpy()
        return out

    def check(ours):
        return (
            "ok"
            if np.array_equal(histogram(), ours["event_histogram"])
            else "WRONG: differs from the histogram"
        )

    return {
        "evlib event_histogram (+ densify; input a prebuilt polars frame)": (
            "event_histogram",
            histogram,
            check,
        )
    }


# --------------------------------------------------------------------------------------------


def bench_throughput(n: int, repeats: int) -> dict:
    ev = _stream(n)
    index = _flat_index(ev)
    baselines = {
        "numpy histogram (index + np.bincount)": _median_seconds(lambda: numpy_histogram(ev), repeats),
        "np.bincount alone (index precomputed)": _median_seconds(
            lambda: np.bincount(index, minlength=2 * W * H), repeats
        ),
    }
    base = n / baselines["numpy histogram (index + np.bincount)"][0]
    rows = []
    for label, (med, lo, hi) in baselines.items():
        rows.append(
            {
                "what": label,
                "mev_s": n / med / 1e6,
                "ratio": n / med / base,
                "spread_ms": [lo * 1e3, hi * 1e3],
            }
        )
    ours = {}
    for name in REPRESENTATIONS:
        ours[name] = compute(name, ev, W, H)
        med, lo, hi = _median_seconds(lambda name=name: compute(name, ev, W, H), repeats)
        rows.append(
            {
                "what": f"evstream cpu {name}",
                "mev_s": n / med / 1e6,
                "ratio": n / med / base,
                "spread_ms": [lo * 1e3, hi * 1e3],
            }
        )
    for label, (name, fn, check) in {**_tonic_peers(ev), **_evlib_peers(ev)}.items():
        verdict = check(ours)
        med, lo, hi = _median_seconds(fn, max(3, repeats // 2))
        rows.append(
            {
                "what": label,
                "representation": name,
                "mev_s": n / med / 1e6,
                "ratio": n / med / base,
                "spread_ms": [lo * 1e3, hi * 1e3],
                "check": verdict,
            }
        )
    return {"events": n, "sensor": f"{W}x{H}", "rows": rows}


REAL = (  # ../shared/data recordings (absent in a user's clone: then skipped)
    ("raw_evt2/expelliarmus_evt2_sample.raw", "EVT 2.0, Prophesee"),
    ("raw_evt3/expelliarmus_evt3_sample.raw", "EVT 3.0, Prophesee"),
    ("es/faery_dvs.es", "Event Stream DVS"),
    ("aedat4/aestream_davis.aedat4", "AEDAT4, DAVIS346"),
)


def bench_real(n_min: int, repeats: int) -> list[dict]:
    """The histogram against the numpy histogram on real recordings (looped to >= n_min events)."""
    from ...kernels.events import concat_events
    from ...replay import open_events
    from .common import SHARED as root

    rows = []
    for relative, label in REAL:
        path = root / relative
        if not path.exists():
            continue
        with open_events(path) as reader:
            ev, width, height = reader.read_all(), reader.width, reader.height
        ev = concat_events([ev] * max(1, -(-n_min // len(ev))))

        ours = _median_seconds(lambda ev=ev, w=width, h=height: compute("event_histogram", ev, w, h), repeats)
        base = _median_seconds(lambda ev=ev, w=width, h=height: numpy_histogram(ev, w, h), repeats)
        assert np.array_equal(
            numpy_histogram(ev, width, height), compute("event_histogram", ev, width, height)
        )
        rows.append(
            {
                "recording": f"{path.name} ({label}, {width}x{height}, looped)",
                "events": len(ev),
                "evstream_mev_s": len(ev) / ours[0] / 1e6,
                "numpy_mev_s": len(ev) / base[0] / 1e6,
                "ratio": base[0] / ours[0],
            }
        )
    return rows


def bench_incremental(window_sizes, step_sizes, names, repeats: int) -> dict:
    """Per (representation, window, step): median seconds of update() and output(), and of a full
    recomputation of the window, over ``repeats`` consecutive steps of a sliding count window."""
    rows = []
    for window in window_sizes:
        for step in step_sizes:
            if step > window:
                continue
            ev = _stream(window + step * (repeats + 2), seed=window + step)
            for name in names:
                rep = incremental(name, W, H)
                rep.update(ev[:window], ev[:0])
                updates, outputs, full = [], [], []
                for k in range(repeats + 1):
                    lo = k * step
                    enter, leave = ev[window + lo : window + lo + step], ev[lo : lo + step]
                    t0 = time.perf_counter()
                    rep.update(enter, leave)
                    t1 = time.perf_counter()
                    rep.output()
                    t2 = time.perf_counter()
                    compute(name, ev[lo + step : window + lo + step], W, H)
                    t3 = time.perf_counter()
                    if k:  # the first step compiles and warms caches
                        updates.append(t1 - t0)
                        outputs.append(t2 - t1)
                        full.append(t3 - t2)
                rows.append(
                    {
                        "representation": name,
                        "window": window,
                        "step": step,
                        "update_us": statistics.median(updates) * 1e6,
                        "output_us": statistics.median(outputs) * 1e6,
                        "recompute_us": statistics.median(full) * 1e6,
                    }
                )
    return {"sensor": f"{W}x{H}", "rows": rows}


def markdown(results: dict) -> str:
    out = [
        f"Throughput, one window of {results['throughput']['events']:,} events on 640x480 "
        "(median M events/s):",
        "",
    ]
    out += ["| what | M events/s | x numpy histogram | check |", "|---|---:|---:|---|"]
    for r in results["throughput"]["rows"]:
        out.append(f"| {r['what']} | {r['mev_s']:.1f} | {r['ratio']:.2f} | {r.get('check', '')} |")
    if results.get("real"):
        out += ["", "Event histogram on real recordings (median M events/s):", ""]
        out += ["| recording | events | evstream | numpy histogram | ratio |", "|---|---:|---:|---:|---:|"]
        for r in results["real"]:
            out.append(
                f"| {r['recording']} | {r['events']:,} | {r['evstream_mev_s']:.0f} | "
                f"{r['numpy_mev_s']:.0f} | {r['ratio']:.2f} |"
            )
    out += ["", "Incremental step on 640x480 (median microseconds per step):", ""]
    out += [
        "| representation | window | step | update | output | recompute |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["incremental"]["rows"]:
        out.append(
            f"| {r['representation']} | {r['window']:,} | {r['step']:,} | {r['update_us']:.0f} | "
            f"{r['output_us']:.0f} | {r['recompute_us']:.0f} |"
        )
    return "\n".join(out)


def run_repr(quick: bool = False, progress: bool = False, **_) -> dict:
    """Throughput against numpy (and the installed peers), real recordings, incremental steps."""
    n = 200_000 if quick else 2_000_000
    repeats = 3 if quick else 9
    results = {
        "benchmark": "repr",
        "quick": quick,
        "machine": {**machine_info(), "numba": numba.__version__, "numba_threads": numba.get_num_threads()},
    }
    if progress:
        print("  repr: throughput ...", file=sys.stderr, flush=True)
    results["throughput"] = bench_throughput(n, repeats)
    results["real"] = bench_real(n, repeats)
    names = ["event_histogram", "timestamp_image", "dist", "voxel_grid"] if quick else list(REPRESENTATIONS)
    windows = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    steps = [100, 10_000] if quick else [100, 1_000, 10_000, 100_000]
    if progress:
        print("  repr: incremental steps ...", file=sys.stderr, flush=True)
    results["incremental"] = bench_incremental(windows, steps, names, repeats)
    return results


def format_repr(r: dict) -> str:
    threads = r["machine"]["numba_threads"]
    head = f"evstream bench repr{' (quick)' if r['quick'] else ''}: numba CPU backend, {threads} threads"
    return head + "\n\n" + markdown(r)
