"""Decode throughput: evstream against the peer libraries and a memcpy ceiling, in one run.

For every recording: evstream's reader (file open + header + read + decode, whole file to one
event array) runs in this process; each peer that reads the format runs in a child process
(``peers.py --worker``) so that a crashing peer is reported rather than ending the run. Every
peer's output is compared with evstream's (x, y, t, p values), so a fast wrong answer is
reported as wrong. The baseline is a memcpy of the same number of 16-byte events, measured in
the same run. Reported: median over the runs after a warm-up, with the spread (min..max).

Recordings: the real files in ../shared/data (when present) and larger synthetic recordings
written by evstream's own writers (cached in ~/.cache/evstream/bench), which measure steady-state
throughput without per-call overhead dominating.

``evstream bench decode [--runs 15] [--warmup 2] [--no-peers] [--markdown] [--json FILE]``;
``--quick``: 3 runs after 1 warm-up, the real recordings only (or a 200k-event synthetic one per
format when ../shared/data is absent).

Peers come with ``pip install -c constraints.txt '.[bench]'``; missing ones are skipped.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...replay import open_events, read_events
from . import peers
from .common import SHARED, cached_recording, machine_info, rate_stats, time_runs

REAL_FILES = [
    ("evt3", "raw_evt3/expelliarmus_evt3_sample.raw"),
    ("evt2", "raw_evt2/expelliarmus_evt2_sample.raw"),
    ("dat", "dat/expelliarmus_NCARS_obj_004397_td.dat"),
    ("aedat4", "aedat4/tonic_sample.aedat4"),
    ("aedat4", "aedat4/aestream_davis.aedat4"),
    ("bin", "bin/tonic_sample_nmnist.bin"),
    ("es", "es/faery_dvs.es"),
]
SYNTH_EVENTS = 4_000_000
SYNTH_FORMATS = [
    ("evt3", "raw"),
    ("evt2", "raw"),
    ("dat", "dat"),
    ("aedat4", "aedat4"),
    ("npz", "npz"),
    ("hdf5", "h5"),
]


def synthetic_recording(n: int, seed: int = 7) -> np.ndarray:
    """A 640x480 recording with camera-like statistics: bursts of events on moving edges."""
    from evstream.kernels.events import make_events

    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0, n)).astype(np.int64) + 1_000_000  # ~1 M events/s
    phase = t / 2e5
    x = (320 + 250 * np.sin(phase) + rng.normal(0, 12, n)).clip(0, 639).astype(np.uint16)
    y = (240 + 200 * np.cos(0.7 * phase) + rng.normal(0, 12, n)).clip(0, 479).astype(np.uint16)
    p = (rng.random(n) < 0.55).astype(np.uint8)
    return make_events(x, y, t, p)


def prepare_synthetic(n_events: int = SYNTH_EVENTS, formats=SYNTH_FORMATS) -> list[tuple[str, Path]]:
    events = functools.cache(lambda: synthetic_recording(n_events))  # made once, if any file is missing
    return [
        (fmt, cached_recording(f"synthetic_{n_events}_{fmt}.{ext}", events, 640, 480, fmt))
        for fmt, ext in formats
    ]


def memcpy_times(n: int, warmup: int, runs: int) -> list[float]:
    src = np.random.default_rng(0).integers(0, 255, n * 16, dtype=np.uint8)
    dst = np.empty_like(src)
    return time_runs(lambda: np.copyto(dst, src), warmup, runs)


def run_peer(name: str, fmt: str, path: Path, warmup: int, runs: int, reference: np.ndarray) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        cmd = [
            sys.executable,
            "-m",
            "evstream.runtime.bench.peers",
            "--worker",
            name,
            fmt,
            str(path),
            str(warmup),
            str(runs),
            str(out),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return {"status": "timeout"}
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            if proc.returncode < 0:
                tail = f"crashed (signal {-proc.returncode})"
            return {"status": "error", "detail": tail[:200]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out, allow_pickle=False) as got:
            correct = len(got["t"]) == len(reference) and all(
                np.array_equal(got[k].astype(np.int64), reference[k].astype(np.int64))
                for k in ("x", "y", "t", "p")
            )
            detail = ""
            if not correct:
                detail = (
                    f"{len(got['t'])} events"
                    if len(got["t"]) != len(reference)
                    else _first_difference(got, reference)
                )
    return {"status": "ok" if correct else "wrong", "detail": detail, "times": result["times"]}


def _first_difference(got, ref) -> str:
    for k in ("t", "x", "y", "p"):
        bad = np.flatnonzero(got[k].astype(np.int64) != ref[k].astype(np.int64))
        if len(bad):
            i = int(bad[0])
            return f"{k} differs from event {i} ({int(got[k][i])} vs {int(ref[k][i])}), {len(bad)} events"
    return ""


def bench_file(fmt: str, path: Path, warmup: int, runs: int, peers_enabled: bool) -> dict:
    with open_events(path) as r:
        ref, geometry = r.read_all(), f"{r.width}x{r.height}"
    n = len(ref)
    row = {
        "format": fmt,
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "events": n,
        "sensor": geometry,
        "evstream": rate_stats(time_runs(lambda: read_events(path), warmup, runs), n),
        "memcpy": rate_stats(memcpy_times(n, warmup, runs), n),
        "peers": {},
    }
    if peers_enabled:
        for name, _ in peers.available(fmt):
            if name in ("h5py", "numpy"):
                continue
            res = run_peer(name, fmt, path, warmup, runs, ref)
            if "times" in res:
                res.update(rate_stats(res.pop("times"), n))
            row["peers"][name] = res
    correct = [(v["mevents_per_s"], k) for k, v in row["peers"].items() if v["status"] == "ok"]
    if correct:
        best, name = max(correct)
        row["best_correct_peer"] = {"name": name, "mevents_per_s": best}
        row["ratio_to_best_correct_peer"] = row["evstream"]["mevents_per_s"] / best
    row["ratio_to_memcpy"] = row["evstream"]["mevents_per_s"] / row["memcpy"]["mevents_per_s"]
    return row


def format_row(row: dict) -> list[str]:
    ev = row["evstream"]
    lines = [
        f"== {row['format']}: {row['file']} ({row['events']:,} events, {row['size_bytes'] / 1e6:.2f} MB)",
        f"  {'evstream':<15} {ev['mevents_per_s']:9.1f} M ev/s  "
        f"(spread {ev['spread_mevents_per_s'][0]:.1f}..{ev['spread_mevents_per_s'][1]:.1f})",
    ]
    for name, res in row["peers"].items():
        if "mevents_per_s" in res:
            mark = "" if res["status"] == "ok" else f"  WRONG: {res['detail']}"
            lines.append(
                f"  {name:<15} {res['mevents_per_s']:9.1f} M ev/s  "
                f"(evstream x{ev['mevents_per_s'] / res['mevents_per_s']:.2f}){mark}"
            )
        else:
            lines.append(f"  {name:<15} {res['status']}: {res.get('detail', '')}")
    lines.append(
        f"  {'memcpy ceiling':<15} {row['memcpy']['mevents_per_s']:9.1f} M ev/s  "
        f"(evstream at {100 * row['ratio_to_memcpy']:.1f} %)"
    )
    return lines


def markdown(rows: list[dict]) -> str:
    lines = [
        "| format | file | events | evstream (M ev/s) | fastest correct peer (M ev/s) | evstream / peer | "
        "wrong peers | memcpy (M ev/s) |",
        "|---|---|---:|---:|---|---:|---|---:|",
    ]
    for r in rows:
        best = r.get("best_correct_peer")
        peer = (
            f"{best['name']} {best['mevents_per_s']:.1f}" if best else "none correct" if r["peers"] else "-"
        )
        ratio = f"{r['ratio_to_best_correct_peer']:.1f}x" if best else "-"
        wrong = (
            ", ".join(
                f"{k} ({v['mevents_per_s']:.1f})" if "mevents_per_s" in v else f"{k} ({v['status']})"
                for k, v in r["peers"].items()
                if v["status"] != "ok"
            )
            or "-"
        )
        lines.append(
            f"| {r['format']} | {r['file']} | {r['events']:,} | "
            f"{r['evstream']['mevents_per_s']:.1f} | {peer} | {ratio} | {wrong} | "
            f"{r['memcpy']['mevents_per_s']:.0f} |"
        )
    return "\n".join(lines)


def run_decode(
    quick: bool = False,
    progress: bool = False,
    runs: int | None = None,
    warmup: int | None = None,
    peers_enabled: bool = True,
    **_,
) -> dict:
    """Every recording: evstream, memcpy and the installed peers (see the module docstring)."""
    warmup = warmup if warmup is not None else 1 if quick else 2
    runs = runs if runs is not None else 3 if quick else 15
    files = [(fmt, SHARED / rel) for fmt, rel in REAL_FILES if (SHARED / rel).exists()]
    if quick and not files:
        files = prepare_synthetic(200_000, [("evt3", "raw"), ("aedat4", "aedat4")])
    elif not quick:
        files += prepare_synthetic()
    rows = []
    for fmt, path in files:
        if progress:
            print(f"  decode {path.name} ...", file=sys.stderr, flush=True)
        rows.append(bench_file(fmt, path, warmup, runs, peers_enabled))
    installed = sorted({name for fmt, _ in files for name, _ in peers.available(fmt)} - {"h5py", "numpy"})
    return {
        "benchmark": "decode",
        "quick": quick,
        "machine": machine_info(),
        "runs": runs,
        "warmup": warmup,
        "peers_enabled": peers_enabled,
        "peers_installed": installed if peers_enabled else [],
        "real_recordings": str(SHARED) if any(SHARED in p.parents for _, p in files) else None,
        "results": rows,
    }


def format_decode(r: dict) -> str:
    peer_names = ", ".join(r["peers_installed"]) or (
        "none installed" if r["peers_enabled"] else "off (--no-peers)"
    )
    lines = [
        f"evstream bench decode{' (quick)' if r['quick'] else ''}: whole file to events, median of "
        f"{r['runs']} runs after {r['warmup']} warm-up; peers: {peer_names}"
    ]
    if not r["real_recordings"]:
        lines.append(f"(real recordings not found in {SHARED}: synthetic recordings only)")
    for row in r["results"]:
        lines += format_row(row)
    lines += ["", markdown(r["results"])]
    return "\n".join(lines)
