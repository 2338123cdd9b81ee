"""Viewer benchmark: the viewer's own frame rate, and what it costs the pipeline, measured against
the same run without a viewer (the baseline, in the same invocation, alternating).

Each configuration replays a recording in a loop through `evstream run` (subprocesses, exactly
as users run it) for --seconds, with and without the viewer (offscreen Qt: `--screenshot`, taken
when the replay stops). Reported per configuration (medians over --repeats):
viewer frames/s, events processed per second, window latency p50/p99, dropped events, and the
ratios viewer/baseline.

Configurations: a 640x480 Prophesee EVT2 recording (../shared/data, or a synthetic 640x480
stream when absent) at 540k events/s without a model, the viewer at its default 30 frames/s and
asked for 60 (what it can reach), and the bundled N-MNIST recording at real time with the
bundled classifier.

Usage: python benchmarks/viewer.py [--seconds 8] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVT2 = ROOT.parent / "shared" / "data" / "raw_evt2" / "expelliarmus_evt2_sample.raw"


def _synthetic_640x480(path: Path) -> str:
    from evstream.kernels.events import make_events
    from evstream.replay import write_events

    rng = np.random.default_rng(0)
    n = 500_000
    t = np.sort(rng.integers(0, 50_000, n))
    x = (np.arange(n) // 1000 % 640 + rng.integers(0, 40, n)) % 640  # a band sweeping across
    write_events(path, make_events(x, rng.integers(0, 480, n), t, rng.integers(0, 2, n)), 640, 480)
    return str(path)


def _run(args: list[str], seconds: float, viewer: list[str] | None, tmp: Path) -> dict:
    summary = tmp / "summary.json"
    cmd = [sys.executable, "-m", "evstream.runtime.cli", "run", *args, "--max-seconds", str(seconds)]
    cmd += ["--summary-json", str(summary), "-q"]
    if viewer is not None:
        cmd += ["--screenshot", str(tmp / "shot.png"), "--after", str(seconds + 60), *viewer]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(summary.read_text())


def bench(name: str, args: list[str], viewer: list[str], seconds: float, repeats: int, tmp: Path) -> dict:
    runs: dict = {"baseline": [], "viewer": []}
    for _ in range(repeats):
        for kind in ("baseline", "viewer"):
            runs[kind].append(_run(args, seconds, viewer if kind == "viewer" else None, tmp))

    def med(kind, key):
        vals = [r[key] for r in runs[kind] if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    out = {"name": name, "command": "evstream run " + " ".join(args), "viewer_options": viewer}
    out.update(seconds=seconds, repeats=repeats)
    for kind in runs:
        out[kind] = {
            "events_per_s": med(kind, "events_per_s"),
            "latency_ms_p50": med(kind, "latency_ms_p50"),
            "latency_ms_p99": med(kind, "latency_ms_p99"),
            "events_dropped": max(r["events_dropped"] for r in runs[kind]),
        }
    fps = [r["viewer"]["fps_median"] for r in runs["viewer"] if r["viewer"]["fps_median"]]
    out["viewer"]["fps_median"] = statistics.median(fps) if fps else None
    out["viewer"]["fps_runs"] = fps
    b, v = out["baseline"], out["viewer"]
    out["ratios"] = {
        "events_per_s": v["events_per_s"] / b["events_per_s"],
        "latency_p50": v["latency_ms_p50"] / b["latency_ms_p50"],
        "latency_p99": v["latency_ms_p99"] / b["latency_ms_p99"],
    }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--json", help="write the results here")
    a = parser.parse_args(argv)
    from evstream.runtime.bench import machine_info

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rec = str(EVT2) if EVT2.exists() else _synthetic_640x480(tmp / "synthetic_640x480.npz")
        big = ["--source", rec, "--loop", "--speed", "0.05", "--no-model"]
        nmnist = ["--source", str(ROOT / "tests" / "data" / "nmnist_digit7.bs2"), "--loop"]
        configs = [
            ("640x480, 540k ev/s, no model, viewer at its default 30 frames/s", big, []),
            ("640x480, 540k ev/s, no model, viewer asked for 60 frames/s", big, ["--fps", "60"]),
            ("N-MNIST 34x34, real time, bundled classifier, viewer at 30 frames/s", nmnist, []),
        ]
        results = []
        for name, args, viewer in configs:
            r = bench(name, args, viewer, a.seconds, a.repeats, tmp)
            results.append(r)
            b, v, q = r["baseline"], r["viewer"], r["ratios"]
            print(
                f"{name}: viewer {v['fps_median']:.1f} frames/s (runs {[round(f, 1) for f in v['fps_runs']]})"
            )
            print(
                f"  events/s {v['events_per_s']:,.0f} vs {b['events_per_s']:,.0f} without viewer "
                f"({q['events_per_s']:.2f}x); latency p50 {v['latency_ms_p50']:.2f} vs "
                f"{b['latency_ms_p50']:.2f} ms ({q['latency_p50']:.2f}x), "
                f"p99 {v['latency_ms_p99']:.2f} vs {b['latency_ms_p99']:.2f} ms ({q['latency_p99']:.2f}x); "
                f"dropped {v['events_dropped']} / {b['events_dropped']}"
            )
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
